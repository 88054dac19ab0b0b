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


def when_ready(server: object) -> None:
    """Once at start, before any worker: refuse a database that a newer build migrated (exit status 1,
    naming both versions); say if migrations are pending (`mwap db migrate`) or indexes missing."""
    from mwap import migrations  # noqa: PLC0415 - the master needs it only here
    from mwap.connections import mongo_db  # noqa: PLC0415
    from mwap.indexes import missing_indexes  # noqa: PLC0415

    try:
        database = mongo_db(_settings)
        migrations.check_schema(database, "api")
        missing = missing_indexes(database, _settings)
    except migrations.SchemaTooNewError as error:
        server.log.critical("%s", error)  # type: ignore[attr-defined]
        raise SystemExit(f"mwap: {error}") from None
    except Exception as error:  # noqa: BLE001 - MongoDB may be down at start; /ready reports it
        server.log.warning("api: could not check the database: %s", error)  # type: ignore[attr-defined]
        return
    if missing:
        server.log.warning(  # type: ignore[attr-defined]
            "api: %d indexes missing (run `mwap db migrate`): %s", len(missing), ", ".join(missing)
        )


# gunicorn's own lines (the access log, its errors) go through its own loggers, which do not
# propagate to the platform's JSON handler: scrub them too (a key sent in a request path, the admin
# key or Flower's password echoed in a URL), with the same filter as every other line.
from gunicorn.config import Config  # noqa: E402
from gunicorn.glogging import Logger as _GunicornLogger  # noqa: E402

from mwap.logs import RedactionFilter  # noqa: E402


class RedactingLogger(_GunicornLogger):
    def setup(self, cfg: Config) -> None:
        super().setup(cfg)
        for log in (self.error_log, self.access_log):
            for handler in log.handlers:
                handler.addFilter(RedactionFilter())


logger_class = RedactingLogger
