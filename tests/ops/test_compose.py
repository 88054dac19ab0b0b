"""docker-compose.yml stays in step with the code: services, commands, healthchecks, settings."""

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from mwap.settings import ENV_PREFIX, Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
PLATFORM_SERVICES = {"api", "worker", "worker-sync", "beat", "flower"}
MIGRATE = "migrate"  # the one-shot `mwap db migrate` every platform service waits for
REQUIRED_SETTINGS = {
    f"{ENV_PREFIX}{name.upper()}" for name, f in Settings.model_fields.items() if f.is_required()
}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def command_of(service: dict, field: str = "command") -> str:
    command = service[field]
    return " ".join(command) if isinstance(command, list) else command


def test_services_and_healthchecks(compose: dict) -> None:
    services = compose["services"]
    assert set(services) == {"mongo", "redis", MIGRATE} | PLATFORM_SERVICES
    for name, service in services.items():
        if name != MIGRATE:  # it exits once done: there is nothing to check the health of
            assert "healthcheck" in service, f"{name} has no healthcheck"
    assert services["mongo"]["image"] == "mongo:7"
    assert "--replSet rs0" in command_of(services["mongo"], "entrypoint")
    assert "rs.initiate" in " ".join(services["mongo"]["healthcheck"]["test"])
    assert services["redis"]["image"] == "redis:7"
    assert "--appendonly yes" in command_of(services["redis"])


def test_platform_services_share_one_image_and_the_settings(compose: dict) -> None:
    for name in PLATFORM_SERVICES | {MIGRATE}:
        service = compose["services"][name]
        assert service["build"] == ".", name
        env = service["environment"]
        assert set(env) >= REQUIRED_SETTINGS, f"{name} lacks {REQUIRED_SETTINGS - set(env)}"
        unknown = {
            key
            for key in env
            if key.startswith(ENV_PREFIX)
            and key.removeprefix(ENV_PREFIX).lower() not in Settings.model_fields
        }
        assert not unknown, f"{name} sets settings that do not exist: {unknown}"
        # The backend's legacy key is passed through, optional (empty: unset).
        assert env["MWAP_LEGACY_ENCRYPTION_KEY"] == "${MWAP_LEGACY_ENCRYPTION_KEY:-}", name
        assert service["depends_on"]["mongo"]["condition"] == "service_healthy"


def test_migrations_run_once_before_every_platform_service(compose: dict) -> None:
    services = compose["services"]
    migrate = services[MIGRATE]
    assert migrate["command"] == ["mwap", "db", "migrate"]
    assert migrate["restart"] == "no"  # a one-shot: restarting it would keep the others waiting
    assert migrate["depends_on"] == {"mongo": {"condition": "service_healthy"}}
    for name in PLATFORM_SERVICES:
        depends = services[name]["depends_on"]
        assert depends[MIGRATE] == {"condition": "service_completed_successfully"}, name
        assert depends["redis"]["condition"] == "service_healthy", name


def test_commands_name_the_real_entry_points(compose: dict) -> None:
    services = compose["services"]
    assert "api_thin.wsgi:app" in command_of(services["api"])
    for name in ("worker", "worker-sync", "beat", "flower"):
        assert "worker.entry:celery_app" in command_of(services[name]), name
    queues = {q for name in ("worker", "worker-sync") for q in services[name]["command"][5].split(",")}
    assert queues == {"default", "sync", "maintenance", "webhooks"}
    assert "FLOWER_BASIC_AUTH" in services["flower"]["environment"]
    assert (ROOT / "Dockerfile").exists()


# --- deployment defaults (issue 14): nothing open to the network, everything authenticated ------


def _published(entry: str | dict) -> tuple[str, str]:
    """(host address, container port) of a `ports` entry, short or long syntax."""
    if isinstance(entry, dict):
        return entry.get("host_ip", "0.0.0.0"), str(entry["target"])
    parts = str(entry).rsplit(":", 2)
    return (parts[0] if len(parts) == 3 else "0.0.0.0"), parts[-1]


def test_no_port_is_published_on_all_interfaces(compose: dict) -> None:
    published = {
        name: [_published(entry) for entry in service.get("ports", [])]
        for name, service in compose["services"].items()
    }
    # Redis and MongoDB live on the compose network only; the API (with /metrics) and Flower on
    # the host's loopback.
    assert published["redis"] == []
    assert published["mongo"] == []
    assert published["api"] == [("127.0.0.1", "8000")]
    assert published["flower"] == [("127.0.0.1", "5555")]
    for name, service in compose["services"].items():
        assert "network_mode" not in service, f"{name} shares the host's network"


