"""ops/run as a user runs it: the whole stack comes up, serves a job, and SIGTERM leaves nothing."""

import ast
import dbm
import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
import requests

from ops.processes import free_port, wait_for

ROOT = Path(__file__).resolve().parents[2]


def descendants(pid: int) -> set[int]:
    """Every live process whose parent chain leads to ``pid``."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = set(), {pid}
    while frontier:
        children = {child for child, parent in parents.items() if parent in frontier}
        frontier = children - found
        found |= children
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture
def ops_run(tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MWAP_")}
    env.update(MWAP_DATA_DIR=str(tmp_path), MWAP_API_PORT=str(free_port()), MWAP_FLOWER_PORT=str(free_port()))
    log = (tmp_path / "ops-run.out").open("wb")
    process = subprocess.Popen(
        [str(ROOT / "ops" / "run")], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        stack_file = tmp_path / "stack.json"
        wait_for(
            lambda: process.poll() is None and stack_file.exists(),
            timeout=180,
            what=f"ops/run ({(tmp_path / 'ops-run.out').read_text(errors='replace')[-2000:]})",
        )
        yield process, json.loads(stack_file.read_text()), tmp_path
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        log.close()


def test_ops_run_serves_jobs_and_stops_cleanly(ops_run) -> None:
    process, stack, data_dir = ops_run
    api, flower = stack["api"], stack["flower"]
    creds = json.loads((data_dir / "credentials.json").read_text())
    assert (data_dir / "credentials.json").stat().st_mode & 0o777 == 0o600
    assert set(stack) >= {"api", "console", "flower", "redisUrl", "mongoUrl", "providers", "credentials"}

    assert wait_for(
        lambda: requests.get(f"{api}/ready", timeout=5).status_code == 200, timeout=30, what="ready"
    )

    # Flower answers, and only with its credentials. It started before every worker (the stack
    # lists its processes in start order), so it hears every job's task-received event.
    assert requests.get(f"{flower}/api/workers", timeout=5).status_code == 401
    auth = (creds["flower"]["user"], creds["flower"]["password"])
    assert requests.get(f"{flower}/api/workers", auth=auth, timeout=10).status_code == 200
    order = list(stack["pids"])
    assert order.index("flower") < min(order.index(n) for n in ("worker", "worker-sync", "beat", "api"))

    # The console signs an operator in with the stack's admin key; its beat page names the leader.
    console = requests.Session()
    signed = console.post(
        f"{stack['console']}login", data={"operator": "ops-run", "key": creds["adminApiKey"]}, timeout=10
    )
    assert signed.status_code == 200
    assert signed.url == stack["console"]
    assert wait_for(
        lambda: "The leader is" in console.get(f"{stack['console']}beat", timeout=10).text,
        timeout=30,
        what="the beat leader on the console",
    )

    headers = {"Authorization": f"Bearer {creds['adminApiKey']}"}
    posted = requests.post(
        f"{api}/v1/jobs",
        json={"type": "system.echo", "params": {"message": "smoke"}},
        headers=headers,
        timeout=10,
    )
    assert posted.status_code == 202, posted.text
    job_url = api + posted.headers["Location"]
    done = wait_for(
        lambda: (
            (job := requests.get(job_url, headers=headers, timeout=5).json())["status"] == "succeeded" and job
        ),
        timeout=60,
        what="smoke job",
    )
    assert done["result"]["message"] == "smoke"

    # Flower shows the job under its job type, with the id as its only argument and whom it is
    # for as its keyword arguments (a system job: no tenant, no subject).
    def flower_task() -> dict | None:
        return requests.get(f"{flower}/api/task/info/{done['id']}", auth=auth, timeout=5).json()

    task = wait_for(flower_task, timeout=30, what="task in Flower")
    assert task["name"] == "system.echo"
    assert task["args"] == f"['{done['id']}']"
    assert ast.literal_eval(task["kwargs"]) == {"type": "system.echo"}

    # The demo: providers are the local fakes, and beat dispatches the demo integrations' jobs.
    assert stack["providers"]["google-drive"].startswith(stack["providers"]["url"])
    # Demo ids are ObjectIds (hex); the first demo tenant is Acme, whose Google Drive integration
    # feeds its projects Alpha (/Projects/Alpha) and Photos (/Photos).
    acme = stack["demo"]["tenants"][0]
    assert all(len(i) == 24 for i in [*stack["demo"]["tenants"], *stack["demo"]["integrations"]])
    tenant_headers = {"Authorization": f"Bearer {creds['tenantApiKeys'][acme]}"}
    listed = requests.get(f"{api}/v1/integrations", headers=tenant_headers, timeout=5)
    assert listed.status_code == 200, listed.text
    [google] = [i for i in listed.json()["items"] if i["providerSlug"] == "google-drive"]
    assert google["tenantId"] == acme
    assert google["id"] in stack["demo"]["integrations"]

    def demo_synced() -> list[dict] | None:
        files = requests.get(f"{api}/v1/integrations/{google['id']}/files", headers=tenant_headers, timeout=5)
        return files.status_code == 200 and files.json()["items"]

    items = wait_for(demo_synced, timeout=90, what="demo integration synced by the schedule")
    # Only files inside a linked project's folder are stored.
    assert all(f["path"].startswith(("/Projects/Alpha", "/Photos")) for f in items), [
        f["path"] for f in items
    ]

    # Beat dispatched the demo's jobs from the stack's first seconds: Flower lists every task it
    # saw by name, and finds the integration's sync by whom it is for.
    def flower_tasks(**params: str) -> dict[str, dict]:
        listed = requests.get(f"{flower}/api/tasks", params=params, auth=auth, timeout=10)
        assert listed.status_code == 200, listed.text
        return listed.json()

    everything = flower_tasks()
    assert everything
    assert [t for t in everything.values() if not t.get("name")] == []
    syncs = flower_tasks(search=f"kwargs:integrationId={google['id']}", taskname="integration.sync_files")
    assert syncs, "the demo integration's sync is not found by its integrationId"
    for sync in syncs.values():
        assert ast.literal_eval(sync["kwargs"]) == {
            "type": "integration.sync_files",
            "tenantId": acme,
            "integrationId": google["id"],
        }
    assert set(syncs) <= set(flower_tasks(search=f"kwargs:tenantId={acme}"))
    # No secret of the stack in anything Flower shows.
    shown = json.dumps(everything)
    secrets = [creds["adminApiKey"], creds["flower"]["password"], *creds["tenantApiKeys"].values()]
    assert [s[:6] for s in secrets if s in shown] == []

    tree = descendants(process.pid)
    assert len(tree) >= 6  # redis, mongo, two workers, beat, api, flower and their own children
    process.send_signal(signal.SIGTERM)
    assert process.wait(60) == 0
    wait_for(lambda: not any(alive(pid) for pid in tree), timeout=20, what="children gone")
    # Flower wrote its history when it stopped; the next ops/run reads it back.
    with dbm.open(str(data_dir / "flower.db"), "r") as saved:  # Flower's shelve: its keys, nothing unpickled
        assert b"events" in saved
