"""Structured logging: one JSON object per line on stdout, secrets redacted, job and request ids attached.

The ids come from a context variable: the API binds ``requestId`` per request, the worker binds
``jobId``/``jobType``/``requestId`` per task (``worker/signals.py``) and ``tenantId``/``integrationId``
once the job's ledger document is loaded (``worker/base.py``). Every line logged meanwhile, by our
code or a library's, carries them.

Everything in a line is scrubbed once: the message by the handler's filter, the ids when they are
bound, the extras and the traceback when the line is written. The fields the formatter fills in
itself (time, level, logger, process) are not scrubbed: no caller's text reaches them.
"""

import contextlib
import json
import logging
import sys
import traceback
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, TextIO

from mwap import redact

CONTEXT_FIELDS = ("requestId", "jobId", "jobType", "tenantId", "integrationId")
_EMPTY: Mapping[str, str] = MappingProxyType({})
_context: ContextVar[Mapping[str, str]] = ContextVar("mwap_log_context", default=_EMPTY)

# Attributes every LogRecord has; anything else on a record came from ``extra=`` and is logged.
_RECORD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
_HANDLER_NAME = "mwap-json"


def bind(**ids: str | None) -> None:
    """Add ids (``jobId=...``) to this context's log lines; ``None`` values are ignored."""
    unknown = set(ids) - set(CONTEXT_FIELDS)
    if unknown:
        raise ValueError(f"unknown log context fields: {sorted(unknown)}")
    # Scrubbed here, once, rather than in each line they are written to (a request id is the client's).
    merged = {**_context.get(), **{k: redact.redact_text(str(v)) for k, v in ids.items() if v is not None}}
    _context.set(MappingProxyType(merged))


def bind_job(doc: Mapping[str, Any]) -> None:
    """Bind the ids a ledger document names: its tenant, integration and originating request."""
    bind(
        tenantId=doc.get("tenantId"),
        integrationId=(doc.get("subject") or {}).get("integrationId"),
        requestId=doc.get("requestId"),
    )


def clear() -> None:
    """Forget every bound id (end of a request or task)."""
    _context.set(_EMPTY)


def current() -> dict[str, str]:
    """The ids bound in this context."""
    return dict(_context.get())


@contextlib.contextmanager
def bound(**ids: str | None) -> Iterator[None]:
    """Bind ids for the duration of a ``with`` block, restoring the previous ones afterwards."""
    token = _context.set(_context.get())
    bind(**ids)
    try:
        yield
    finally:
        _context.reset(token)


# Set on a record whose message RedactionFilter has rendered and scrubbed.
_SCRUBBED = "_mwap_scrubbed"


class RedactionFilter(logging.Filter):
    """Renders the message with its args and scrubs it, so no handler ever sees a raw secret."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, _SCRUBBED, False) and record.args is None:
            return True  # a second handler of the same record: the message is scrubbed already
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a malformed %-format still gets logged, unformatted
            message = f"{record.msg} {record.args!r}"
        record.msg, record.args = redact.redact_text(message), None
        setattr(record, _SCRUBBED, True)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record: timestamp, level, logger, message, bound ids, extras, ``exc``."""

    def __init__(self, process: str) -> None:
        super().__init__()
        self.process = process

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if not getattr(record, _SCRUBBED, False):  # a formatter used without the filter
            message = redact.redact_text(message)
        entry: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": message,
            "process": self.process,
            "pid": record.process,
        }
        entry.update(_context.get())  # scrubbed by bind()
        extras = {
            key: value
            for key, value in record.__dict__.items()
            if key not in _RECORD_ATTRS and not key.startswith("_") and key not in entry
        }
        if isinstance(extras.get("data"), dict) and record.exc_info:
            # Celery's task log records repeat the traceback in ``data``; ``exc`` has it once.
            extras["data"] = {k: v for k, v in extras["data"].items() if k != "traceback"}
        if record.exc_info:
            extras["exc"] = "".join(traceback.format_exception(*record.exc_info)).rstrip()
        elif record.exc_text:
            extras["exc"] = record.exc_text
        if record.stack_info:
            extras["stack"] = record.stack_info
        if extras:
            entry.update(redact.redact(extras))
        return json.dumps(entry, default=_jsonable, ensure_ascii=False)


def _jsonable(value: object) -> str:
    return value.isoformat() if isinstance(value, datetime) else repr(value)


class _StdoutHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stdout`` is at emit time (test runners and daemons swap it)."""

    def __init__(self) -> None:
        super().__init__(sys.stdout)

    @property
    def stream(self) -> TextIO:
        return sys.stdout

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass


def make_handler(process: str, stream: TextIO | None = None) -> logging.Handler:
    """The JSON handler: redaction filter plus formatter, on ``stream`` (stdout when None)."""
    handler = logging.StreamHandler(stream) if stream is not None else _StdoutHandler()
    handler.set_name(_HANDLER_NAME)
    handler.addFilter(RedactionFilter())
    handler.setFormatter(JsonFormatter(process))
    return handler


def configure_logging(settings: object, process: str) -> None:
    """Route every logger through one JSON handler on stdout at ``settings.log_level``.

    Idempotent: calling it again replaces the handler it installed and leaves others alone.
    ``process`` names the component in every line (``api``, ``worker``, ``beat``).
    """
    redact.register_secrets(redact.settings_secrets(settings))
    root = logging.getLogger()
    for handler in list(root.handlers):
        if handler.get_name() == _HANDLER_NAME:
            root.removeHandler(handler)
    root.addHandler(make_handler(process))
    root.setLevel(getattr(settings, "log_level", "INFO"))
    # Libraries that are chatty at INFO and say nothing an operator acts on.
    for name in ("urllib3", "pymongo", "kombu.pidbox"):
        logging.getLogger(name).setLevel(logging.WARNING)
