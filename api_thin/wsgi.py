"""WSGI entry point for gunicorn: ``gunicorn api_thin.wsgi:app``.

The process's logging and Sentry are set up here, before the app is built, and not by
``create_app``: a test or a tool that builds an app leaves them as they are. Each gunicorn worker
imports this module after the fork, so each has its own Sentry client.
"""

from api_thin import create_app
from mwap import metrics
from mwap.logs import configure_logging
from mwap.sentry import init_sentry
from mwap.settings import load_or_exit

settings = load_or_exit()
configure_logging(settings, "api")
metrics.set_role("api")
init_sentry(settings, "api")
app = create_app(settings)
