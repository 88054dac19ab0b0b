"""7. Console pages: the operators' console (``/console``) under gunicorn over a ledger of 100,000
jobs (5,000 in a quick run), each page loaded by a signed-in client, one request at a time: the
time from request to the last byte of the HTML, per page and round.

The ledger is seed-shaped: tenants with one integration per provider, jobs of every type spread
over seven days, most succeeded, some failed (with errors and retries), a few open and old
(stuck), as a production ledger within its retention holds. Written with ``insert_many`` on the
fast stand-in (``ops.bench.fast_standin``), as scenario 4 does, since the stock one would take
hours to seed it; with MWAP_MONGO_URL set, on that server.
"""

import contextlib
import re
import secrets
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import requests
from pymongo import MongoClient

from mwap import jobtypes, ledger
from mwap.connections import key_ring
from mwap.indexes import ensure_indexes
from mwap.jobtypes import Scope
from mwap.ledger import now
from ops import processes
from ops.bench import documents
from ops.bench.config import Run
from ops.bench.results import Metric, Scenario
from ops.bench.sides import PLATFORM
from ops.fake_providers.documents import provider_documents
from ops.processes import Child

UNREACHABLE = "http://127.0.0.1:9"  # the providers' URLs: nothing here calls a provider
SPREAD = timedelta(days=7)
_NEXT = re.compile(r'href="([^"]+)" rel="next"')
_JOB = re.compile(r'href="/console/jobs/([0-9a-f]{24})" class="mono"')


def _status(n: int) -> str:
    """90% succeeded, 6% failed, 2% cancelled, 1% retrying, 1% queued (every 100th: old, stuck)."""
    slot = n % 100
    if slot < 90:
        return ledger.Status.SUCCEEDED.value
    if slot < 96:
        return ledger.Status.FAILED.value
    if slot < 98:
        return ledger.Status.CANCELLED.value
    return ledger.Status.RETRYING.value if slot == 98 else ledger.Status.QUEUED.value


def _jobs(size: int, tenants: list[dict[str, Any]], integrations: list[dict[str, Any]]) -> Iterator[dict]:
    moment = now()
    types = sorted(jobtypes.job_types().values(), key=lambda t: t.name)
    for n in range(size):
        job_type = types[n % len(types)]
        integration = integrations[n % len(integrations)]
        tenant_id = integration["tenantId"]
        subject: dict[str, str] = {}
        if job_type.scope in (Scope.INTEGRATION, Scope.PROJECT):
            subject = {"integrationId": str(integration["_id"])}
        elif job_type.scope is Scope.TENANT:
            subject = {"tenantId": str(tenant_id)}
        doc = ledger.new_job(
            job_type.name,
            tenant_id=None if job_type.scope is Scope.SYSTEM else tenant_id,
            subject=subject,
            queue=job_type.queue.value,
        )
        created = moment - SPREAD * (1 - n / size)
        status = _status(n)
        doc.update(status=status, createdAt=created, attempts=1)
        if status in (ledger.Status.SUCCEEDED.value, ledger.Status.FAILED.value):
            doc.update(startedAt=created, finishedAt=created + timedelta(seconds=1), durationMs=1000)
        if status == ledger.Status.SUCCEEDED.value:
            doc["result"] = {"written": n % 7}
        elif status == ledger.Status.FAILED.value:
            error = {"type": "ProviderRequestError", "message": f"listing refused: 400 (job {n})"}
            doc.update(error=error, attempts=3, retries=[{"at": created, "error": error}] * 2)
        yield doc


