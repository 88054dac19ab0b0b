"""Hostile authentication: keys without a tenant, floods of bogus bearers, many keys of one tenant.

Each test shows the attack as it would work without the guard (what it would cost or grant) and
then bounded: no 5xx, no MongoDB round trip beyond a fixed budget, no admin by accident.
"""

import os
import secrets
import signal
from collections.abc import Iterator

import factories
import pymongo
import pytest
import requests
from api_support import app_with, assert_problem, bearer, own_api_stack, tenant_with_key
from bson import ObjectId
from pymongo import monitoring
from pymongo.database import Database

from api_thin.auth import Principal
from mwap import apikeys, connections
from mwap.ledger import now
from mwap.settings import Settings


class Finds(monitoring.CommandListener):
    """The collections of the MongoDB ``find`` commands sent (the key lookup is one)."""

    def __init__(self) -> None:
        self.collections: list[str] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name in {"find", "aggregate", "count"}:
            self.collections.append(str(event.command.get(event.command_name)))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


@pytest.fixture(scope="module")
def finds(settings: Settings) -> Iterator[tuple[Finds, str]]:
    """A MongoClient (under its own URL) that reports its commands; apps built on that URL use it."""
    url = settings.mongo_url + ("&" if "?" in settings.mongo_url else "?") + "appname=mwap-hostile-auth"
    log = Finds()
    client = pymongo.MongoClient(url, tz_aware=True, event_listeners=[log], serverSelectionTimeoutMS=5000)
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(connections._mongo, (os.getpid(), url), client)
        yield log, url
    client.close()


def address() -> str:
    """A client address of its own, so every test has fresh failure budgets."""
    return f"10.{secrets.randbelow(256)}.{secrets.randbelow(256)}.{1 + secrets.randbelow(254)}"


def bogus() -> dict[str, str]:
    return bearer(f"mwap_{secrets.token_urlsafe(32)}")


# --- admin is a property of the key, never the absence of a tenant ------------------------------


@pytest.mark.parametrize(
    "tenant_field",
    [{"tenantId": None}, {}, {"tenantId": "not-an-id"}, {"tenantId": "0" * 24}],
    ids=["null", "missing", "garbage", "hex-string"],
)
def test_a_key_document_without_a_tenant_authenticates_nobody(
    client, db: Database, tenant_field: dict
) -> None:
    """A live, unrevoked key document whose ``tenantId`` is null, missing or not an ObjectId.

    Before: ``Principal.is_admin`` was ``tenant_id is None``, so any path that built a principal
    from such a document's tenant (``doc.get("tenantId")``) made the key the admin, able to read
    and write every tenant; a missing ``tenantId`` raised KeyError, a 500. Now admin is a flag set
    only when the bearer matched MWAP_ADMIN_API_KEY, and such a document authenticates nobody.
    """
    key = f"mwap_{secrets.token_urlsafe(32)}"
    doc = {
        "_id": "key_" + secrets.token_hex(8),
        **tenant_field,
        "keyHash": apikeys.hash_key(key),
        "prefix": key[:11],
        "name": "planted",
        "createdAt": now(),
        "revokedAt": None,
    }
    db["apiKeys"].insert_one(doc)
    try:
        # In spirit: the document is there, live, and found by the key's hash.
        assert db["apiKeys"].find_one({"keyHash": apikeys.hash_key(key), "revokedAt": None}) is not None
        # A principal without a tenant can no longer be anything but the explicit admin.
        with pytest.raises(ValueError, match="tenant"):
            Principal(tenant_id=None, key_id=doc["_id"])
        assert apikeys.find_live(db, key) is None
        for method, path in [("POST", "/v1/providers"), ("GET", "/v1/jobs"), ("GET", "/v1/integrations")]:
            response = client.open(
                path, method=method, headers=bearer(key), environ_base={"REMOTE_ADDR": address()}
            )
            assert_problem(response, 401)
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
    finally:
        db["apiKeys"].delete_one({"_id": doc["_id"]})


def test_only_the_admin_key_is_admin(client, db: Database, admin_headers: dict) -> None:
    _, headers = tenant_with_key(db)
    # An admin-only operation: the admin gets past authorization (to validation of the empty
    # body), a tenant key does not.
    assert_problem(client.post("/v1/providers", json={}, headers=admin_headers), 422)
    assert_problem(client.post("/v1/providers", json={}, headers=headers), 403)
    assert Principal.admin().is_admin
    assert not Principal(tenant_id=str(ObjectId()), key_id="key_x").is_admin
    with pytest.raises(ValueError, match="admin"):
        Principal(tenant_id=str(ObjectId()), key_id="admin", is_admin=True)


