"""Layers only point down: the core (``mwap``) imports nothing above it, nothing in production imports
the development tooling (``ops``: the fakes, the benchmark, the demo) or the tests, and the `mwap`
command (``mwap_cli``) sits above the worker, the tasks and the API, which never import it.

Every import counts: at module level, inside functions, under ``if TYPE_CHECKING``, and
``importlib.import_module("...")`` with a literal name.
"""

import ast
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest

ROOT = Path(__file__).resolve().parent.parent

CORE = "mwap"
PRODUCTION = ("mwap", "worker", "tasks", "api_thin", "mwap_cli")
DEVELOPMENT = ("ops", "tests")

# (importer, what it may not import, why)
RULES = [
    (
        {CORE},
        {"worker", "tasks", "api_thin", "mwap_cli", *DEVELOPMENT},
        "the core imports no layer above it",
    ),
    (set(PRODUCTION), set(DEVELOPMENT), "production code imports no development tooling or tests"),
    (
        {"worker", "tasks", "api_thin"},
        {"mwap_cli"},
        "the `mwap` command sits above the platform",
    ),
]


class Import(NamedTuple):
    module: str  # dotted name of the importing module
    line: int
    target: str  # dotted name imported

    @property
    def top(self) -> str:
        return self.target.split(".", 1)[0]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(source: str, module: str, *, is_package: bool = False) -> Iterator[Import]:
    """Every import in ``source``, relative ones resolved against ``module``."""
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(module, node.lineno, alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            yield Import(module, node.lineno, target)
        elif (
            isinstance(node, ast.Call)
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and (
                (isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                or (isinstance(node.func, ast.Name) and node.func.id in {"import_module", "__import__"})
            )
        ):
            yield Import(module, node.lineno, node.args[0].value)


def production_files() -> Iterator[Path]:
    for name in PRODUCTION:
        if (ROOT / name).is_dir():
            yield from sorted((ROOT / name).rglob("*.py"))
        elif (ROOT / f"{name}.py").is_file():
            yield ROOT / f"{name}.py"


def all_imports() -> list[Import]:
    found = []
    for path in production_files():
        found.extend(imports_of(path.read_text(), module_name(path), is_package=path.name == "__init__.py"))
    return found


def violations(found: list[Import]) -> list[str]:
    broken = []
    for imp in found:
        for importers, forbidden, why in RULES:
            if imp.module.split(".", 1)[0] in importers and imp.top in forbidden:
                broken.append(f"{imp.module}:{imp.line} imports {imp.target} ({why})")
                break  # one line per import, under the first rule it breaks
    return broken


@pytest.fixture(scope="module")
def found() -> list[Import]:
    return all_imports()


def test_the_layers_only_point_down(found: list[Import]) -> None:
    assert violations(found) == []


def test_every_production_package_is_read(found: list[Import]) -> None:
    """The check reads the real tree: each package is there and its known imports are seen."""
    for name in ("mwap", "worker", "tasks", "api_thin", "mwap_cli"):
        assert (ROOT / name / "__init__.py").is_file(), name
    importers = {imp.module.split(".", 1)[0] for imp in found}
    assert {"mwap", "worker", "tasks", "api_thin", "mwap_cli"} <= importers
    # mwap_cli imports the worker inside a function (jobs, queues): function-level imports count.
    assert any(imp.module.startswith("mwap_cli.") and imp.top == "worker" for imp in found)


def test_every_kind_of_import_is_caught() -> None:
    source = """
import ops.stack
from tests import factories
from . import sibling
from ..up import thing
if TYPE_CHECKING:
    from worker.base import JobTask

def late():
    import mwap_cli
    from ops.bench.cli import bench_command
    importlib.import_module("tasks.sync")
    __import__("api_thin.jobs")
"""
    caught = {(imp.target, imp.line) for imp in imports_of(source, "mwap.sub.module")}
    assert caught == {
        ("ops.stack", 2),
        ("tests", 3),
        ("mwap.sub", 4),
        ("mwap.up", 5),
        ("worker.base", 7),
        ("mwap_cli", 10),
        ("ops.bench.cli", 11),
        ("tasks.sync", 12),
        ("api_thin.jobs", 13),
    }
    broken = violations(list(imports_of(source, "mwap.sub.module")))
    assert len(broken) == 7  # all but the two relative imports inside the core
    assert all(line.startswith("mwap.sub.module:") for line in broken)


# --- MongoDB: the layers above the core reach collections through the Store only -----------------

ABOVE_THE_CORE = ("worker", "tasks", "api_thin", "mwap_cli")


def raw_collection_access(source: str) -> list[int]:
    """Lines subscripting a database (``db[...]``, ``x.db[...]``, ``db()[...]``, ``x.db()[...]``):
    collection access that steps around the tenant-scoped ``Store`` and its explicit
    cross-tenant door (``Store.unscoped``)."""

    def is_database(node: ast.expr) -> bool:
        if isinstance(node, ast.Call):
            node = node.func
        return (isinstance(node, ast.Name) and node.id == "db") or (
            isinstance(node, ast.Attribute) and node.attr == "db"
        )

    return [
        node.lineno
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Subscript) and is_database(node.value)
    ]


def test_above_the_core_every_collection_is_reached_through_the_store() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{line}"
        for package in ABOVE_THE_CORE
        for path in sorted((ROOT / package).rglob("*.py"))
        for line in raw_collection_access(path.read_text())
    ]
    assert found == [], "use Store(db).tenant(id)[name], .global_collection(name) or .unscoped(name)"


def test_raw_collection_access_is_caught() -> None:
    source = 'a = db["x"]\nb = self.db()["jobs"]\nc = services.db["tenants"]\nd = Store(db).tenant(t)["x"]\n'
    assert raw_collection_access(source) == [1, 2, 3]