def seed(run: Run, url: str, name: str) -> dict[str, Any]:
    """Tenants, integrations and ``run.config.console_jobs`` jobs in database ``name``; what the
    pages are pointed at, and the seconds it took."""
    config, settings = run.config, run.harness.settings.model_copy(update={"mongo_db": name})
    started = time.perf_counter()
    client: MongoClient[dict[str, Any]] = MongoClient(url, tz_aware=True)
    try:
        db = client[name]
        ensure_indexes(db, settings)
        ring = key_ring(run.harness.settings)
        providers = [
            documents.converge_provider(db, ring, {**document, "clientSecret": "bench-secret"})
            for document in provider_documents(UNREACHABLE)
        ]
        tenants = [documents.tenant() for _ in range(config.console_tenants)]
        documents.insert_batched(db, "tenants", tenants, config.dispatch_insert_batch)
        integrations = [
            documents.integration(ring, tenant["_id"], provider, expires_in=timedelta(days=1))
            for tenant in tenants
            for provider in providers
        ]
        # Every 20th integration needs re-authorization, as the platform marks it.
        for n, integration in enumerate(integrations):
            if n % 20 == 0:
                integration.update(
                    status="error",
                    mwapTasks={
                        "authFailedAt": now(),
                        "statusReason": "refresh token revoked (invalid_grant)",
                    },
                )
        documents.insert_batched(db, "cloudIntegrations", integrations, config.dispatch_insert_batch)
        jobs = documents.insert_batched(
            db, "jobs", _jobs(config.console_jobs, tenants, integrations), config.dispatch_insert_batch
        )
        sample = db["jobs"].find_one({"status": ledger.Status.FAILED.value}, {"_id": 1})
    finally:
        client.close()
    return {
        "jobs": jobs,
        "tenant": str(tenants[len(tenants) // 2]["_id"]),
        "integration": str(integrations[len(integrations) // 2]["_id"]),
        "job": sample["_id"] if sample else "",
        "seconds": time.perf_counter() - started,
    }


def pages(seeded: dict[str, Any], second_page: str) -> dict[str, tuple[str, str]]:
    """Page id -> (label, path) of what an operator opens, from the overview to a job."""
    tenant, integration, job = seeded["tenant"], seeded["integration"], seeded["job"]
    return {
        "overview": ("overview", "/console/"),
        "jobs": ("jobs, newest first", "/console/jobs"),
        "jobs_next": ("jobs, second page", second_page),
        "jobs_tenant": ("one tenant's jobs", f"/console/jobs?tenant={tenant}"),
        "jobs_type_status": (
            "jobs of a type and status",
            "/console/jobs?type=integration.sync_files&status=succeeded",
        ),
        "dead_letters": ("dead letters", "/console/dead-letters"),
        "dead_letters_tenant": ("one tenant's dead letters", f"/console/dead-letters?tenant={tenant}"),
        "stuck": ("stuck jobs", "/console/stuck"),
        "job": ("a job", f"/console/jobs/{job}"),
        "integrations": ("integrations", "/console/integrations"),
        "integrations_error": ("integrations needing action", "/console/integrations?status=error"),
        "integration": ("an integration", f"/console/integrations/{integration}"),
        "tenant": ("a tenant", f"/console/tenants/{tenant}"),
        "queues": ("queues", "/console/queues"),
        "beat": ("beat", "/console/beat"),
    }


def _get(session: requests.Session, url: str) -> tuple[float, str]:
    started = time.perf_counter()
    answer = session.get(url, timeout=120)
    elapsed = (time.perf_counter() - started) * 1000
    if answer.status_code != 200:
        raise RuntimeError(f"GET {url}: {answer.status_code} {answer.text[:200]}")
    return elapsed, answer.text


def run(run: Run) -> Scenario:
    h, config = run.harness, run.config
    scenario = Scenario("console", "7. Console pages")
    standin: Child | None = None
    if run.external_mongo or config.standin == "fast":
        url = h.env["MWAP_MONGO_URL"]
    else:
        env = {k: v for k, v in h.env.items() if not k.startswith("MWAP_")}
        standin, url = h.start_fast_standin("mongo-console", env)
    name = f"mwap_bench_console_{secrets.token_hex(4)}"
    api: Child | None = None
    timings: dict[str, list[float]] = {}
    try:
        seeded = seed(run, url, name)
        run.log(f"console: {seeded['jobs']:,} jobs seeded", seconds=f"{seeded['seconds']:.0f}")
        port = processes.free_port()
        api = h.add(
            processes.start_api(
                env={**h.env, "MWAP_MONGO_URL": url, "MWAP_MONGO_DB": name}, log_dir=h.log_dir, port=port
            )
        )
        base = f"http://127.0.0.1:{port}"
        session = requests.Session()
        processes.wait_for(
            lambda: session.get(f"{base}/health", timeout=5).status_code == 200, timeout=60, what="API"
        )
        signed = session.post(
            f"{base}/console/login",
            data={"operator": "bench", "key": h.settings.admin_api_key.get_secret_value()},
            timeout=30,
        )
        if signed.status_code != 200 or not signed.url.endswith("/console/"):
            raise RuntimeError(f"console sign-in: {signed.status_code} at {signed.url}")
        _, first = _get(session, f"{base}/console/jobs")
        found = _NEXT.search(first)
        if found is None or len(_JOB.findall(first)) == 0:
            raise RuntimeError("the jobs page lists no jobs or has no next page")
        listed = pages(seeded, found.group(1).replace("&amp;", "&"))
        for path in {path for _, path in listed.values()}:  # warm-up: imports, connections, templates
            _get(session, base + path)
        for n in range(config.rounds):
            for page, (_label, path) in listed.items():
                elapsed, _ = _get(session, base + path)
                timings.setdefault(page, []).append(elapsed)
            slowest = max(listed, key=lambda p: timings[p][-1])
            run.log(f"console round {n + 1}", slowest=f"{slowest} {timings[slowest][-1]:.0f} ms")
    finally:
        if api is not None:
            h.stop(api)
        cleanup: MongoClient[dict[str, Any]] = MongoClient(url)
        with contextlib.suppress(Exception), cleanup:
            cleanup.drop_database(name)
        if standin is not None:
            h.stop(standin)
    _report(scenario, seeded["jobs"], listed, timings, config.rounds)
    scenario.extra = {
        "seedingSeconds": seeded["seconds"],
        "mongo": "MWAP_MONGO_URL" if run.external_mongo else "the fast stand-in",
    }
    scenario.notes += [
        f"{seeded['jobs']:,} seed-shaped ledger documents over {SPREAD.days} days, "
        f"{config.console_tenants} tenants with one integration per provider (every 20th needing "
        "re-authorization); 90% succeeded, 6% failed (with two retries each), 2% cancelled, 1% "
        "retrying, 1% queued",
        "one signed-in client, one request at a time, after one warm-up load of each page; the time "
        "to the last byte of the HTML (gunicorn, 2 workers x 4 threads)",
    ]
    if not run.external_mongo:
        scenario.notes.append(
            "on the fast stand-in, which answers an equality on a compound index's first field "
            "(and a range on its second) from maps it keeps beside the index, but matches every "
            "candidate in Python and scans the whole ledger for the unfiltered newest-first list, "
            "where MongoDB walks the console's indexes (created_id, tenant_created, "
            "status_created_id, type_created_id): its times are the stand-in's, an upper bound"
        )
    return scenario


def _report(
    scenario: Scenario,
    size: int,
    listed: dict[str, tuple[str, str]],
    timings: dict[str, list[float]],
    rounds: int,
) -> None:
    label = f"{size:,} jobs"
    scenario.add(
        Metric(
            f"{size}.slowest.ms",
            f"{label}: the slowest page of a round",
            "ms",
            "lower",
            {PLATFORM: [max(timings[page][n] for page in listed) for n in range(rounds)]},
            reference=None,
            how="per round, the largest of the pages' load times below",
        )
    )
    for page, (name, _path) in listed.items():
        scenario.add(
            Metric(
                f"{size}.{page}.ms",
                f"{label}: {name}",
                "ms",
                "lower",
                {PLATFORM: timings[page]},
                reference=None,
                how="GET by a signed-in client, request to last byte",
            )
        )