# --- failed authentication is throttled per client address before any MongoDB query ------------


def test_bogus_bearers_cost_mongodb_nothing_beyond_the_failure_budget(
    settings: Settings, finds: tuple[Finds, str]
) -> None:
    log, url = finds
    attempts, burst = 30, 3

    # The attack in spirit: with the throttle off, every bogus bearer is a key lookup in MongoDB.
    open_door = app_with(settings, mongo_url=url, auth_failures_per_minute=0).test_client()
    here = {"REMOTE_ADDR": address()}
    log.collections.clear()
    statuses = [
        open_door.get("/v1/jobs", headers=bogus(), environ_base=here).status_code for _ in range(attempts)
    ]
    assert statuses == [401] * attempts
    assert log.collections.count("apiKeys") == attempts

    # Now: after the address's budget, 429 with Retry-After and not one MongoDB command.
    guarded = app_with(
        settings, mongo_url=url, auth_failures_per_minute=6, auth_failure_burst=burst
    ).test_client()
    here = {"REMOTE_ADDR": address()}
    log.collections.clear()
    responses = [guarded.get("/v1/jobs", headers=bogus(), environ_base=here) for _ in range(attempts)]
    statuses = [r.status_code for r in responses]
    refused = statuses.index(429)
    # A budget of `burst` (one more if a refill interval passed during the test), then refusals only.
    assert burst <= refused <= burst + 1
    assert statuses == [401] * refused + [429] * (attempts - refused)
    assert log.collections.count("apiKeys") == refused
    assert log.collections == ["apiKeys"] * refused  # the refused ones sent nothing
    last = responses[-1]
    body = assert_problem(last, 429, "rate-limited")
    assert "failed authentications" in body["title"]
    assert 1 <= int(last.headers["Retry-After"]) <= 60
    assert all(r.status_code < 500 for r in responses)

    # An absurdly long bearer from a fresh address is refused without a lookup at all.
    log.collections.clear()
    long_key = bearer("mwap_" + "A" * 100_000)
    assert_problem(guarded.get("/v1/jobs", headers=long_key, environ_base={"REMOTE_ADDR": address()}), 401)
    assert log.collections == []

    # Another address is not punished for this one.
    assert_problem(guarded.get("/v1/jobs", headers=bogus(), environ_base={"REMOTE_ADDR": address()}), 401)


def test_successful_requests_never_draw_from_the_failure_budget(settings: Settings, db: Database) -> None:
    guarded = app_with(settings, auth_failures_per_minute=6, auth_failure_burst=2).test_client()
    _, headers = tenant_with_key(db)
    here = {"REMOTE_ADDR": address()}
    assert all(
        guarded.get("/v1/jobs", headers=headers, environ_base=here).status_code == 200 for _ in range(6)
    )
    # The same address still has its whole failure budget.
    assert [guarded.get("/v1/jobs", headers=bogus(), environ_base=here).status_code for _ in range(2)] == [
        401
    ] * 2


def test_forged_forwarded_for_does_not_buy_a_fresh_budget(settings: Settings) -> None:
    """Rotating X-Forwarded-For would give an attacker a new budget per request if the header were
    believed; it is ignored without trusted proxies, and with n trusted proxies only the entry the
    nearest proxy appended counts (what werkzeug's ProxyFix(x_for=n) takes)."""
    direct = app_with(settings, auth_failures_per_minute=6, auth_failure_burst=2).test_client()
    here = {"REMOTE_ADDR": address()}
    statuses = [
        direct.get(
            "/v1/jobs", headers={**bogus(), "X-Forwarded-For": address()}, environ_base=here
        ).status_code
        for _ in range(8)
    ]
    assert statuses.count(401) <= 3
    assert statuses[-1] == 429

    proxied = app_with(
        settings, auth_failures_per_minute=6, auth_failure_burst=2, trusted_proxy_count=1
    ).test_client()
    proxy = {"REMOTE_ADDR": "127.0.0.1"}
    client_ip = address()
    statuses = [
        proxied.get(
            "/v1/jobs",
            headers={**bogus(), "X-Forwarded-For": f"{address()}, {client_ip}"},
            environ_base=proxy,
        ).status_code
        for _ in range(8)
    ]
    assert statuses.count(401) <= 3
    assert statuses[-1] == 429
    # Another client behind the same proxy has its own budget.
    other = proxied.get("/v1/jobs", headers={**bogus(), "X-Forwarded-For": address()}, environ_base=proxy)
    assert_problem(other, 401)


