"""Provider-client fixtures: the fake providers run as a real subprocess, spoken to over loopback."""

import os
import selectors
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ops.fake_providers.control import FakeAccount, FakeProviders
from tasks.providers import (
    ChangePage,
    FileItem,
    ProviderClient,
    ProviderConfig,
    RetryPolicy,
    Tokens,
    client_for,
)
from tasks.providers.outbound import DEV_LOOPBACK

REPO = Path(__file__).resolve().parents[3]
STARTUP_DEADLINE = 30.0
PROVIDERS = ("google-drive", "dropbox", "onedrive")


def start_fake_server(log_path: Path, *extra: str) -> tuple[subprocess.Popen[str], str]:
    """Start ``python -m ops.fake_providers`` on a free port and wait for its ready line."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    command = [sys.executable, "-m", "ops.fake_providers", "--host", "127.0.0.1", "--port", "0", *extra]
    with log_path.open("wb") as stderr:
        process = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=stderr, text=True
        )
    try:
        return process, _ready_url(process, time.monotonic() + STARTUP_DEADLINE)
    except RuntimeError as exc:
        stop_fake_server(process)
        raise RuntimeError(f"{exc}; stderr:\n{log_path.read_text()}") from None


def _ready_url(process: subprocess.Popen[str], deadline: float) -> str:
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while (remaining := deadline - time.monotonic()) > 0:
            if not selector.select(timeout=remaining):
                break
            line = process.stdout.readline()
            if not line:
                raise RuntimeError(f"fake providers exited with {process.wait()} before ready")
            if line.startswith("ready "):
                return line.split()[1]
    raise RuntimeError("fake providers not ready in time")


def stop_fake_server(process: subprocess.Popen[str]) -> int:
    """SIGTERM, then SIGKILL if it lingers; returns the exit code."""
    if process.poll() is None:
        process.terminate()
    try:
        code = process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        code = process.wait()
    if process.stdout is not None:
        process.stdout.close()
    return code


@pytest.fixture(scope="session")
def fake_providers_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of one fake-providers subprocess shared by the session."""
    process, url = start_fake_server(tmp_path_factory.mktemp("fake-providers") / "stderr.log")
    try:
        yield url
    finally:
        stop_fake_server(process)


@pytest.fixture
def spawn_fake_server(tmp_path: Path) -> Iterator[Callable[..., tuple[subprocess.Popen[str], str]]]:
    """Start extra fake servers (``--flags``) for a test; any still running are stopped after it."""
    started: list[subprocess.Popen[str]] = []

    def spawn(*extra: str) -> tuple[subprocess.Popen[str], str]:
        process, url = start_fake_server(tmp_path / f"fake-{len(started)}.log", *extra)
        started.append(process)
        return process, url

    yield spawn
    for process in started:
        stop_fake_server(process)  # a no-op wait for those the test already stopped


@pytest.fixture(scope="session")
def fake(fake_providers_url: str) -> Iterator[FakeProviders]:
    """The control-API client of the shared fake server."""
    with FakeProviders(fake_providers_url) as control:
        yield control


@pytest.fixture(params=PROVIDERS)
def provider(request: pytest.FixtureRequest) -> str:
    """Each provider slug in turn."""
    return request.param


@pytest.fixture
def make_account(fake: FakeProviders) -> Iterator[Callable[..., FakeAccount]]:
    """Create fresh fake accounts (``fake.create_account`` arguments); deleted after the test."""
    created: list[str] = []

    def make(provider: str, **options: Any) -> FakeAccount:
        account = fake.create_account(provider, **options)
        created.append(account.id)
        return account

    yield make
    for account_id in created:
        fake.delete_account(account_id)


@pytest.fixture
def sleeps() -> list[float]:
    """What clients built by ``make_client`` asked to sleep; they never really sleep."""
    return []


@pytest.fixture
def make_client(fake: FakeProviders, sleeps: list[float]) -> Callable[..., ProviderClient]:
    """A client for a fake account; fast retry policy and recorded sleeps unless overridden."""

    def make(account: FakeAccount, *, expires_in: float = 3600, **options: Any) -> ProviderClient:
        config = ProviderConfig.from_document(fake.document(account.provider))
        tokens = Tokens(
            access_token=account.access_token,
            refresh_token=account.refresh_token,
            expires_at=datetime.now(UTC) + timedelta(seconds=expires_in),
        )
        options.setdefault("sleep", sleeps.append)
        options.setdefault("retry", RetryPolicy(max_attempts=3, backoff_base=0.05))
        options.setdefault("timeout", (3.05, 10.0))
        options.setdefault("policy", DEV_LOOPBACK)  # the fake answers over http on loopback
        return client_for(config, tokens, **options)

    return make


class Mirror:
    """What a sync job would keep: files by id, applied page by page as the contract says."""

    def __init__(self) -> None:
        self.items: dict[str, FileItem] = {}
        self.cursor: str | None = None

    def apply(self, page: ChangePage) -> None:
        """Deletions first, then upserts (so an item moved within the page survives)."""
        for file_id in page.deletions:
            self.items.pop(file_id, None)
        for gone in page.deleted_paths:
            for file_id, item in list(self.items.items()):
                path = (item.path or "").lower()
                if path == gone or path.startswith(gone + "/"):
                    del self.items[file_id]
        for item in page.items:
            self.items[item.provider_file_id] = item
        self.cursor = page.next_cursor

    def sync(self, client: ProviderClient) -> list[ChangePage]:
        """Run one ``changes`` from the stored cursor; after a reset relisting drop the unseen."""
        pages: list[ChangePage] = []
        seen: set[str] = set()
        for page in client.changes(self.cursor):
            self.apply(page)
            pages.append(page)
            if page.reset:
                seen.update(item.provider_file_id for item in page.items)
                if page.done:
                    self.items = {key: value for key, value in self.items.items() if key in seen}
        return pages

    def names(self) -> dict[str, str]:
        """id -> name."""
        return {file_id: item.name for file_id, item in self.items.items()}


@pytest.fixture
def mirror() -> Mirror:
    """An empty mirror of an account."""
    return Mirror()


def fake_names(fake: FakeProviders, account: FakeAccount) -> dict[str, str]:
    """id -> name of every live item the fake holds for ``account``."""
    return {entry["id"]: entry["name"] for entry in fake.files(account.id, limit=10_000)}


@pytest.fixture
def expected_names(fake: FakeProviders) -> Callable[[FakeAccount], dict[str, str]]:
    """id -> name of every live item of an account, read from the fake."""
    return lambda account: fake_names(fake, account)
