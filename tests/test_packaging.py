"""What ships: the wheel (and so the image, which installs it) holds the platform and the `mwap`
command, and none of the development tooling (ops/: the fakes, the benchmark, the demo seed) or the
tests; the Dockerfile copies exactly the wheel's packages."""

import configparser
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path

import click
import pytest

ROOT = Path(__file__).resolve().parent.parent
# What a build never reads: the venv, caches, runtime data, and earlier build output (setuptools
# would pack a stale build/lib into the wheel).
IGNORED = shutil.ignore_patterns(
    ".git", ".venv", ".data", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis"
)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[zipfile.ZipFile]:
    """The project's wheel, built from a copy of the work tree (ops/ and tests/ included, so that
    leaving them out is the build's doing) with the locked setuptools: offline, no isolation."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "src"
    shutil.copytree(ROOT, source, ignore=IGNORED)
    assert (source / "ops" / "fake_providers").is_dir()
    assert (source / "tests").is_dir()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--wheel-dir",
            str(tmp / "dist"),
            str(source),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    [built] = (tmp / "dist").glob("mwap_tasks-*.whl")
    with zipfile.ZipFile(built) as archive:
        yield archive


def top_levels(archive: zipfile.ZipFile) -> set[str]:
    """The importable top-level names the wheel installs (packages and modules)."""
    names = set()
    for name in archive.namelist():
        head = name.split("/", 1)[0]
        if not head.endswith((".dist-info", ".data")):
            names.add(head.removesuffix(".py"))
    return names


def test_the_wheel_holds_the_platform_and_its_command(wheel: zipfile.ZipFile) -> None:
    names = wheel.namelist()
    assert {"mwap", "worker", "tasks", "api_thin", "mwap_cli"} <= top_levels(wheel)
    assert "mwap_cli/__init__.py" in names
    assert "mwap_cli/__main__.py" in names
    [metadata] = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    entry_points = configparser.ConfigParser()
    entry_points.read_string(wheel.read(metadata).decode())
    assert entry_points["console_scripts"]["mwap"] == "mwap_cli:main"
    # The development commands come from the mwap-tasks-dev distribution, never from this one.
    assert not entry_points.has_section("mwap.commands")


def test_the_wheel_holds_no_development_or_test_code(wheel: zipfile.ZipFile) -> None:
    names = wheel.namelist()
    leaked = [
        n
        for n in names
        if n.split("/", 1)[0] in {"ops", "tests"}
        or re.search(r"(^|/)(fake_providers|bench|conftest\.py|test_[^/]*\.py)(/|$)", n)
    ]
    assert leaked == []
    assert "mwap/demo.py" not in names
    assert "mwap/cli.py" not in names
    for name in names:
        if name.endswith(".py"):
            text = wheel.read(name).decode()
            assert not re.search(r"^\s*(from|import) (ops|tests)\b", text, re.MULTILINE), name


def test_the_image_copies_exactly_the_wheels_packages(wheel: zipfile.ZipFile) -> None:
    """The Dockerfile installs the project from what it COPYs: every package of the wheel, and
    nothing of the development tooling or the tests."""
    copied = set()
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if match := re.match(r"COPY\s+(?!--from)(.+)\s+\S+$", line.strip()):
            for source in match.group(1).split():
                assert (ROOT / source).exists(), f"the Dockerfile copies {source}, which is not there"
                copied.add(Path(source).name.removesuffix(".py"))
    assert "ops" not in copied
    assert "tests" not in copied
    assert top_levels(wheel) <= copied
    # Not even in the build context.
    assert {"ops", "tests"} <= set((ROOT / ".dockerignore").read_text().split())


def test_the_development_distribution_lists_every_ops_package() -> None:
    """ops/pyproject.toml names its packages one by one (the folder is the `ops` package itself):
    a new sub-package must be listed, or a non-editable install of ops/ would lack it."""
    config = tomllib.loads((ROOT / "ops" / "pyproject.toml").read_text())
    listed = set(config["tool"]["setuptools"]["packages"])
    found = {
        ".".join(("ops", *init.parent.relative_to(ROOT / "ops").parts))
        for init in (ROOT / "ops").rglob("__init__.py")
        if "__pycache__" not in init.parts
    }
    assert listed == found
    assert config["tool"]["setuptools"]["package-dir"] == {"ops": "."}


def test_the_development_commands_are_installed_as_entry_points() -> None:
    """`mwap demo` and `mwap bench` reach the command through the installed mwap-tasks-dev
    distribution's entry points, as ops/pyproject.toml declares them."""
    config = tomllib.loads((ROOT / "ops" / "pyproject.toml").read_text())
    declared = config["project"]["entry-points"]["mwap.commands"]
    installed = {ep.name: ep for ep in entry_points(group="mwap.commands")}
    assert {name: ep.value for name, ep in installed.items()} == declared
    assert installed["demo"].dist is not None
    assert installed["demo"].dist.name == "mwap-tasks-dev"
    for name, ep in installed.items():
        assert isinstance(ep.load(), click.Command), name
