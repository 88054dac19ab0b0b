"""The thin HTTP API: enqueue work, read results. No job runs inside a request."""

from flask import Flask
from flask.json.provider import DefaultJSONProvider

from api_thin import console, observability, problems, routes
from mwap import notify
from mwap.settings import Settings, load_or_exit
from worker.app import create_celery_app

MAX_BODY_BYTES = 1024 * 1024


def create_app(settings: Settings | None = None) -> Flask:
    """The Flask app, configured from ``settings`` (read from the environment when omitted)."""
    settings = settings or load_or_exit()
    app = Flask(__name__)
    app.config.update(
        MWAP_SETTINGS=settings,
        MAX_CONTENT_LENGTH=MAX_BODY_BYTES,
        JSON_SORT_KEYS=False,
    )
    if isinstance(app.json, DefaultJSONProvider):
        app.json.sort_keys = False
    # A producer-only Celery app: the API sends tasks by name and imports no task module.
    app.extensions["mwap_celery"] = create_celery_app(settings, include_tasks=False)
    app.extensions["mwap_job_waiters"] = notify.Waiters(settings.job_waiters_per_process)
    problems.install(app)
    observability.install(app)
    routes.install(app)
    console.install(app)
    return app
