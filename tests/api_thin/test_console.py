"""The operators' console (/console) served by the API app, over the session's real Redis and MongoDB:
sign-in and its cookie, CSRF, security headers, filters and pages, the two actions and their
audit trail, bad input. The browser tests (tests/console) drive the same pages in Chromium."""

import re
from datetime import timedelta
from typing import Any

import factories
import pytest
from api_support import app_with
from bson import ObjectId
from flask import Flask
from flask.testing import FlaskClient
from pydantic import SecretStr
from pymongo.database import Database

from api_thin.console import session as console_session
from api_thin.console.queries import JobFilter
from mwap import indexes, ledger
from mwap.settings import Settings

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture(scope="module")
def admin_key(settings: Settings) -> str:
    return settings.admin_api_key.get_secret_value()


@pytest.fixture
def sign_in(client: FlaskClient, admin_key: str):
    def signed(name: str = "ops-alice") -> str:
        """Sign ``client`` in; returns the session's CSRF token (read off a page, as a browser would)."""
        answer = client.post("/console/login", data={"operator": name, "key": admin_key, "next": "/console/"})
        assert answer.status_code == 302, answer.text
        page = client.get("/console/jobs")
        assert page.status_code == 200
        token = _CSRF.search(page.text)
        assert token is not None
        return token.group(1)

    return signed


def failed_job(db: Database, tenant_id: str, **fields: Any) -> dict[str, Any]:
    doc = factories.job_document(db, "system.echo", tenant_id, status="failed")
    update = {
        "error": {"type": "EchoError", "message": "asked to fail: boom"},
        "params": {"fail": True, "message": "boom"},
        "attempts": 1,
        "finishedAt": ledger.now(),
        **fields,
    }
    db["jobs"].update_one({"_id": doc["_id"]}, {"$set": update})
    return {**doc, **update}


def test_pages_need_a_session_and_sign_in_sends_back_where_asked(client: FlaskClient, admin_key: str) -> None:
    answer = client.get("/console/dead-letters?type=system.echo")
    assert answer.status_code == 302
    assert answer.headers["Location"].startswith("/console/login?next=")
    login = client.get(answer.headers["Location"])
    assert login.status_code == 200
    assert 'name="next" value="/console/dead-letters?type=system.echo"' in login.text
    signed = client.post(
        "/console/login",
        data={"operator": "ops-bob", "key": admin_key, "next": "/console/dead-letters?type=system.echo"},
    )
    assert signed.headers["Location"] == "/console/dead-letters?type=system.echo"


@pytest.mark.parametrize(
    "target", ["https://evil.example/", "//evil.example/", "/v1/jobs", "/console\\..\\x"]
)
def test_sign_in_never_sends_elsewhere(client: FlaskClient, target: str, admin_key: str) -> None:
    signed = client.post("/console/login", data={"operator": "ops", "key": admin_key, "next": target})
    assert signed.status_code == 302
    assert signed.headers["Location"] == "/console/"


def test_the_session_cookie_is_httponly_strict_scoped_and_secure_off_loopback(
    client: FlaskClient, admin_key: str
) -> None:
    local = client.post("/console/login", data={"operator": "ops", "key": admin_key})
    cookie = local.headers["Set-Cookie"]
    assert cookie.startswith(f"{console_session.COOKIE}=")
    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    assert "Path=/console" in cookie
    assert "Secure" not in cookie  # plain http on loopback (ops/run): a browser would drop it
    remote = client.post(
        "/console/login",
        data={"operator": "ops", "key": admin_key},
        base_url="http://console.example.com",
        headers={"Origin": "http://console.example.com"},
    )
    assert "Secure" in remote.headers["Set-Cookie"]


@pytest.mark.parametrize(
    ("form", "status"),
    [
        ({"operator": "ops", "key": "not-the-admin-key-at-all"}, 401),
        ({"operator": "", "key": "{admin}"}, 400),
        ({"operator": "<script>", "key": "{admin}"}, 400),
        ({"operator": "x" * 65, "key": "{admin}"}, 400),
        ({"operator": "ops", "key": "{admin}" + "x" * 300}, 401),
    ],
)
def test_a_bad_sign_in_opens_no_session(
    client: FlaskClient, form: dict[str, str], status: int, admin_key: str
) -> None:
    form = {**form, "key": form["key"].replace("{admin}", admin_key)}
    answer = client.post("/console/login", data=form)
    assert answer.status_code == status
    assert "Set-Cookie" not in answer.headers
    assert "<script>" not in answer.text
    assert client.get("/console/").status_code == 302


