"""Keep secrets out of logs and error reports: by field name, by value pattern, by known value.

Shared by ``mwap.logs`` (every log line) and ``mwap.sentry`` (events and breadcrumbs). It errs on
the side of hiding too much: a log line that lost a harmless value is cheaper than a leaked token.
"""

import re
import threading
from collections.abc import Iterable, Mapping
from typing import Any

FILTERED = "[Filtered]"

# Field names, compared with case and separators removed ("X-Api-Key" -> "xapikey").
_NAME_CONTAINS = ("password", "passwd", "secret", "authorization", "cookie", "credential", "privatekey")
_NAME_ENDS = ("token", "tokens", "key", "keys", "pwd", "dsn", "signature", "sessionid", "ciphertext")
# Names that end like a secret but only describe one ("tokenUrl" does not: it ends in "url").
_NAME_SAFE_ENDS = ("url", "uri", "endpoint", "at", "interval", "lookahead", "type", "count", "maxage")

# ``name=value``, ``name: value``, ``"name": "value"``, ``'name': 'value'`` for a secret-like name.
_ASSIGNMENT = re.compile(
    r"""(?ix)
    (?P<name>[\w.-]*(?:token|secret|passw(?:or)?d|api[_-]?key|apikey|authorization|signature|cookie|credential)[\w.-]*)
    (?P<sep>['"]?\s*[:=]\s*['"]?)
    (?P<scheme>(?:bearer|basic)\s+)?
    (?P<value>[^\s'"&,;}\])]+)
    """
)
_PATTERNS = (
    # Authorization schemes wherever they appear.
    re.compile(r"(?i)(?P<keep>\bbearer\s+)[A-Za-z0-9._~+/=-]{8,}"),
    re.compile(r"(?P<keep>\bBasic\s+)[A-Za-z0-9+/]{8,}={0,2}"),
    # JWTs (OAuth id/access tokens of some providers).
    re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"),
    # Provider token shapes: Google access and refresh tokens, Dropbox short-lived tokens.
    re.compile(r"\bya29\.[A-Za-z0-9._-]{10,}"),
    re.compile(r"\b1//0[A-Za-z0-9._-]{10,}"),
    re.compile(r"\bsl\.[A-Za-z0-9._-]{20,}"),
    # Our own API keys.
    re.compile(r"\bmwap_[a-z]+_[A-Za-z0-9_-]{16,}"),
    # Credentials in URLs: scheme://user:password@host.
    re.compile(r"(?P<keep>\b[a-z][a-z0-9+.-]*://[^/\s:@]*:)[^/\s@]+(?=@)"),
)

_known_lock = threading.Lock()
_known: tuple[str, ...] = ()
MIN_KNOWN_LENGTH = 8  # shorter values would redact ordinary words


def register_secrets(values: Iterable[str | None]) -> None:
    """Remember exact secret values (settings' keys, DSN, ...) so any verbatim occurrence is hidden."""
    global _known  # noqa: PLW0603 - a process-wide list, replaced atomically
    new = {v for v in values if v and len(v) >= MIN_KNOWN_LENGTH}
    with _known_lock:
        # Longest first, so a secret containing another is replaced whole.
        _known = tuple(sorted(set(_known) | new, key=len, reverse=True))


def settings_secrets(settings: object) -> list[str]:
    """Every secret value a Settings object holds: SecretStr fields, the DSN, and key-ring parts."""
    values: list[str] = []
    for name in type(settings).model_fields:  # type: ignore[attr-defined]
        value = getattr(settings, name, None)
        if hasattr(value, "get_secret_value"):
            secret = value.get_secret_value()
            values.append(secret)
            # "kid:key,kid:key" and "user:password": each part leaks on its own too.
            for part in re.split(r"[,\s]+", secret):
                values.extend([part, part.partition(":")[2]])
        elif name.endswith("dsn") and isinstance(value, str):
            values.append(value)
    return values


def is_sensitive_name(name: str) -> bool:
    """True for field names that hold secrets: tokens, secrets, passwords, keys, auth headers."""
    flat = re.sub(r"[^a-z0-9]", "", name.lower())
    if not flat or flat.endswith(_NAME_SAFE_ENDS):
        return False
    return any(part in flat for part in _NAME_CONTAINS) or flat.endswith(_NAME_ENDS)


def redact_text(text: str) -> str:
    """``text`` with secret-looking values replaced by ``[Filtered]``."""
    for secret in _known:
        if secret in text:
            text = text.replace(secret, FILTERED)
    text = _ASSIGNMENT.sub(_assignment, text)
    for pattern in _PATTERNS:
        text = pattern.sub(_keep_prefix, text)
    return text


def _assignment(match: re.Match[str]) -> str:
    flat = re.sub(r"[^a-z0-9]", "", match["name"].lower())
    if flat.endswith(_NAME_SAFE_ENDS) or match["value"].startswith("[Filtered"):
        return match[0]
    return f"{match['name']}{match['sep']}{match['scheme'] or ''}{FILTERED}"


def _keep_prefix(match: re.Match[str]) -> str:
    keep = match.groupdict().get("keep") or ""
    return f"{keep}{FILTERED}"


def redact(value: Any, *, _depth: int = 0) -> Any:
    """A copy of ``value`` (dicts, lists, strings, nested) with secrets removed.

    Dict entries whose key names a secret lose their value; strings are pattern-scrubbed; sentry's
    ``[name, value]`` header pairs are treated like dict entries. Other types pass through.
    """
    if _depth > 32:  # pathological nesting: give up on the branch rather than recurse forever
        return FILTERED
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {
            key: FILTERED
            if isinstance(key, str) and is_sensitive_name(key) and item not in (None, "")
            else redact(item, _depth=_depth + 1)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        if len(value) == 2 and isinstance(value[0], str) and is_sensitive_name(value[0]):
            return type(value)([value[0], FILTERED])
        return type(value)(redact(item, _depth=_depth + 1) for item in value)
    return value
