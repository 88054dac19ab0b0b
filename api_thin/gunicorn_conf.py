"""gunicorn settings: ``gunicorn -c python:api_thin.gunicorn_conf api_thin.wsgi:app``."""

from mwap.settings import load_or_exit

_settings = load_or_exit()

bind = f"{_settings.api_host}:{_settings.api_port}"
workers = _settings.api_workers
worker_class = "gthread"
threads = 4
timeout = 30
graceful_timeout = 10
keepalive = 5
# Bound what a client can make the server hold.
limit_request_line = 8190
limit_request_fields = 100
accesslog = "-"
access_log_format = (
    '{"time":"%(t)s","remote":"%(h)s","method":"%(m)s","path":"%(U)s","status":%(s)s,'
    '"bytes":%(B)s,"durationMs":%(M)s,"requestId":"%({x-request-id}o)s"}'
)