def test_one_ipv6_slash_64_is_one_budget(settings: Settings) -> None:
    guarded = app_with(settings, auth_failures_per_minute=6, auth_failure_burst=2).test_client()
    prefix = f"2001:db8:{secrets.randbelow(65536):x}:{secrets.randbelow(65536):x}"
    statuses = [
        guarded.get(
            "/v1/jobs", headers=bogus(), environ_base={"REMOTE_ADDR": f"{prefix}::{n + 1:x}"}
        ).status_code
        for n in range(8)
    ]
    assert statuses.count(401) <= 3
    assert statuses[-1] == 429


@pytest.fixture(scope="module")
def own_api(stack_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """gunicorn over a MongoDB and a Redis of its own (the test freezes that MongoDB)."""
    with own_api_stack(
        stack_env,
        tmp_path_factory.mktemp("hostile-auth"),
        MWAP_MONGO_TIMEOUT_MS="1000",
        MWAP_AUTH_FAILURES_PER_MINUTE="6",
        MWAP_AUTH_FAILURE_BURST="3",
    ) as stack:
        yield stack


def test_over_real_http_a_spent_budget_answers_429_even_with_mongodb_frozen(own_api: dict) -> None:
    """Under gunicorn: once the address's budget is spent, bogus bearers are answered from Redis
    alone. MongoDB is then frozen (SIGSTOP): a request that still looked its key up would hang
    and end in a 503; every one is a prompt 429 instead."""
    url = own_api["url"]

    def attempt() -> requests.Response:
        return requests.get(f"{url}/v1/jobs", headers=bogus(), timeout=15)

    statuses = [attempt().status_code for _ in range(5)]
    assert statuses[0] == 401
    assert statuses[-1] == 429
    own_api["mongo"].signal(signal.SIGSTOP)
    try:
        frozen = [attempt() for _ in range(20)]
    finally:
        own_api["mongo"].signal(signal.SIGCONT)
    assert {r.status_code for r in frozen} == {429}
    assert all(int(r.headers["Retry-After"]) >= 1 for r in frozen)
    assert all(r.headers["Content-Type"].startswith("application/problem+json") for r in frozen)


# --- the limiter is per tenant as well as per key --------------------------------------------------


def test_many_keys_of_one_tenant_share_one_tenant_budget(settings: Settings, db: Database) -> None:
    per_key_burst, tenant_burst, keys = 3, 5, 4
    limited = app_with(
        settings,
        rate_limit_per_minute=6,
        rate_limit_burst=per_key_burst,
        tenant_rate_limit_per_minute=6,
        tenant_rate_limit_burst=tenant_burst,
    ).test_client()
    tenant = factories.tenant(db)
    headers = [bearer(factories.api_key(db, tenant["_id"])[1]) for _ in range(keys)]
    # In spirit: per-key budgets alone would let this tenant make keys * burst requests at once.
    wanted = keys * per_key_burst
    responses = [limited.get("/v1/jobs", headers=headers[n % keys]) for n in range(wanted)]
    statuses = [r.status_code for r in responses]
    assert tenant_burst <= statuses.count(200) <= tenant_burst + 1 < wanted
    assert set(statuses) == {200, 429}
    refused = next(r for r in responses if r.status_code == 429)
    assert "for all keys of its tenant" in assert_problem(refused, 429, "rate-limited")["detail"]
    assert int(refused.headers["Retry-After"]) >= 1
    # Another tenant has a budget of its own.
    _, other = tenant_with_key(db)
    assert limited.get("/v1/jobs", headers=other).status_code == 200


def test_the_tenant_budget_defaults_to_five_keys_worth(settings: Settings) -> None:
    from api_thin.auth import tenant_budget  # noqa: PLC0415

    assert tenant_budget(
        settings.model_copy(update={"rate_limit_per_minute": 100, "rate_limit_burst": 20})
    ) == (
        500,
        100,
    )
    assert (
        tenant_budget(settings.model_copy(update={"rate_limit_per_minute": 0}))[0] == 0
    )  # off with keys off