def test_redis_needs_a_password_and_never_evicts(compose: dict) -> None:
    redis = compose["services"]["redis"]
    command = command_of(redis)
    # "$$": compose leaves one "$" for the container's shell, which reads the environment below.
    assert '--requirepass "$$REDISCLI_AUTH"' in command
    assert "--maxmemory-policy noeviction" in command  # a full broker refuses writes, keeps queues
    assert '--maxmemory "$$REDIS_MAXMEMORY"' in command
    assert redis["environment"]["REDISCLI_AUTH"].startswith("${MWAP_REDIS_PASSWORD:?")
    assert redis["environment"]["REDIS_MAXMEMORY"] == "${MWAP_REDIS_MAXMEMORY:-1gb}"
    url = compose["x-platform"]["environment"]["MWAP_REDIS_URL"]
    assert url.startswith("redis://:${MWAP_REDIS_PASSWORD:?")
    assert url.endswith("@redis:6379/0")


def test_mongodb_needs_authentication(compose: dict) -> None:
    mongo = compose["services"]["mongo"]
    entrypoint = command_of(mongo, "entrypoint")
    assert "exec docker-entrypoint.sh mongod" in entrypoint
    assert "--auth" in entrypoint
    assert '--keyFile "$$key"' in entrypoint
    assert mongo["environment"]["MONGO_INITDB_ROOT_USERNAME"] == "root"
    assert mongo["environment"]["MONGO_INITDB_ROOT_PASSWORD"].startswith("${MWAP_MONGO_ROOT_PASSWORD:?")
    # The platform's own user may read and write its database, nothing else.
    health = " ".join(mongo["healthcheck"]["test"])
    database = compose["x-platform"]["environment"]["MWAP_MONGO_DB"]
    assert f"roles: [{{role: 'readWrite', db: '{database}'}}]" in health
    assert "-u root" in health
    assert "process.env.MWAP_MONGO_PASSWORD" in health
    url = compose["x-platform"]["environment"]["MWAP_MONGO_URL"]
    assert url.startswith("mongodb://mwap:${MWAP_MONGO_PASSWORD:?")
    assert url.endswith(f"@mongo:27017/{database}?replicaSet=rs0&authSource=admin")


def test_flower_checks_its_password_strength_at_start(compose: dict) -> None:
    env = compose["services"]["flower"]["environment"]
    assert env["FLOWER_BASIC_AUTH"].startswith("${MWAP_FLOWER_BASIC_AUTH:?")
    # The same value as a setting: mwap/settings.py refuses a weak one before Flower serves.
    assert env["MWAP_FLOWER_BASIC_AUTH"] == "${MWAP_FLOWER_BASIC_AUTH}"


def test_flower_starts_before_the_workers_and_keeps_its_history(compose: dict) -> None:
    services = compose["services"]
    # Flower names a task from its task-received event only: it listens before any worker runs,
    # and the workers send their events from their start.
    for name in ("worker", "worker-sync"):
        assert services[name]["depends_on"]["flower"] == {"condition": "service_healthy"}, name
    assert compose["x-platform"]["environment"]["MWAP_WORKER_TASK_EVENTS"] == "true"
    # Persistent: its state file on a named volume, written every minute and when it stops.
    flower = services["flower"]
    command = flower["command"]
    assert "--persistent=True" in command
    [db] = [arg.removeprefix("--db=") for arg in command if arg.startswith("--db=")]
    mounts = dict(volume.split(":", 1)[::-1] for volume in flower["volumes"])
    assert mounts[str(Path(db).parent)] in compose["volumes"]
    assert [a for a in command if a.startswith("--state_save_interval=")] == ["--state_save_interval=60000"]
    # The image makes that directory its user's, so a new named volume is writable by it.
    assert f"install -d -o mwap -g mwap -m 0700 {Path(db).parent}" in (ROOT / "Dockerfile").read_text()


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose is not installed")
def test_docker_compose_config_accepts_it() -> None:
    env = {"PATH": "/usr/bin:/bin", "MWAP_ENCRYPTION_KEYS": "k1:x", "MWAP_ADMIN_API_KEY": "k" * 20}
    env["MWAP_FLOWER_BASIC_AUTH"] = "operator:Zx8-qP2_vLm9wR4tYk7s"
    env |= {"MWAP_REDIS_PASSWORD": "r" * 24, "MWAP_MONGO_PASSWORD": "m" * 24}
    env["MWAP_MONGO_ROOT_PASSWORD"] = "t" * 24
    result = subprocess.run(
        ["docker-compose", "-f", str(COMPOSE), "config", "-q"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
