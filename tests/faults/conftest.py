"""Fault-injection suite: every test here is marked ``faults`` and adds a row to the summary table."""

from pathlib import Path

import faultkit
import pytest

HERE = Path(__file__).parent
COLUMNS = ("fault", "trials", "jobs", "lost", "duplicated effects", "5xx", "leaked secrets", "seconds")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.faults)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The table for humans; each test has already asserted its own loss/duplicate/leak columns."""
    if not faultkit.ROWS:
        return
    rows = [
        (r.fault, r.trials, r.jobs, r.lost, r.duplicated, r.server_errors, r.leaked, f"{r.seconds:.0f}")
        for r in faultkit.ROWS
    ]
    widths = [max(len(str(v)) for v in column) for column in zip(COLUMNS, *rows, strict=True)]
    terminalreporter.section("fault injection summary")
    for values in (COLUMNS, *rows):
        cells = [
            str(v).ljust(w) if n == 0 else str(v).rjust(w)
            for n, (v, w) in enumerate(zip(values, widths, strict=True))
        ]
        terminalreporter.write_line("  ".join(cells))
    notes = [f"{r.fault}: {r.note}" for r in faultkit.ROWS if r.note]
    for note in notes:
        terminalreporter.write_line(f"  * {note}")


@pytest.fixture
def stack_root(tmp_path: Path) -> Path:
    return tmp_path
