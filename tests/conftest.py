"""Session fixtures: a real redis-server, the MongoDB wire server and a real Celery worker."""

import base64
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import factories
import pytest
from flask.testing import FlaskClient
from pymongo.database import Database

import tasks
from mwap import migrations
from mwap.connections import mongo_db, redis_client
from mwap.metrics import reset_multiprocess_dir
from mwap.settings import Settings
from ops import processes
from ops.fake_providers.control import FakeProviders
from ops.processes import Child
from tasks.providers.outbound import DEV_LOOPBACK_ENV

# The job types' registry, as every entry point (worker, API, CLI) loads it at start.
tasks.load()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked ``last`` run after all others, wherever their folder sorts: they read what every
    other test left behind (tests/test_zz_secrets.py)."""
    items.sort(key=lambda item: item.get_closest_marker("last") is not None)


ADMIN_KEY = "test-admin-" + secrets.token_urlsafe(24)
ENCRYPTION_KEYS = "k1:" + base64.b64encode(secrets.token_bytes(32)).decode()


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("stack")


@pytest.fixture(scope="session")
def log_dir(run_dir: Path) -> Path:
    return run_dir / "logs"


@pytest.fixture(scope="session")
def redis_url(log_dir: Path) -> Iterator[str]:
    if url := os.environ.get("MWAP_REDIS_URL"):
        yield url
        return
    port = processes.free_port()
    child = processes.start_redis(port, data_dir=None, log_dir=log_dir, env=os.environ)
    yield f"redis://127.0.0.1:{port}/0"
    child.stop()


@pytest.fixture(scope="session")
def mongo_url(log_dir: Path) -> Iterator[str]:
    if url := os.environ.get("MWAP_MONGO_URL"):
        yield url
        return
    port = processes.free_port()
    child = processes.start_mongo(port, sqlite_path=None, log_dir=log_dir, env=os.environ)
    yield processes.mongo_url(port)
    child.stop()


@pytest.fixture(scope="session")
def stack_env(redis_url: str, mongo_url: str, run_dir: Path) -> dict[str, str]:
    """The environment every platform process of the test session runs with."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MWAP_")}
    env.update(
        MWAP_REDIS_URL=redis_url,
        MWAP_MONGO_URL=mongo_url,
        MWAP_MONGO_DB=f"mwap_test_{secrets.token_hex(4)}",
        MWAP_ENCRYPTION_KEYS=ENCRYPTION_KEYS,
        MWAP_LEGACY_ENCRYPTION_KEY=factories.LEGACY_PASSWORD,
        # Every test request comes from 127.0.0.1: the per-address failed-auth throttle is tested on
        # its own budgets (tests/api_thin/test_hostile_auth.py), off for the rest of the session.
        MWAP_AUTH_FAILURES_PER_MINUTE="0",
        MWAP_ADMIN_API_KEY=ADMIN_KEY,
        # The fake providers (and hostile test servers) answer over http on loopback.
        **DEV_LOOPBACK_ENV,
        PYTHONUNBUFFERED="1",
        PROMETHEUS_MULTIPROC_DIR=str(reset_multiprocess_dir(run_dir / "metrics")),
    )
    return env


@pytest.fixture(scope="session")
def settings(stack_env: dict[str, str]) -> Settings:
    values = {k.removeprefix("MWAP_").lower(): v for k, v in stack_env.items() if k.startswith("MWAP_")}
    return Settings(**values)


@pytest.fixture(scope="session")
def db(settings: Settings) -> Database:
    """The session's database, migrated as `mwap db migrate` does (every index, the records)."""
    database = mongo_db(settings)
    migrations.migrate(database, settings)
    return database


@pytest.fixture(scope="session")
def worker(stack_env: dict[str, str], log_dir: Path) -> Iterator[Child]:
    """One real Celery worker (prefork) consuming every queue."""
    child = processes.start_worker(env=stack_env, log_dir=log_dir, concurrency=2)
    yield child
    child.stop()


@pytest.fixture(scope="session")
def app(settings: Settings):
    from api_thin import create_app  # noqa: PLC0415 - keeps collection light for server-less unit tests

    application = create_app(settings)
    application.testing = False  # exercise the real error handlers, not Flask's test propagation
    return application


@pytest.fixture
def client(app) -> FlaskClient:
    return app.test_client()


@pytest.fixture(scope="session")
def admin_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_KEY}"}


@pytest.fixture(scope="session")
def ring(settings: Settings):
    return settings.key_ring()


@pytest.fixture(scope="session")
def fake(log_dir: Path, db: Database, ring) -> Iterator[FakeProviders]:
    """The fake providers as a real subprocess, registered as the three cloudProviders."""
    port = processes.free_port()
    child = processes.start_fake_providers(port, env=os.environ, log_dir=log_dir)
    control = FakeProviders(f"http://127.0.0.1:{port}")
    for document in control.provider_documents():
        factories.point_provider_at(db, ring, document)
    yield control
    control.close()
    child.stop()


@pytest.fixture(scope="session")
def services(settings: Settings, db: Database, ring):
    from mwap.services import Services  # noqa: PLC0415

    return Services(settings, db, redis_client(settings), ring)


@pytest.fixture
def tenant_id(db: Database) -> str:
    return factories.tenant(db)["_id"]
