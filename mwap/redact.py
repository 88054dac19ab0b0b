"""Keep secrets out of logs and error reports: by field name, by value pattern, by known value.

Shared by ``mwap.logs`` (every log line) and ``mwap.sentry`` (events and breadcrumbs). It errs on
the side of hiding too much: a log line that lost a harmless value is cheaper than a leaked token.

It runs on text a client controls (request paths logged on a 503, provider error bodies, Sentry
events), so it must cost time linear in its input, whatever the input:

- a text longer than ``MAX_SCRUB_CHARS`` is cut to its head and tail around a marker *before* any
  pattern runs, so no single call scans more than that;
- every pattern is linear: each one starts on a literal (``bearer``, ``eyJ``, ``mwap_``, a secret
  word...) or at the start of a run of its own characters (a look-behind), separators and names are
  bounded (``{0,64}``), runs followed by something else are possessive (``++``, ``{m,n}+``: never
  given back, so a failed match is not retried at every shorter length), and no quantifier is nested
  in another. An unbounded run appears only as the last element of a pattern, where it is consumed
  by the match. ``tests/test_hostile_redact.py`` times adversarial inputs against plain text.
"""

import re
import threading
from collections.abc import Iterable, Mapping
from typing import Any

FILTERED = "[Filtered]"
# Longest text scrubbed in one piece; a longer one keeps its head and tail around a marker.
MAX_SCRUB_CHARS = 32_768
TRUNCATED = "…[{} chars truncated]…"

# Field names, compared with case and separators removed ("X-Api-Key" -> "xapikey").
_NAME_CONTAINS = ("password", "passwd", "secret", "authorization", "cookie", "credential", "privatekey")
_NAME_ENDS = ("token", "tokens", "key", "keys", "pwd", "dsn", "signature", "sessionid", "ciphertext")
# Names that end like a secret but only describe one ("tokenUrl" does not: it ends in "url").
_NAME_SAFE_ENDS = ("url", "uri", "endpoint", "at", "interval", "lookahead", "type", "count", "maxage")
_NOT_NAME_CHARS = re.compile(r"[^a-z0-9]")

