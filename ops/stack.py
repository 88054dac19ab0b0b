"""The embedded stack behind ``ops/run``: every platform process on one machine, stopped as one.

Redis and the MongoDB stand-in start only when MWAP_REDIS_URL / MWAP_MONGO_URL are unset.
Settings given in the environment win over generated ones. URLs go to ``.data/stack.json``,
credentials to ``.data/credentials.json``, logs to ``.data/logs/``. ``.data/`` is 0700 and the
JSON files are 0600 from creation, never written or read through a symbolic link.
"""

import base64
import contextlib
import errno
import json
import os
import secrets
import signal
import stat
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from mwap import redact
from mwap.metrics import reset_multiprocess_dir
from mwap.settings import weak_flower_password
from ops import processes
from ops.fake_providers.documents import provider_documents
from ops.processes import Child
from tasks.providers.outbound import DEV_LOOPBACK_ENV

ROOT = Path(__file__).resolve().parent.parent


def _data_dir() -> Path:
    return Path(os.environ.get("MWAP_DATA_DIR", ROOT / ".data")).resolve()


def private_dir(path: Path) -> Path:
    """``path`` as a directory only its owner can enter (0700): created so, or tightened to it.

    Refused (StartupError) when it is a symbolic link, not a directory, or another user's: the
    stack keeps its secrets, logs and databases in it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700)
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise processes.StartupError(f"{path} is not a directory (a symbolic link is not followed)")
    if info.st_uid != os.getuid():
        raise processes.StartupError(f"{path} belongs to another user (uid {info.st_uid})")
    os.chmod(path, 0o700)
    return path


def _write_private(path: Path, content: dict[str, Any]) -> None:
    """Write ``content`` as JSON to ``path``, mode 0600 from the moment it exists.

    The bytes go to a new file (O_CREAT|O_EXCL|O_NOFOLLOW: never an existing file or a link
    planted in its place), which then replaces ``path`` by rename: a symbolic link at ``path`` is
    replaced, its target never written.
    """
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(temporary, flags, 0o600)
    try:
        os.fchmod(fd, 0o600)  # exactly 0600, whatever the umask
        with os.fdopen(fd, "w") as handle:
            json.dump(content, handle, indent=2)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def _read_private(path: Path) -> dict[str, Any]:
    """The JSON in ``path`` ({} when there is none); a symbolic link there is refused, not followed."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return {}
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise processes.StartupError(
                f"{path} is a symbolic link; secrets are never read through one (remove it)"
            ) from None
        raise
    with os.fdopen(fd) as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise processes.StartupError(f"{path} is not a regular file")
        return json.load(handle)


def _flower_credentials(stored: Any) -> dict[str, str]:
    """The stored Flower user and password, or new ones when missing or too weak for the settings."""
    if isinstance(stored, dict) and not weak_flower_password(
        str(stored.get("user") or ""), ":", str(stored.get("password") or "")
    ):
        return stored
    return {"user": "operator", "password": secrets.token_urlsafe(24)}


def load_credentials(data_dir: Path) -> dict[str, Any]:
    """The demo's secrets: generated once and kept, so encrypted data stays readable across runs."""
    path = data_dir / "credentials.json"
    stored = _read_private(path)
    creds = {
        "adminApiKey": stored.get("adminApiKey") or "mwap_admin_" + secrets.token_urlsafe(32),
        "encryptionKeys": stored.get("encryptionKeys")
        or "k1:" + base64.b64encode(secrets.token_bytes(32)).decode(),
        "flower": _flower_credentials(stored.get("flower")),
        "tenantApiKeys": stored.get("tenantApiKeys") or {},
    }
    _write_private(path, creds)
    return creds


class Stack:
    """Starts the processes in dependency order (Flower before the workers) and stops them in
    reverse."""

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
        # The dev stack's Flower lists every job from the first one (elsewhere it turns the
        # workers' events on a few seconds after it starts).
        env.setdefault("MWAP_WORKER_TASK_EVENTS", "true")
        for name, value in DEV_LOOPBACK_ENV.items():  # the fake providers: http on loopback
            env.setdefault(name, value)
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

        # Flower before any worker: it names a task from the task-received event only, so a job a
        # worker received before Flower listened would show without a name. Its history survives a
        # restart of the stack in .data/flower.db.
        self.add(
            processes.start_flower(
                env=env,
                log_dir=self.log_dir,
                port=flower_port,
                basic_auth=env["MWAP_FLOWER_BASIC_AUTH"],
                db=self.data_dir / "flower.db",
            )
        )

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
                env=env,
                log_dir=self.log_dir,
                name="worker",
                queues="default,maintenance,webhooks",
                concurrency=2,
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
        stack = {
            "api": f"http://127.0.0.1:{api_port}",
            "console": f"http://127.0.0.1:{api_port}/console/",
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
        _write_private(self.data_dir / "stack.json", stack)  # its URLs may carry passwords
        return stack

    def _seed(self, env: dict[str, str], providers_url: str, creds: dict[str, Any]) -> dict[str, Any]:
        """``mwap db migrate`` and ``mwap demo seed``, as an operator would run them."""
        mwap = [processes.PYTHON, "-m", "mwap_cli", "--json"]
        for step in (
            ["db", "migrate"],
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
    try:
        private_dir(data_dir)
    except processes.StartupError as error:
        print(f"ops/run: {error}", file=sys.stderr)
        return 1
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
  Console {info["console"]}   (sign in with the admin API key in {info["credentials"]})
  Flower  {info["flower"]}   (user and password in {info["credentials"]})
  Redis   {redact.redact_text(info["redisUrl"])}
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
