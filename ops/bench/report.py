"""The markdown report of a bench run, from the same data as its JSON; and the README's table.

Pure: reads the results dict only, so a test can check the README against ``latest.json``.
"""

from typing import Any

from ops.bench.sides import NAMES, SIDES


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


def _load(meta: dict[str, Any], when: str) -> str:
    values = meta.get("loadAverage", {}).get(when)
    return "/".join(f"{v:.2f}" for v in values) if values else "?"


def _met(verdict: dict[str, Any]) -> str:
    return {True: "**met**", False: "**not met**", None: "not judged"}[verdict["met"]]


def summary(results: dict[str, Any]) -> str:
    """One paragraph: what ran, where, when, how busy the machine was, which bench code."""
    meta = results["meta"]
    machine = meta["machine"]
    return (
        f"{'Quick' if meta['quick'] else 'Full'} run of {meta['startedAt'][:16].replace('T', ' ')} UTC on "
        f"{machine['nproc']} CPUs ({machine['cpu'] or 'unknown CPU'}), {machine['memoryGiB']} GiB, "
        f"Linux {machine['kernel']}, Python {machine['python']}; load average {_load(meta, 'before')} "
        f"before, {_load(meta, 'after')} after; {meta['durationSeconds'] / 60:.1f} min, "
        f"{meta['rounds']} rounds, sides interleaved; MongoDB: {meta['mongo']}; bench code "
        f"{meta['benchHash'][:12]}."
        + (" Published with --force on a busy machine." if meta.get("forcedWhileBusy") else "")
    )


def verdict_table(results: dict[str, Any]) -> list[str]:
    lines = ["| target | goal | value | result | measured (medians) |", "|---|---|---|---|---|"]
    for verdict in results["verdicts"]:
        lines.append(
            f"| {verdict['name']} | {verdict['goal']} | {fmt(verdict['value'])} | {_met(verdict)} | "
            f"{verdict['detail']} |"
        )
    return lines


def readme_table(results: dict[str, Any]) -> str:
    """What the README shows between its markers: the summary and the targets."""
    return "\n".join([summary(results), "", *verdict_table(results)]) + "\n"


def _breakdown(breakdown: dict[str, float], limit: int = 12) -> str:
    shown = [f"{name} {fmt(value)}" for name, value in list(breakdown.items())[:limit]]
    if len(breakdown) > limit:
        shown.append(f"… {len(breakdown) - limit} more")
    return ", ".join(shown) or "none"


def render(results: dict[str, Any]) -> str:
    meta = results["meta"]
    lines = [
        f"## mwap bench — {'quick' if meta['quick'] else 'full'} run",
        "",
        summary(results),
        "",
        "### Targets",
        "",
        *verdict_table(results),
        "",
        "### Measured",
        "",
        "Each cell: median of the rounds (min..max). The ratio is the platform's median ÷ the reference "
        "side's (marked *).",
        "",
        "| scenario | metric | unit | " + " | ".join(NAMES[side] for side in SIDES) + " | platform ÷ ref |",
        "|---|---|---|" + "---|" * len(SIDES) + "---|",
    ]
    breakdowns: list[str] = []
    for scenario in results["scenarios"]:
        title = scenario["title"]
        if scenario["status"] != "ok":
            lines.append(
                f"| {title} | **{scenario['status']}**: {scenario['reason']} |" + " |" * (len(SIDES) + 2)
            )
            continue
        for metric in scenario["metrics"]:
            cells = []
            for side in SIDES:
                cell = _stats(metric["stats"].get(side))
                cells.append(f"{cell}*" if side == metric["reference"] and cell != "-" else cell)
            lines.append(
                f"| {title} | {metric['name']} | {metric['unit']} | {' | '.join(cells)} | {fmt(metric['ratio'])} |"
            )
            title = ""
            for side, breakdown in metric["breakdown"].items():
                breakdowns.append(
                    f"| {scenario['title']} | {metric['name']} | {NAMES[side]} | {_breakdown(breakdown)} |"
                )
    lines += [
        "",
        "### Commands per job, by command",
        "",
        "Redis: `INFO commandstats` names; MongoDB: `role:command` (api, worker, beat: the platform's "
        "processes; bench: sent by the bench process itself).",
        "",
        "| scenario | metric | side | per job |",
        "|---|---|---|---|",
        *breakdowns,
        "",
        "### How each number was obtained",
        "",
    ]
    lines += [f"- {note}" for note in meta["notes"]]
    for scenario in results["scenarios"]:
        hows = [f"{m['name']}: {m['how']}" for m in scenario["metrics"] if m["how"]]
        for text in hows + scenario["notes"]:
            lines.append(f"- {scenario['title']} — {text}")
        lines.append(f"- {scenario['title']} — took {scenario['seconds']:.0f}s")
    return "\n".join(lines) + "\n"