def test_a_tenant_key_cannot_sign_in(client: FlaskClient, db: Database, tenant_id: str) -> None:
    _doc, key = factories.api_key(db, tenant_id)
    answer = client.post("/console/login", data={"operator": "ops", "key": key})
    assert answer.status_code == 401
    assert "Set-Cookie" not in answer.headers


def test_sign_in_from_another_origin_is_refused(client: FlaskClient, admin_key: str) -> None:
    answer = client.post(
        "/console/login",
        data={"operator": "ops", "key": admin_key},
        headers={"Origin": "https://evil.example"},
    )
    assert answer.status_code == 403
    assert "Set-Cookie" not in answer.headers


def test_failed_sign_ins_are_throttled_per_address(settings: Settings, admin_key: str) -> None:
    app = app_with(settings, auth_failures_per_minute=2, auth_failure_burst=2)
    client = app.test_client()
    address = {"REMOTE_ADDR": f"10.9.{ObjectId().binary[-1]}.{ObjectId().binary[-2]}"}
    codes = [
        client.post(
            "/console/login", data={"operator": "ops", "key": "wrong-key-xxxxxxxx"}, environ_base=address
        ).status_code
        for _ in range(4)
    ]
    assert codes[:2] == [401, 401]
    assert codes[-1] == 429
    # Throttled even with the right key: the budget is checked before the key.
    right = client.post("/console/login", data={"operator": "ops", "key": admin_key}, environ_base=address)
    assert right.status_code == 429
    assert "Retry-After" in right.headers


def test_every_page_renders_with_the_security_headers(
    client: FlaskClient, db: Database, tenant_id: str, sign_in, ring: Any
) -> None:
    job = failed_job(db, tenant_id)
    integration = factories.integration(db, ring, tenant_id)
    sign_in()
    pages = [
        "/console/",
        "/console/jobs",
        "/console/dead-letters",
        "/console/stuck",
        "/console/integrations",
        "/console/queues",
        "/console/beat",
        f"/console/jobs/{job['_id']}",
        f"/console/integrations/{integration['_id']}",
        f"/console/tenants/{tenant_id}",
    ]
    for path in pages:
        answer = client.get(path)
        assert answer.status_code == 200, (path, answer.text[:500])
        assert answer.mimetype == "text/html"
        csp = answer.headers["Content-Security-Policy"]
        assert "default-src 'none'" in csp
        assert "script-src" not in csp  # no script may run
        assert "frame-ancestors 'none'" in csp
        assert answer.headers["X-Frame-Options"] == "DENY"
        assert answer.headers["Cache-Control"] == "no-store"
        assert answer.headers["X-Content-Type-Options"] == "nosniff"
        assert "<script" not in answer.text
    css = client.get("/console/static/console.css")
    assert css.status_code == 200
    assert css.mimetype == "text/css"


def test_the_job_page_tells_its_story(
    client: FlaskClient, db: Database, tenant_id: str, sign_in, ring: Any
) -> None:
    integration = factories.integration(db, ring, tenant_id)
    job = failed_job(
        db,
        tenant_id,
        subject={"integrationId": str(integration["_id"])},
        retries=[
            {"at": ledger.now(), "error": {"type": "EchoTransientError", "message": "transient 1 of 2"}}
        ],
        durationMs=1234,
        worker="celery@host-a",
    )
    sign_in()
    page = client.get(f"/console/jobs/{job['_id']}").text
    tenant_name = db["tenants"].find_one({"_id": ObjectId(tenant_id)})["name"]
    assert f'href="/console/tenants/{tenant_id}"' in page
    assert tenant_name in page
    assert f'href="/console/integrations/{integration["_id"]}"' in page
    assert "EchoError" in page
    assert "asked to fail: boom" in page
    assert "transient 1 of 2" in page
    assert "1.234 s" in page
    assert "celery@host-a" in page
    assert "Re-run this job" in page
    assert "Cancel this job" not in page


