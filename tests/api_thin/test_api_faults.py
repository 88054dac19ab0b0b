"""The API under gunicorn when Redis or MongoDB hangs, and hostile input over real HTTP."""

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from api_support import own_api_stack

from ops.processes import Child, wait_for

pytestmark = pytest.mark.faults


@pytest.fixture(scope="module")
def own_stack(stack_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """Redis, MongoDB and the API of its own, so that stopping them disturbs nothing else."""
    with own_api_stack(
        stack_env, tmp_path_factory.mktemp("api-faults"), MWAP_REDIS_TIMEOUT="1", MWAP_MONGO_TIMEOUT_MS="1000"
    ) as stack:
        yield stack


def post_echo(url: str, headers: dict[str, str]) -> requests.Response:
    # A request that hangs fails this test through its own timeout: that is the bound asserted.
    return requests.post(f"{url}/v1/jobs", json={"type": "system.echo"}, headers=headers, timeout=15)


@pytest.mark.parametrize("server", ["redis", "mongo"])
def test_a_hung_dependency_gives_503_with_retry_after_not_a_hanging_request(
    own_stack: dict, admin_headers: dict[str, str], server: str
) -> None:
    url = own_stack["url"]
    assert post_echo(url, admin_headers).status_code == 202
    child: Child = own_stack[server]
    child.signal(signal.SIGSTOP)
    try:
        refused = post_echo(url, admin_headers)
        assert refused.status_code == 503
        assert refused.headers["Content-Type"].startswith("application/problem+json")
        assert int(refused.headers["Retry-After"]) > 0
        ready = requests.get(f"{url}/ready", timeout=15)
        assert ready.status_code == 503
        assert ready.json()["checks"][server].startswith("unavailable")
    finally:
        child.signal(signal.SIGCONT)
    wait_for(
        lambda: requests.get(f"{url}/ready", timeout=15).status_code == 200, timeout=30, what="ready again"
    )
    assert post_echo(url, admin_headers).status_code == 202


HOSTILE = [
    ("invalid UTF-8", b'{"type": "system.\xff\xfe"}', "application/json"),
    ("deep JSON", b"[" * 100_000 + b"]" * 100_000, "application/json"),
    ("operator where a string goes", b'{"type": "system.echo", "tenantId": {"$gt": ""}}', "application/json"),
    (
        "operator in params",
        b'{"type": "system.echo", "params": {"message": {"$where": "1"}}}',
        "application/json",
    ),
    ("wrong content type", b"type=system.echo", "application/x-www-form-urlencoded"),
    (
        "oversized",
        b'{"type": "system.echo", "params": {"message": "' + b"x" * 3_000_000 + b'"}}',
        "application/json",
    ),
]


@pytest.mark.parametrize(("name", "body", "content_type"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_input_over_http_is_4xx(
    own_stack: dict, admin_headers: dict[str, str], name: str, body: bytes, content_type: str
) -> None:
    response = requests.post(
        f"{own_stack['url']}/v1/jobs",
        data=body,
        headers={**admin_headers, "Content-Type": content_type},
        timeout=15,
    )
    assert 400 <= response.status_code < 500, (name, response.status_code, response.text[:200])
    assert response.headers["Content-Type"].startswith("application/problem+json")


@pytest.mark.parametrize(
    "path",
    [
        "/v1/jobs/..%2F..%2Fetc%2Fpasswd",
        "/v1/jobs/%24gt",
        "/v1/integrations/%7B%22%24ne%22%3A1%7D/files",
        "/v1/jobs/" + "a" * 5000,
    ],
)
def test_traversal_and_operators_in_paths_are_404(
    own_stack: dict, admin_headers: dict[str, str], path: str
) -> None:
    response = requests.get(own_stack["url"] + path, headers=admin_headers, timeout=15)
    assert response.status_code in (404, 414), response.text[:200]


def test_no_traceback_in_the_api_log(own_stack: dict) -> None:
    log = Path(own_stack["logs"]) / "api.log"
    assert "Traceback" not in log.read_text(errors="replace")
