"""The embedded stack behind ``ops/run``: every platform process on one machine, stopped as one.

Redis and the MongoDB stand-in start only when MWAP_REDIS_URL / MWAP_MONGO_URL are unset.
Settings given in the environment win over generated ones. URLs go to ``.data/stack.json``,
credentials to ``.data/credentials.json`` (mode 0600), logs to ``.data/logs/``.
"""

import base64
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from mwap.metrics import reset_multiprocess_dir
from ops import processes
from ops.fake_providers.documents import provider_documents
from ops.processes import Child

ROOT = Path(__file__).resolve().parent.parent


def _data_dir() -> Path:
    return Path(os.environ.get("MWAP_DATA_DIR", ROOT / ".data")).resolve()


def _write_private(path: Path, content: dict[str, Any]) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(content, handle, indent=2)
    path.chmod(0o600)


def load_credentials(data_dir: Path) -> dict[str, Any]:
    """The demo's secrets: generated once and kept, so encrypted data stays readable across runs."""
    path = data_dir / "credentials.json"
    stored = json.loads(path.read_text()) if path.exists() else {}
    creds = {
        "adminApiKey": stored.get("adminApiKey") or "mwap_admin_" + secrets.token_urlsafe(32),
        "encryptionKeys": stored.get("encryptionKeys")
        or "k1:" + base64.b64encode(secrets.token_bytes(32)).decode(),
        "flower": stored.get("flower") or {"user": "operator", "password": secrets.token_urlsafe(18)},
        "tenantApiKeys": stored.get("tenantApiKeys") or {},
    }
    _write_private(path, creds)
    return creds


