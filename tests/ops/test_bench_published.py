"""The published bench results agree with the code and the README: ``latest.json`` was produced by
the bench code committed beside it, is a full run, its verdicts are the ones its own measured
columns give, and the README's table and ``latest.md`` are what it renders to. No servers.

``mwap bench --publish`` on a quiet machine writes all three; once published, any change to the
bench code fails these tests until it is published again, naming the command. While nothing is
published, the README must say so in place of the table (and the checks of the results skip).
"""

import json

import pytest

from ops.bench import publish
from ops.bench.report import readme_table, render
from ops.bench.verdicts import judge

REPUBLISH = "run `mwap bench --publish` on a quiet machine and commit ops/bench/results/ and README.md"


@pytest.fixture(scope="module")
def latest() -> dict:
    if not publish.LATEST_JSON.exists():
        pytest.skip("no bench run published (the README says so: test_an_unpublished_run_is_said)")
    return json.loads(publish.LATEST_JSON.read_text())


def test_an_unpublished_run_is_said() -> None:
    """Without latest.json there is no table to show: the README says that none was published,
    and no latest.md lingers from another run."""
    if publish.LATEST_JSON.exists():
        return  # the other tests check the published run
    assert publish.readme_section(publish.README.read_text()) == publish.NOT_PUBLISHED
    assert not publish.LATEST_MD.exists()


def test_latest_was_produced_by_the_committed_bench_code(latest: dict) -> None:
    assert latest["meta"]["benchHash"] == publish.code_hash(), (
        f"ops/bench changed since its results were published: {REPUBLISH}"
    )


def test_latest_is_a_full_run_with_every_scenario_ok(latest: dict) -> None:
    meta = latest["meta"]
    assert meta["quick"] is False
    assert meta["only"] == []
    assert all(scenario["status"] == "ok" for scenario in latest["scenarios"])


def test_latest_verdicts_are_those_of_its_measured_columns(latest: dict) -> None:
    measured = {
        f"{scenario['id']}/{metric['id']}": metric["values"]
        for scenario in latest["scenarios"]
        for metric in scenario["metrics"]
    }
    recomputed = [{"id": v.id, "value": v.value, "met": v.met} for v in judge(measured)]
    stored = [{"id": v["id"], "value": v["value"], "met": v["met"]} for v in latest["verdicts"]]
    assert stored == recomputed


def test_readme_table_and_latest_md_are_rendered_from_latest(latest: dict) -> None:
    assert publish.readme_section(publish.README.read_text()) == readme_table(latest), (
        f"README.md's bench table is not the one latest.json renders to: {REPUBLISH}"
    )
    assert publish.LATEST_MD.read_text() == render(latest)


def test_the_readme_table_is_replaced_between_its_markers_only() -> None:
    text = f"intro\n{publish.START}\nold table\n{publish.END}\noutro\n"
    replaced = publish.with_table(text, "| new |\n")
    assert replaced == f"intro\n{publish.START}\n| new |\n{publish.END}\noutro\n"
    assert publish.readme_section(replaced) == "| new |\n"
    with pytest.raises(ValueError, match="markers"):
        publish.with_table("no markers here", "| new |\n")


def test_a_busy_machine_is_half_a_run_queue_per_cpu() -> None:
    assert not publish.busy(1.0, 2)
    assert publish.busy(1.01, 2)
