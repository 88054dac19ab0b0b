"""docker-compose.yml stays in step with the code: services, commands, healthchecks, settings."""

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from mwap.settings import ENV_PREFIX, Settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
PLATFORM_SERVICES = {"api", "worker", "worker-sync", "beat", "flower"}
REQUIRED_SETTINGS = {
    f"{ENV_PREFIX}{name.upper()}" for name, f in Settings.model_fields.items() if f.is_required()
}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def command_of(service: dict) -> str:
    command = service["command"]
    return " ".join(command) if isinstance(command, list) else command


def test_services_and_healthchecks(compose: dict) -> None:
    services = compose["services"]
    assert set(services) == {"mongo", "redis"} | PLATFORM_SERVICES
    for name, service in services.items():
        assert "healthcheck" in service, f"{name} has no healthcheck"
    assert services["mongo"]["image"] == "mongo:7"
    assert "--replSet" in services["mongo"]["command"]
    assert "rs.initiate" in " ".join(services["mongo"]["healthcheck"]["test"])
    assert services["redis"]["image"] == "redis:7"
    assert "--appendonly" in services["redis"]["command"]


def test_platform_services_share_one_image_and_the_settings(compose: dict) -> None:
    for name in PLATFORM_SERVICES:
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


def test_commands_name_the_real_entry_points(compose: dict) -> None:
    services = compose["services"]
    assert "api_thin.wsgi:app" in command_of(services["api"])
    for name in ("worker", "worker-sync", "beat", "flower"):
        assert "worker.entry:celery_app" in command_of(services[name]), name
    queues = {q for name in ("worker", "worker-sync") for q in services[name]["command"][5].split(",")}
    assert queues == {"default", "sync", "maintenance"}
    assert "FLOWER_BASIC_AUTH" in services["flower"]["environment"]
    assert (ROOT / "Dockerfile").exists()


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose is not installed")
def test_docker_compose_config_accepts_it() -> None:
    env = {"PATH": "/usr/bin:/bin", "MWAP_ENCRYPTION_KEYS": "k1:x", "MWAP_ADMIN_API_KEY": "k" * 20}
    env["MWAP_FLOWER_BASIC_AUTH"] = "op:pw"
    result = subprocess.run(
        ["docker-compose", "-f", str(COMPOSE), "config", "-q"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