# ``name=value``, ``name: value``, ``"name": "value"``, ``'name': 'value'`` for a secret-like name.
# The match starts at the secret word; what precedes it ("access_" of "access_token") stays as it
# is, and only the name's end decides whether it is a secret ("tokenUrl" is not).
_ASSIGNMENT = re.compile(
    r"""(?ix)
    (?=[tspac])  # the secret words' first letters: lets the engine skip every other position fast
    (?P<name>(?:token|secret|passw(?:or)?d|api[_-]?key|authorization|signature|cookie|credential)
        [\w.-]{0,40}+)
    (?P<sep>['"]?\s{0,8}+[:=]\s{0,8}+['"]?)
    (?P<scheme>(?:bearer|basic)\s{1,8}+)?
    (?P<value>[^\s'"&,;}\])]++)
    """
)
# Each starts with its literal, so the engine searches for it instead of trying every position; the
# look-behind right after it stands for the word boundary (or run start) before it.
_PATTERNS = (
    # Authorization schemes wherever they appear.
    re.compile(r"(?P<keep>[Bb](?<!\w[Bb])(?i:earer)\s{1,16}+)[A-Za-z0-9._~+/=-]{8,}+"),
    re.compile(r"(?P<keep>Basic(?<!\wBasic)\s{1,16}+)[A-Za-z0-9+/]{8,}+={0,2}"),
    # JWTs (OAuth id/access tokens of some providers): only from the start of a base64url run.
    re.compile(r"eyJ(?<![A-Za-z0-9_-]eyJ)[A-Za-z0-9_-]{5,}+\.[A-Za-z0-9_-]{5,}+\.[A-Za-z0-9_-]*+"),
    # Provider token shapes: Google access and refresh tokens, Dropbox short-lived tokens.
    re.compile(r"ya29\.(?<!\wya29\.)[A-Za-z0-9._-]{10,}+"),
    re.compile(r"1//0(?<!\w1//0)[A-Za-z0-9._-]{10,}+"),
    re.compile(r"sl\.(?<!\wsl\.)[A-Za-z0-9._-]{20,}+"),
    # Our own API keys: tenant keys are "mwap_" + token_urlsafe(32), the generated admin key
    # "mwap_admin_" + token_urlsafe(32). The look-ahead wants an upper-case letter, digit or "-"
    # among the first characters, which random keys have and names like "mwap_http_requests_total"
    # (metrics, databases) do not.
    re.compile(r"mwap_(?<!\wmwap_)(?=[a-z_]{0,64}+[A-Z0-9-])[A-Za-z0-9_-]{24,}+"),
    # Credentials in URLs: scheme://user:password@host (the scheme stays outside the match).
    re.compile(r"(?P<keep>://(?<=[A-Za-z0-9+.-]://)[^/\s:@]{0,256}+:)[^/\s@]{1,1024}+(?=@)"),
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
    """Every secret value a Settings object holds: SecretStr fields, the DSN, and key-ring parts.

    That covers the admin API key, Flower's ``user:password`` (and the password alone), the
    encryption keys and the credentials inside Redis/MongoDB URLs held as secrets.
    """
    values: list[str] = []
    for name in type(settings).model_fields:  # type: ignore[attr-defined]
        value = getattr(settings, name, None)
        if value is not None and hasattr(value, "get_secret_value"):
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
    flat = _NOT_NAME_CHARS.sub("", name.lower())
    if not flat or flat.endswith(_NAME_SAFE_ENDS):
        return False
    return any(part in flat for part in _NAME_CONTAINS) or flat.endswith(_NAME_ENDS)


def truncate(text: str, limit: int = MAX_SCRUB_CHARS) -> str:
    """``text`` when it has at most ``limit`` characters, else its head and tail around a marker."""
    if len(text) <= limit:
        return text
    half = limit // 2
    return text[:half] + TRUNCATED.format(len(text) - 2 * half) + text[-half:]


def redact_text(text: str) -> str:
    """``text`` (cut to ``MAX_SCRUB_CHARS``) with secret-looking values replaced by ``[Filtered]``."""
    return scrub(truncate(text))


def scrub(text: str) -> str:
    """The patterns and known values over all of ``text``, however long: linear in its length."""
    for secret in _known:
        if secret in text:
            text = text.replace(secret, FILTERED)
    text = _ASSIGNMENT.sub(_assignment, text)
    for pattern in _PATTERNS:
        text = pattern.sub(_keep_prefix, text)
    return text


def _assignment(match: re.Match[str]) -> str:
    flat = _NOT_NAME_CHARS.sub("", match["name"].lower())
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
        kind = type(value)
        if len(value) == 2 and isinstance(value[0], str) and is_sensitive_name(value[0]):
            return kind([value[0], FILTERED])
        return kind(redact(item, _depth=_depth + 1) for item in value)
    return value


def secret_values(value: Any, *, _depth: int = 0) -> set[str]:
    """Every string held under a secret-like name anywhere in ``value`` (dict keys, header pairs).

    ``mwap.sentry`` hides these values wherever else they appear in the same event: a token held
    by ``access_token`` in one frame is also hidden when another frame keeps it as ``value``.
    """
    found: set[str] = set()
    if _depth > 32:
        return found
    if isinstance(value, Mapping):
        for key, item in value.items():
            if isinstance(key, str) and is_sensitive_name(key):
                found |= _strings(item)
            else:
                found |= secret_values(item, _depth=_depth + 1)
    elif isinstance(value, list | tuple):
        if len(value) == 2 and isinstance(value[0], str) and is_sensitive_name(value[0]):
            found |= _strings(value[1])
        else:
            for item in value:
                found |= secret_values(item, _depth=_depth + 1)
    return found


def _strings(value: Any, _depth: int = 0) -> set[str]:
    """The strings in ``value`` long enough to be secrets, without Sentry's quoting of reprs."""
    if _depth > 8:
        return set()
    if isinstance(value, str):
        found = {value, value.strip("'\"")}
        # "Bearer <token>" under "Authorization": the token is the secret too.
        scheme, _, rest = value.partition(" ")
        if rest and scheme.lower() in ("bearer", "basic", "token"):
            found.add(rest.strip())
        return {v for v in found if len(v) >= MIN_KNOWN_LENGTH and not v.startswith(FILTERED)}
    if isinstance(value, Mapping):
        value = list(value.values())
    if isinstance(value, list | tuple):
        return set().union(*(_strings(item, _depth + 1) for item in value)) if value else set()
    return set()


def replace_values(value: Any, secrets: Iterable[str], *, _depth: int = 0) -> Any:
    """A copy of ``value`` with every occurrence of ``secrets`` in its strings replaced."""
    ordered = sorted(set(secrets), key=len, reverse=True)
    if not ordered:
        return value
    return _replace(value, ordered, _depth)


def _replace(value: Any, secrets: list[str], depth: int) -> Any:
    if depth > 32:
        return FILTERED
    if isinstance(value, str):
        for secret in secrets:
            if secret in value:
                value = value.replace(secret, FILTERED)
        return value
    if isinstance(value, Mapping):
        return {key: _replace(item, secrets, depth + 1) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_replace(item, secrets, depth + 1) for item in value)
    return value


# --- what a tenant may read of an internal error ------------------------------------------------

HIDDEN_URL = "[url]"
HIDDEN_HOST = "[host]"
HIDDEN_ID = "[id]"
_URL = re.compile(r"(?<![A-Za-z0-9+.-])[A-Za-z][A-Za-z0-9+.-]{0,31}+://[^\s'\"<>`]*+")
_IPV6 = re.compile(r"\[[0-9A-Fa-f:.]{2,45}+\](?::\d{1,5}+)?")
# A run that may be a host name, with its port; ``_host`` decides. Starts only where a run starts.
_HOST = re.compile(r"(?<![\w.-])(?P<host>[A-Za-z0-9][A-Za-z0-9.-]{0,252}+)(?P<port>:\d{1,5}+)?(?![\w.-])")
# "key id 'k1'", "kid=k1", "key ids: k1": a key id after the words that announce one.
_KEY_ID = re.compile(
    r"(?i)(?P<keep>\b(?:key[ _-]?id|kid)s?[\s:=]{0,4}+)(?P<q>['\"]?)[A-Za-z0-9_-]{1,32}+(?P=q)"
)
_QUOTED_KEY = re.compile(r"(?i)(?P<keep>\bkey\s{1,4}+)'[A-Za-z0-9_-]{1,32}+'")
_API_KEY_ID = re.compile(r"\bkey_[0-9a-f]{16}\b")
# Name endings of hosts that are nobody's business outside the platform.
INTERNAL_SUFFIXES = frozenset(
    ("internal", "local", "localdomain", "localhost", "lan", "intranet", "intra", "corp", "home",
     "svc", "cluster", "private", "test", "invalid", "example")
)  # fmt: skip


def settings_hosts(settings: object) -> set[str]:
    """Host names the platform's own URLs and listeners name (Redis, MongoDB, Flower, Sentry...)."""
    from urllib.parse import urlsplit  # noqa: PLC0415 - only tenant-facing errors need it

    hosts: set[str] = set()
    for name in type(settings).model_fields:  # type: ignore[attr-defined]
        value = getattr(settings, name, None)
        if not isinstance(value, str) or not value:
            continue
        if name.endswith(("_url", "_dsn")):
            try:
                host = urlsplit(value).hostname
            except ValueError:
                continue
            if host:
                hosts.add(host.lower())
        elif name.endswith("_host"):
            hosts.add(value.lower())
    return hosts


def settings_key_ids(settings: object) -> set[str]:
    """The key ids of the encryption key ring (``kid:key,kid:key``)."""
    keys = getattr(settings, "encryption_keys", None)
    if keys is None or not hasattr(keys, "get_secret_value"):
        return set()
    return {kid for part in re.split(r"[,\s]+", keys.get_secret_value()) if (kid := part.partition(":")[0])}


def public_text(text: str, *, hosts: Iterable[str] = (), key_ids: Iterable[str] = ()) -> str:
    """``text`` as a tenant may read it: no secrets, URLs, internal hosts, addresses or key ids.

    For job errors shown to tenant keys (the admin reads the ledger's text, scrubbed of secrets
    only). ``hosts`` and ``key_ids`` are names the platform knows to be its own (``settings_hosts``,
    ``settings_key_ids``); they are hidden wherever they stand as a word.
    """
    text = redact_text(text)
    text = _URL.sub(HIDDEN_URL, text)
    text = _IPV6.sub(HIDDEN_HOST, text)
    text = _KEY_ID.sub(lambda m: m["keep"] + HIDDEN_ID, text)
    text = _QUOTED_KEY.sub(lambda m: m["keep"] + HIDDEN_ID, text)
    text = _API_KEY_ID.sub(HIDDEN_ID, text)
    known_hosts = frozenset(h.lower() for h in hosts if h)
    text = _HOST.sub(lambda m: HIDDEN_HOST if _is_host(m["host"], m["port"], known_hosts) else m[0], text)
    words = _words(frozenset(k for k in key_ids if k))
    if words is not None:
        text = words.sub(HIDDEN_ID, text)
    return text


def _is_host(host: str, port: str | None, known: frozenset[str]) -> bool:
    name = host.lower().rstrip(".")
    labels = name.split(".")
    if len(labels) == 4 and all(label.isdigit() and len(label) <= 3 for label in labels):
        return True  # an IPv4 address
    if port and name[:1].isalpha():
        return True  # host:port
    if name in known or name == "localhost":
        return True
    if not all(labels) or any(label.startswith("-") or label.endswith("-") for label in labels):
        return False
    if len(labels) >= 2 and labels[-1] in INTERNAL_SUFFIXES:
        return True
    return len(labels) >= 3 and labels[-1].isalpha()


_word_patterns: dict[frozenset[str], re.Pattern[str] | None] = {}


def _words(words: frozenset[str]) -> re.Pattern[str] | None:
    """One pattern matching any of ``words`` standing alone (not inside a longer id)."""
    if words not in _word_patterns:
        alternatives = "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))
        _word_patterns[words] = (
            re.compile(rf"(?<![A-Za-z0-9_-])(?:{alternatives})(?![A-Za-z0-9_-])") if words else None
        )
    return _word_patterns[words]
