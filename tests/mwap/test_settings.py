"""Settings: a missing or malformed required setting stops the process with a message naming it."""

import base64
import os
import subprocess
import sys

import pytest

from mwap.settings import Settings

GOOD = {
    "MWAP_REDIS_URL": "redis://127.0.0.1:6379/0",
    "MWAP_MONGO_URL": "mongodb://127.0.0.1:27017",
    "MWAP_ENCRYPTION_KEYS": "k1:" + base64.b64encode(b"k" * 32).decode(),
    "MWAP_ADMIN_API_KEY": "a" * 32,
}


def run_entry(env: dict[str, str], module: str = "worker.entry") -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MWAP_")}
    return subprocess.run(
        [sys.executable, "-c", f"import {module}"],
        env={**clean, **env},
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.parametrize("missing", sorted(GOOD))
def test_missing_required_setting_stops_worker_naming_it(missing: str) -> None:
    env = {k: v for k, v in GOOD.items() if k != missing}
    result = run_entry(env)
    assert result.returncode == 2
    assert f"{missing}: is required but not set" in result.stderr


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MWAP_REDIS_URL", "http://nope"),
        ("MWAP_API_PORT", "eighty"),
        ("MWAP_ENCRYPTION_KEYS", "k1:c2hvcnQ="),
        ("MWAP_ADMIN_API_KEY", "short"),
    ],
)
def test_malformed_setting_stops_api_naming_it(name: str, value: str) -> None:
    result = run_entry({**GOOD, name: value}, module="api_thin.wsgi")
    assert result.returncode == 2
    assert name in result.stderr
    assert value not in result.stderr or name == "MWAP_API_PORT"


def test_inconsistent_time_limits_are_refused() -> None:
    result = run_entry({**GOOD, "MWAP_TASK_TIME_LIMIT": "1000", "MWAP_BROKER_VISIBILITY_TIMEOUT": "900"})
    assert result.returncode == 2
    assert "MWAP_BROKER_VISIBILITY_TIMEOUT must exceed MWAP_TASK_TIME_LIMIT" in result.stderr


def test_defaults_and_overrides() -> None:
    values = {k.removeprefix("MWAP_").lower(): v for k, v in GOOD.items()}
    settings = Settings(**values, sync_interval=60)
    assert settings.sync_interval == 60
    assert settings.health_check_interval == 900
    assert settings.key_ring().primary == "k1"
    assert "kkkk" not in repr(settings)  # secrets are masked in reprs and logs


def test_schedule_defaults_follow_the_seed() -> None:
    values = {k.removeprefix("MWAP_").lower(): v for k, v in GOOD.items()}
    settings = Settings(**values)
    assert settings.token_refresh_interval == 3600
    assert settings.token_refresh_lookahead == 4500
    assert settings.token_refresh_lookahead >= settings.token_refresh_interval
    assert settings.new_integration_check_within == 300
    # Deleted files are hard-deleted: there is no grace period to configure any more.
    assert "deleted_file_grace_days" not in Settings.model_fields


def test_a_refresh_lookahead_shorter_than_the_interval_is_refused() -> None:
    result = run_entry({**GOOD, "MWAP_TOKEN_REFRESH_INTERVAL": "3600", "MWAP_TOKEN_REFRESH_LOOKAHEAD": "600"})
    assert result.returncode == 2
    assert "MWAP_TOKEN_REFRESH_LOOKAHEAD must be at least MWAP_TOKEN_REFRESH_INTERVAL" in result.stderr
    # Equal is enough; a shorter interval with the default lookahead too.
    for env in (
        {"MWAP_TOKEN_REFRESH_INTERVAL": "600", "MWAP_TOKEN_REFRESH_LOOKAHEAD": "600"},
        {"MWAP_TOKEN_REFRESH_INTERVAL": "300"},
    ):
        assert run_entry({**GOOD, **env}).returncode == 0, env


def test_legacy_encryption_key_is_optional_and_masked() -> None:
    values = {k.removeprefix("MWAP_").lower(): v for k, v in GOOD.items()}
    assert Settings(**values).legacy_password() is None
    assert Settings(**values, legacy_encryption_key="").legacy_password() is None  # compose passes ""
    settings = Settings(**values, legacy_encryption_key="node-backend-password")
    assert settings.legacy_password() == "node-backend-password"
    assert "node-backend-password" not in repr(settings)