def test_unknown_or_malformed_ids_are_404_pages(client: FlaskClient, sign_in) -> None:
    sign_in()
    for path in (
        f"/console/jobs/{ObjectId()}",
        "/console/jobs/not-an-id",
        f"/console/integrations/{ObjectId()}",
        f"/console/tenants/{ObjectId()}",
        "/console/tenants/zz",
    ):
        answer = client.get(path)
        assert answer.status_code == 404, path
        assert answer.mimetype == "text/html"
        assert "Not found" in answer.text


@pytest.mark.parametrize(
    "query",
    [
        "tenant=abc",
        "type=no.such.type",
        "status=exploded",
        "from=yesterday",
        "to=2026-13-45",
        "integration=" + "f" * 25,
        "cursor=" + "A" * 40,
        "cursor=" + "A" * 600,
        "type=" + "x" * 200,
    ],
)
def test_bad_filters_are_clear_400_pages(client: FlaskClient, query: str, sign_in) -> None:
    sign_in()
    answer = client.get(f"/console/jobs?{query}")
    assert answer.status_code == 400
    assert answer.mimetype == "text/html"
    assert "Invalid" in answer.text


def test_job_lists_filter_and_page_without_gaps_or_repeats(
    client: FlaskClient, db: Database, tenant_id: str, sign_in
) -> None:
    start = ledger.now() - timedelta(hours=1)
    docs = []
    for n in range(61):
        doc = ledger.new_job("system.echo", tenant_id=tenant_id, queue="default")
        doc["status"] = "failed" if n % 3 == 0 else "succeeded"
        doc["createdAt"] = start + timedelta(seconds=n // 2)  # pairs share a createdAt
        docs.append(doc)
    db["jobs"].insert_many(docs)
    other = factories.tenant(db)
    factories.job_document(db, "system.echo", other["_id"], status="failed")
    sign_in()

    def walk(path: str) -> list[str]:
        seen, url = [], path
        while url:
            page = client.get(url)
            assert page.status_code == 200, page.text[:300]
            seen += re.findall(r'href="/console/jobs/([0-9a-f]{24})" class="mono"', page.text)
            found = re.search(r'href="([^"]+)" rel="next"', page.text)
            url = found.group(1).replace("&amp;", "&") if found else ""
        return seen

    listed = walk(f"/console/jobs?tenant={tenant_id}")
    expected = [d["_id"] for d in sorted(docs, key=lambda d: (d["createdAt"], d["_id"]), reverse=True)]
    assert listed == expected
    failed = walk(f"/console/dead-letters?tenant={tenant_id}")
    assert failed == [i for i in expected if i in {d["_id"] for d in docs if d["status"] == "failed"}]


def test_stuck_lists_only_old_open_jobs(
    client: FlaskClient, db: Database, tenant_id: str, settings: Settings, sign_in
) -> None:
    old = ledger.now() - timedelta(seconds=settings.stale_job_after + 60)
    stuck = factories.job_document(db, "system.echo", tenant_id, status="running", created_at=old)
    fresh = factories.job_document(db, "system.echo", tenant_id, status="queued")
    ended = factories.job_document(db, "system.echo", tenant_id, status="failed", created_at=old)
    sign_in()
    page = client.get(f"/console/stuck?tenant={tenant_id}").text
    assert stuck["_id"] in page
    assert fresh["_id"] not in page
    assert ended["_id"] not in page
    assert client.get("/console/stuck?status=failed").status_code == 400


def test_cancel_needs_the_csrf_token_and_is_audited(
    client: FlaskClient, db: Database, tenant_id: str, sign_in
) -> None:
    job = factories.job_document(db, "system.echo", tenant_id, status="queued")
    token = sign_in("ops-carol")
    path = f"/console/jobs/{job['_id']}/cancel"
    assert client.post(path).status_code == 403
    assert client.post(path, data={"csrf_token": "forged"}).status_code == 403
    cross = client.post(path, data={"csrf_token": token}, headers={"Origin": "https://evil.example"})
    assert cross.status_code == 403
    assert db["jobs"].find_one({"_id": job["_id"]})["status"] == "queued"
    assert db["auditLogs"].count_documents({"target.id": job["_id"]}) == 0

    done = client.post(path, data={"csrf_token": token}, headers={"Origin": "http://localhost"})
    assert done.status_code == 302
    assert done.headers["Location"].endswith("notice=cancelled")
    assert db["jobs"].find_one({"_id": job["_id"]})["status"] == "cancelled"
    audit = db["auditLogs"].find_one({"target.id": job["_id"]})
    assert audit is not None
    assert audit["actor"] == {"type": "operator", "id": "ops-carol", "via": "console"}
    assert audit["tenantId"] == ObjectId(tenant_id)
    # Twice: nothing more happens, and the page says so.
    again = client.post(path, data={"csrf_token": token})
    assert again.headers["Location"].endswith("notice=already-final")
    assert db["auditLogs"].count_documents({"target.id": job["_id"]}) == 1
    assert "The job had already ended" in client.get(again.headers["Location"]).text


def test_sign_out_ends_the_session_everywhere(client: FlaskClient, settings: Settings, sign_in) -> None:
    token = sign_in()
    cookie = client.get_cookie(console_session.COOKIE, path="/console")
    assert cookie is not None
    assert client.post("/console/logout", data={"csrf_token": token}).status_code == 302
    replay = client.application.test_client()
    replay.set_cookie(console_session.COOKIE, cookie.value, path="/console")
    assert replay.get("/console/").status_code == 302


def test_a_new_admin_key_ends_the_sessions_opened_with_the_old(
    client: FlaskClient, settings: Settings, sign_in
) -> None:
    sign_in()
    cookie = client.get_cookie(console_session.COOKIE, path="/console")
    assert cookie is not None
    rotated: Flask = app_with(settings, admin_api_key=SecretStr("a-brand-new-admin-key-0123456789"))
    other = rotated.test_client()
    other.set_cookie(console_session.COOKIE, cookie.value, path="/console")
    assert other.get("/console/").status_code == 302


def test_integrations_page_shows_who_needs_reauthorization_and_never_tokens(
    client: FlaskClient, db: Database, tenant_id: str, sign_in, ring: Any
) -> None:
    broken = factories.integration(db, ring, tenant_id)
    db["cloudIntegrations"].update_one(
        {"_id": broken["_id"]},
        {
            "$set": {
                "status": "error",
                "mwapTasks.authFailedAt": ledger.now(),
                "mwapTasks.statusReason": "refresh token revoked (invalid_grant)",
            }
        },
    )
    sign_in()
    page = client.get(f"/console/integrations?tenant={tenant_id}&status=error").text
    assert str(broken["_id"]) in page
    assert "needs re-authorization" in page
    assert "refresh token revoked" in page
    stored = db["cloudIntegrations"].find_one({"_id": broken["_id"]})
    for secret in (stored["authData"]["accessToken"], stored["authData"]["refreshToken"]):
        assert secret not in page
    assert (
        client.get(f"/console/integrations?tenant={tenant_id}&status=active").text.count(str(broken["_id"]))
        == 0
    )


def _served_by_an_index(find: dict[str, Any], sort: list[str], declared: list[indexes.Index]) -> bool:
    """Some jobs index starts with the query's equality fields and then serves its sort (or its
    range field), MongoDB's rule for an index to answer a sorted page without a blocking sort."""
    equality = {k for k, v in find.items() if not isinstance(v, dict) or "$in" in v}
    for index in declared:
        keys = [k for k, _ in index.keys]
        head = keys[: len(equality)]
        if set(head) == equality and keys[len(equality) : len(equality) + len(sort)] == sort:
            return True
    return False


@pytest.mark.parametrize(
    "job_filter",
    [
        JobFilter(),
        JobFilter(tenant_id=str(ObjectId())),
        JobFilter(statuses=("failed",)),
        JobFilter(statuses=tuple(ledger.OPEN)),
        JobFilter(type="system.echo"),
        JobFilter(tenant_id=str(ObjectId()), created_from=ledger.now()),
    ],
)
def test_every_job_list_is_a_sorted_index_walk(job_filter: JobFilter, settings: Settings) -> None:
    jobs = [i for i in indexes.indexes(settings) if i.collection == "jobs"]
    assert _served_by_an_index(job_filter.query(), ["createdAt", "_id"], jobs), job_filter
