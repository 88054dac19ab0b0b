"""The markdown report of a bench run, from the same data as ``bench-results.json``."""

from typing import Any


def fmt(value: float | None) -> str:
    if value is None:
        return "-"
    size = abs(value)
    if size >= 100:
        return f"{value:,.0f}"
    if size >= 10:
        return f"{value:.1f}"
    if size >= 0.1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def _stats(stats: dict[str, float] | None) -> str:
    if not stats:
        return "-"
    if stats["min"] == stats["max"]:
        return fmt(stats["median"])
    return f"{fmt(stats['median'])} ({fmt(stats['min'])}..{fmt(stats['max'])})"


def _ratios(metric: dict[str, Any]) -> str:
    raw = " ".join(fmt(r) for r in metric["ratio"])
    if not metric["ratioOwn"]:
        return raw or "-"
    return f"{raw}; own {' '.join(fmt(r) for r in metric['ratioOwn'])}"


def _load(meta: dict[str, Any], when: str) -> str:
    values = meta.get("loadAverage", {}).get(when)
    return "/".join(f"{v:.2f}" for v in values) if values else "?"


def _met(target: dict[str, Any]) -> str:
    text = {True: "**met**", False: "**not met**", None: "not judged"}[target["met"]]
    return f"{text} (uncertain)" if target.get("uncertain") and target["met"] is not None else text


def render(results: dict[str, Any]) -> str:
    meta = results["meta"]
    machine = meta["machine"]
    lines = [
        f"## mwap bench — {'quick' if meta['quick'] else 'full'} run, {meta['startedAt'][:16].replace('T', ' ')} UTC",
        "",
        f"Machine: {machine['nproc']} CPUs ({machine['cpu'] or 'unknown CPU'}), {machine['memoryGiB']} GiB, "
        f"{machine['arch']}, Linux {machine['kernel']}, Python {machine['python']}; load average "
        f"{_load(meta, 'before')} before, {_load(meta, 'after')} after. Duration "
        f"{meta['durationSeconds'] / 60:.1f} min; {meta['rounds']} rounds, platform and baseline "
        f"interleaved; HTTP loader: {meta['loader']}.",
        "",
        f"MongoDB: {meta['mongo']}. {meta['basisNote']}",
        "",
        "| scenario | metric | unit | platform raw: median (min..max) | platform own | baseline | "
        "platform ÷ baseline per round |",
        "|---|---|---|---|---|---|---|",
    ]
    for scenario in results["scenarios"]:
        title = scenario["title"]
        if scenario["status"] != "ok":
            lines.append(f"| {title} | **{scenario['status']}**: {scenario['reason']} | | | | | |")
            continue
        for metric in scenario["metrics"]:
            if metric["skipped"]:
                lines.append(
                    f"| {title} | {metric['name']} | {metric['unit']} | skipped: {metric['skipped']} | | | |"
                )
                continue
            lines.append(
                f"| {title} | {metric['name']} | {metric['unit']} | {_stats(metric['platformStats'])} | "
                f"{_stats(metric['ownStats'])} | {_stats(metric['baselineStats'])} | {_ratios(metric)} |"
            )
            title = ""
    lines += [
        "",
        "### MongoDB per job",
        "",
        "| scenario | path | commands / job | ms inside MongoDB / job | documents read / job | "
        "server ops / job | how |",
        "|---|---|---|---|---|---|---|",
    ]
    for scenario in results["scenarios"]:
        for row in scenario["mongo"]:
            lines.append(
                f"| {scenario['title']} | {row['path']} | {fmt(row.get('commandsPerJob'))} | "
                f"{fmt(row.get('mongoMsPerJob'))} | {fmt(row.get('documentsReadPerJob'))} | "
                f"{fmt(row.get('serverOpsPerJob'))} | {row['how']} |"
            )
    lines += [
        "",
        "### Targets",
        "",
        "| target | goal | judged on | value | result | detail |",
        "|---|---|---|---|---|---|",
    ]
    for scenario in results["scenarios"]:
        for target in scenario["targets"]:
            lines.append(
                f"| {target['name']} | {target['goal']} | {target['basis']} | {fmt(target['value'])} | "
                f"{_met(target)} | {target['detail']} |"
            )
        if scenario["status"] != "ok":
            lines.append(
                f"| {scenario['title']} | | | | not judged | {scenario['status']}: {scenario['reason']} |"
            )
    lines += ["", "### How each number was obtained", ""]
    lines += [f"- {note}" for note in meta["notes"]]
    for scenario in results["scenarios"]:
        hows = [f"{m['name']}: {m['how']}" for m in scenario["metrics"] if m["how"]]
        for text in hows + scenario["notes"]:
            lines.append(f"- {scenario['title']} — {text}")
        lines.append(f"- {scenario['title']} — took {scenario['seconds']:.0f}s")
    return "\n".join(lines) + "\n"
