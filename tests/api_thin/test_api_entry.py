"""The API's entry point sets up the process's logging and Sentry; its factory does not.

``create_app`` is called by tests, tools and the entry point alike: only ``api_thin.wsgi`` (what
gunicorn loads) may take over the root logger and start Sentry.
"""

import json
import logging
import subprocess
import sys
from pathlib import Path

import sentry_sdk

from mwap.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DSN = "https://public@sentry.invalid/1"


def test_create_app_leaves_the_root_logger_and_sentry_alone(settings: Settings) -> None:
    from api_thin import create_app  # noqa: PLC0415 - keeps collection light

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    before = sentry_sdk.get_client()
    active, dsn = before.is_active(), before.dsn
    other_level = "ERROR" if level != logging.ERROR else "DEBUG"
    # Settings that would change both if the factory applied them.
    create_app(settings.model_copy(update={"sentry_dsn": DSN, "log_level": other_level}))

    assert root.handlers == handlers
    assert root.level == level
    after = sentry_sdk.get_client()
    assert (after.is_active(), after.dsn) == (active, dsn)


def test_the_wsgi_entry_point_sets_up_logging_and_sentry(stack_env: dict[str, str]) -> None:
    probe = """
import json, logging, sentry_sdk
import api_thin.wsgi
from mwap.logs import JsonFormatter
root = logging.getLogger()
print(json.dumps({
    "json_handlers": sum(isinstance(h.formatter, JsonFormatter) for h in root.handlers),
    "level": logging.getLevelName(root.level),
    "sentry": sentry_sdk.get_client().is_active(),
    "dsn": sentry_sdk.get_client().dsn,
}))
"""
    env = {**stack_env, "MWAP_SENTRY_DSN": DSN, "MWAP_LOG_LEVEL": "WARNING"}
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    state = json.loads(done.stdout.strip().splitlines()[-1])
    assert state == {"json_handlers": 1, "level": "WARNING", "sentry": True, "dsn": DSN}