class Stack:
    """Starts the processes in dependency order and stops them in reverse."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.log_dir = data_dir / "logs"
        self.children: list[Child] = []
        self.stopping = threading.Event()

    def add(self, child: Child) -> Child:
        self.children.append(child)
        return child

    def stop(self) -> None:
        self.stopping.set()
        for child in reversed(self.children):
            child.stop()

    def start(self) -> dict[str, Any]:
        creds = load_credentials(self.data_dir)
        env = dict(os.environ)
        env.setdefault("MWAP_ADMIN_API_KEY", creds["adminApiKey"])
        env.setdefault("MWAP_ENCRYPTION_KEYS", creds["encryptionKeys"])
        flower = creds["flower"]
        env.setdefault("MWAP_FLOWER_BASIC_AUTH", f"{flower['user']}:{flower['password']}")
        env.setdefault("PYTHONUNBUFFERED", "1")
        # Multiprocess metrics shared by the API, workers and beat; stale files would be summed in.
        reset_multiprocess_dir(
            Path(env.setdefault("PROMETHEUS_MULTIPROC_DIR", str(self.data_dir / "metrics")))
        )
        api_port = int(env.setdefault("MWAP_API_PORT", "8000"))
        flower_port = int(env.setdefault("MWAP_FLOWER_PORT", "5555"))

        if "MWAP_REDIS_URL" not in env:
            port = processes.free_port()
            self.add(
                processes.start_redis(
                    port, data_dir=self.data_dir / "redis", log_dir=self.log_dir, env=env, persist=True
                )
            )
            env["MWAP_REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
        if "MWAP_MONGO_URL" not in env:
            port = processes.free_port()
            self.add(
                processes.start_mongo(
                    port, sqlite_path=self.data_dir / "mongo.sqlite3", log_dir=self.log_dir, env=env
                )
            )
            env["MWAP_MONGO_URL"] = processes.mongo_url(port)

        providers_port = processes.free_port()
        self.add(
            processes.start_fake_providers(
                providers_port, env=env, log_dir=self.log_dir, extra=["--seed-demo"]
            )
        )
        providers_url = f"http://127.0.0.1:{providers_port}"
        demo = self._seed(env, providers_url, creds)

        self.add(
            processes.start_worker(
                env=env, log_dir=self.log_dir, name="worker", queues="default,maintenance", concurrency=2
            )
        )
        self.add(
            processes.start_worker(
                env=env,
                log_dir=self.log_dir,
                name="worker-sync",
                queues="sync",
                pool="threads",
                concurrency=8,
            )
        )
        self.add(
            processes.start_beat(env=env, log_dir=self.log_dir, schedule_path=self.data_dir / "beat-schedule")
        )
        self.add(processes.start_api(env=env, log_dir=self.log_dir, port=api_port))
        self.add(
            processes.start_flower(
                env=env, log_dir=self.log_dir, port=flower_port, basic_auth=env["MWAP_FLOWER_BASIC_AUTH"]
            )
        )
        stack = {
            "api": f"http://127.0.0.1:{api_port}",
            "flower": f"http://127.0.0.1:{flower_port}",
            "redisUrl": env["MWAP_REDIS_URL"],
            "mongoUrl": env["MWAP_MONGO_URL"],
            "providers": {
                "url": providers_url,
                **{doc["slug"]: doc["metadata"]["apiBaseUrl"] for doc in provider_documents(providers_url)},
            },
            "demo": {"tenants": demo["tenants"], "integrations": demo["integrations"]},
            "credentials": str(self.data_dir / "credentials.json"),
            "logs": str(self.log_dir),
            "pids": {child.name: child.pid for child in self.children},
        }
        (self.data_dir / "stack.json").write_text(json.dumps(stack, indent=2))
        return stack

    def _seed(self, env: dict[str, str], providers_url: str, creds: dict[str, Any]) -> dict[str, Any]:
        """``mwap db init`` and ``mwap demo seed``, as an operator would run them."""
        mwap = [processes.PYTHON, "-m", "mwap.cli", "--json"]
        for step in (
            ["db", "init"],
            [
                "demo",
                "seed",
                "--providers-url",
                providers_url,
                "--keep-keys",
                json.dumps(creds["tenantApiKeys"]),
            ],
        ):
            result = subprocess.run(mwap + step, env=env, capture_output=True, text=True, check=False)
            if result.returncode != 0:
                raise processes.StartupError(f"mwap {' '.join(step[:2])} failed:\n{result.stderr[-2000:]}")
        demo = json.loads(result.stdout)
        creds["tenantApiKeys"] = demo["tenantApiKeys"]
        _write_private(self.data_dir / "credentials.json", creds)
        return demo

    def watch(self) -> str | None:
        """Block until asked to stop or a child dies; returns the name of a child that died."""
        while not self.stopping.wait(0.5):
            for child in self.children:
                if not child.alive():
                    return child.name
        return None


def main() -> int:
    data_dir = _data_dir()
    data_dir.mkdir(parents=True, exist_ok=True)
    stack = Stack(data_dir)

    def on_signal(signum: int, _frame: object) -> None:
        stack.stopping.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        info = stack.start()
    except (processes.StartupError, TimeoutError) as error:
        print(f"ops/run: could not start the stack: {error}", file=sys.stderr)
        stack.stop()
        return 1
    except BaseException:
        stack.stop()
        raise
    print(
        f"""
mwap-tasks is running.
  API     {info["api"]}   (try {info["api"]}/ready)
  Flower  {info["flower"]}   (user and password in {info["credentials"]})
  Redis   {info["redisUrl"]}
  MongoDB {info["mongoUrl"]}
  Logs    {info["logs"]}/*.log
  Stack   {data_dir / "stack.json"}
Ctrl-C stops everything.""",
        flush=True,
    )
    died = stack.watch()
    if died:
        print(
            f"ops/run: {died} exited; stopping the stack. Its log: {stack.log_dir / died}.log",
            file=sys.stderr,
        )
    print("ops/run: stopping…", flush=True)
    stack.stop()
    return 1 if died else 0


if __name__ == "__main__":
    sys.exit(main())
