"""Metric labels a client can reach: every label value comes from a closed set.

gunicorn hands the app any RFC 9110 token as a method, and the API counts every request, before
authentication, by route, method and status. Were the method used as sent, a loop of made-up
methods with no key would mint one series per method in every gunicorn worker's file and in every
scrape, without limit. The API here runs under real gunicorn with a metrics directory of its own.
"""

import http.client
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.parser import text_string_to_metric_families

from mwap import jobtypes, metrics
from mwap.metrics import reset_multiprocess_dir
from mwap.settings import Settings
from ops import processes

HOST = "127.0.0.1"
REQUESTS = "mwap_http_requests_total"
PATHS = ("/v1/jobs", "/health", "/no-such-route")  # a guarded route, an open one, no route at all
MADE_UP = [f"HOSTILE{n:04d}" for n in range(1000)]
# route x method "other" x the few statuses those routes answer (401, 404, 405, 429...).
SERIES_BOUND = 12


@pytest.fixture(scope="module")
def api_port(stack_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """gunicorn serving the API, counting into a metrics directory no other process writes."""
    run = tmp_path_factory.mktemp("hostile-labels")
    env = {**stack_env, metrics.MULTIPROC_ENV: str(reset_multiprocess_dir(Path(run) / "metrics"))}
    port = processes.free_port()
    child = processes.start_api(env=env, log_dir=run, port=port)
    try:
        yield port
    finally:
        child.stop()


def send(port: int, method: str, path: str) -> tuple[int, str]:
    """One raw request with ``method`` as sent (http.client does not check the token)."""
    connection = http.client.HTTPConnection(HOST, port, timeout=15)
    try:
        connection.request(method, path, headers={"Connection": "close"})
        response = connection.getresponse()
        response.read()
        return response.status, response.getheader("Content-Type", "")
    finally:
        connection.close()


def scrape(port: int) -> tuple[str, list[dict[str, str]], list[float]]:
    connection = http.client.HTTPConnection(HOST, port, timeout=15)
    try:
        connection.request("GET", "/metrics")
        response = connection.getresponse()
        text = response.read().decode()
        assert response.status == 200
    finally:
        connection.close()
    samples = [
        sample
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == REQUESTS
    ]
    return text, [sample.labels for sample in samples], [sample.value for sample in samples]


def other_count(labels: list[dict[str, str]], values: list[float]) -> float:
    return sum(value for label, value in zip(labels, values, strict=True) if label["method"] == metrics.OTHER)


def test_made_up_methods_add_a_constant_number_of_series(api_port: int) -> None:
    # In spirit: the counter itself keeps whatever label value it is given, one series each.
    scratch = Counter(
        "scratch_http_requests", "", ["route", "method", "status"], registry=CollectorRegistry()
    )
    for method in MADE_UP:
        scratch.labels("/v1/jobs", method, "405").inc()
    assert len(next(iter(scratch.collect())).samples) >= len(MADE_UP)  # _total (and _created) each

    assert send(api_port, "GET", "/health")[0] == 200
    _, labels_before, values_before = scrape(api_port)

    answered = 0
    for n, method in enumerate(MADE_UP):
        status, content_type = send(api_port, method, PATHS[n % len(PATHS)])
        # gunicorn passed each method on and the app answered it (counted on the way out).
        assert 400 <= status < 500, (method, status)
        answered += content_type.startswith("application/problem+json")
    assert answered == len(MADE_UP)

    text_after, labels_after, values_after = scrape(api_port)
    assert len(labels_after) - len(labels_before) <= SERIES_BOUND
    # Every made-up request is counted, all under the one "other" label...
    assert other_count(labels_after, values_after) - other_count(labels_before, values_before) >= len(MADE_UP)
    # ...and no made-up method reached a label (nor anywhere else in the scrape).
    assert all(label["method"] in metrics.HTTP_METHODS | {metrics.OTHER} for label in labels_after)
    assert not any(method in text_after for method in MADE_UP)
    assert {label["route"] for label in labels_after} <= {"<unmatched>", *_url_rules()}


def _url_rules() -> set[str]:
    from api_thin.routes import ENDPOINTS  # noqa: PLC0415 - the table the app registers

    return {endpoint.rule for endpoint in ENDPOINTS}


def test_every_label_of_every_family_comes_from_a_closed_set() -> None:
    """The same folding for what reaches worker, provider and scheduler labels: a task name sent
    through Flower, a provider document's slug, a Celery state, an odd status."""
    assert metrics.http_method_label("GET") == "GET"
    assert metrics.http_method_label("get") == metrics.OTHER  # not case-folded into a real method
    assert metrics.http_method_label("PROPFIND") == metrics.OTHER
    assert metrics.http_status_label(404) == "404"
    assert metrics.http_status_label(299) == "2xx"
    assert metrics.http_status_label(799) == metrics.OTHER
    for name in jobtypes.job_types():
        assert metrics.task_label(name) == name
        assert metrics.task_label(f"dispatch.{name}") == f"dispatch.{name}"
    assert metrics.task_label("system.reconcile") == "system.reconcile"
    assert metrics.task_label("celery.chord_unlock") == metrics.OTHER
    assert metrics.provider_label("dropbox") == "dropbox"
    assert metrics.provider_label("evil-drive") == metrics.OTHER

    before = _series()
    for n in range(200):
        metrics.job_started(f"made.up.task{n}", queue_wait=0.1)
        metrics.job_outcome(f"made.up.task{n}", "failed")
        metrics.job_finished(f"made.up.task{n}", f"STATE{n}".lower(), 0.1)
        metrics.provider_call(f"provider-{n}", f"outcome-{n}")
        metrics.token_refresh(f"provider-{n}", "ok")
        metrics.breaker(f"provider-{n}", is_open=False)
        metrics.scheduler_dispatch(f"made.up.task{n}", due=0)
        metrics.http_request("<unmatched>", f"M{n:03d}", 600 + n % 400, 0.01)
    grown = {name: len(series - before.get(name, set())) for name, series in _series().items()}
    # 200 distinct values per call, at most a handful of new series per family.
    assert max(grown.values()) <= SERIES_BOUND, grown


def _series() -> dict[str, set[frozenset[tuple[str, str]]]]:
    """This process's label sets per sample name (a histogram's buckets counted once)."""
    from prometheus_client import REGISTRY  # noqa: PLC0415 - this process's in-memory metrics

    found: dict[str, set[frozenset[tuple[str, str]]]] = {}
    for family in REGISTRY.collect():
        if family.name.startswith("mwap_"):
            for sample in family.samples:
                labels = frozenset((k, v) for k, v in sample.labels.items() if k != "le")
                found.setdefault(sample.name, set()).add(labels)
    return found


def test_metrics_need_the_token_when_one_is_set(settings) -> None:
    """Without a token anyone reaching the port reads the platform's map; with one, only its holder."""
    from api_thin import create_app  # noqa: PLC0415

    token = "metrics-" + "k3Yv9QpL2xZ8wR4t"
    app = create_app(Settings(**{**settings.model_dump(), "metrics_token": token}))
    client = app.test_client()
    for headers in ({}, {"Authorization": "Bearer wrong-token-0000000"}, {"Authorization": f"Basic {token}"}):
        response = client.get("/metrics", headers=headers)
        assert response.status_code == 401, headers
        assert response.mimetype == "application/problem+json"
        assert b"mwap_" not in response.data
    response = client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    assert b"mwap_http_requests_total" in response.data
