"""deploy/k8s agrees with the code: settings, entry points, queues and their kombu lists, probe
routes, time limits, and seed 003's probes and resources (as tests/ops/test_compose.py does for
docker-compose.yml)."""

import importlib.util
import re
from typing import Any

import click
import pytest
import yaml
from conftest import ROOT, Manifest, of_kind

from api_thin.routes import ENDPOINTS
from api_thin.routing import Auth
from mwap import broker, jobtypes
from mwap.metrics.multiprocess import MULTIPROC_ENV
from mwap.settings import ENV_PREFIX, Settings
from mwap_cli import main as mwap_main
from mwap_cli.metrics import HEALTH_PATH, METRICS_PATH

CELERY_APP = "worker.entry:celery_app"
WORKER_PREFIX = "mwap-worker-"
# Seed 003 ("Horizontal Scaling"): every container's resources, the API's probes.
SEED_RESOURCES = {
    "requests": {"memory": "256Mi", "cpu": "250m"},
    "limits": {"memory": "512Mi", "cpu": "500m"},
}
SEED_LIVENESS = {"path": "/health", "initialDelaySeconds": 30, "periodSeconds": 10}
SEED_READINESS = {"path": "/ready", "initialDelaySeconds": 5, "periodSeconds": 5}
# What a container may set besides settings: its HOME (the root file system is read-only), the
# multiprocess metrics directory, and Flower's own name for its basic auth.
NON_SETTINGS_ENV = {"HOME", MULTIPROC_ENV, "FLOWER_BASIC_AUTH"}


def settings_names() -> set[str]:
    return {f"{ENV_PREFIX}{name.upper()}" for name in Settings.model_fields}


def pods(manifests: list[Manifest]) -> dict[str, dict[str, Any]]:
    """Pod specs of every Deployment and Job, by object name."""
    return {
        m["metadata"]["name"]: m["spec"]["template"]["spec"]
        for m in manifests
        if m["kind"] in {"Deployment", "Job"}
    }


def containers(manifests: list[Manifest]) -> dict[str, dict[str, Any]]:
    return {name: c for name, pod in pods(manifests).items() for c in pod["containers"]}


def workers(manifests: list[Manifest]) -> dict[str, Manifest]:
    return {n: d for n, d in of_kind(manifests, "Deployment").items() if n.startswith(WORKER_PREFIX)}


def option(command: list[str], flag: str) -> str:
    return command[command.index(flag) + 1]


def config_data(manifests: list[Manifest]) -> dict[str, str]:
    return of_kind(manifests, "ConfigMap")["mwap-config"]["data"]


def secret_keys(template: list[Manifest], name: str) -> set[str]:
    return set(of_kind(template, "Secret")[name]["stringData"])


def effective(manifests: list[Manifest], field: str) -> int:
    """A setting's value as the pods get it: the ConfigMap's, else the default."""
    name = f"{ENV_PREFIX}{field.upper()}"
    return int(config_data(manifests).get(name, Settings.model_fields[field].default))


# --- settings --------------------------------------------------------------------------------


def test_config_and_secret_hold_real_settings_and_every_required_one(
    production: list[Manifest], secret_template: list[Manifest]
) -> None:
    config = set(config_data(production))
    secret = secret_keys(secret_template, "mwap-secrets")
    assert config <= settings_names(), config - settings_names()
    assert secret <= settings_names(), secret - settings_names()
    required = {f"{ENV_PREFIX}{n.upper()}" for n, f in Settings.model_fields.items() if f.is_required()}
    assert required <= secret, f"the Secret template lacks {required - secret}"
    assert not config & secret, "a setting in both the ConfigMap and the Secret"
    assert "Secret" not in {m["kind"] for m in production}, "secret values must never be applied from git"


def test_the_configured_values_pass_the_settings_checks(
    production: list[Manifest], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ConfigMap's values load (types, ranges, cross-field rules) with valid secrets beside them."""
    for name in settings_names():
        monkeypatch.delenv(name, raising=False)
    for name, value in config_data(production).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("MWAP_REDIS_URL", "redis://:pw@redis:6379/0")
    monkeypatch.setenv("MWAP_MONGO_URL", "mongodb://mwap:pw@mongo:27017/mwap?replicaSet=rs0")
    monkeypatch.setenv("MWAP_ENCRYPTION_KEYS", "k1:" + "A" * 43 + "=")
    monkeypatch.setenv("MWAP_ADMIN_API_KEY", "a" * 32)
    settings = Settings()
    assert settings.task_time_limit == effective(production, "task_time_limit")


def test_every_platform_container_reads_the_config_and_only_real_settings(production: list[Manifest]) -> None:
    for name, container in containers(production).items():
        sources = {
            ref.get("configMapRef", ref.get("secretRef", {})).get("name") for ref in container["envFrom"]
        }
        assert sources == {"mwap-config", "mwap-secrets"}, name
        env = {e["name"] for e in container.get("env", [])}
        unknown = {e for e in env if e.startswith(ENV_PREFIX)} - settings_names()
        assert not unknown, f"{name} sets settings that do not exist: {unknown}"
        assert env - settings_names() <= NON_SETTINGS_ENV, name


def test_secret_references_exist_in_the_template(
    production: list[Manifest], secret_template: list[Manifest]
) -> None:
    for name, container in containers(production).items():
        for entry in container.get("env", []):
            ref = entry.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                assert ref["key"] in secret_keys(secret_template, ref["name"]), (name, ref)
    (auth,) = of_kind(production, "TriggerAuthentication").values()
    for ref in auth["spec"]["secretTargetRef"]:
        assert ref["key"] in secret_keys(secret_template, ref["name"]), ref
    assert {ref["parameter"] for ref in auth["spec"]["secretTargetRef"]} == {"address", "password"}


# --- entry points ----------------------------------------------------------------------------


def test_commands_name_real_entry_points(production: list[Manifest]) -> None:
    commands = {name: c["command"] for name, c in containers(production).items()}
    assert commands["mwap-api"] == ["gunicorn", "-c", "python:api_thin.gunicorn_conf", "api_thin.wsgi:app"]
    for module in ("api_thin.gunicorn_conf", "api_thin.wsgi", CELERY_APP.split(":", maxsplit=1)[0]):
        assert importlib.util.find_spec(module) is not None, module
    assert commands["mwap-beat"][:4] == ["celery", "-A", CELERY_APP, "beat"]
    assert commands["mwap-flower"][:4] == ["celery", "-A", CELERY_APP, "flower"]
    for name in workers(production):
        assert commands[name][:4] == ["celery", "-A", CELERY_APP, "worker"], name
    # The migration Job: docker-compose.yml's one-shot, through the `mwap` console script.
    assert commands["mwap-migrate"] == ["mwap", "db", "migrate"]
    with click.Context(mwap_main) as ctx:
        db = mwap_main.get_command(ctx, "db")
        assert isinstance(db, click.Group)
        assert db.get_command(ctx, "migrate") is not None
    assert 'mwap = "mwap_cli:main"' in (ROOT / "pyproject.toml").read_text()


def test_flower_gets_its_basic_auth_and_no_metrics_directory(production: list[Manifest]) -> None:
    flower = containers(production)["mwap-flower"]
    env = {e["name"]: e for e in flower["env"]}
    assert env["FLOWER_BASIC_AUTH"]["valueFrom"]["secretKeyRef"] == {
        "name": "mwap-secrets",
        "key": "MWAP_FLOWER_BASIC_AUTH",
    }
    assert MULTIPROC_ENV not in env  # Flower's process metrics stay out of the platform's
    assert of_kind(production, "Service")["mwap-flower"]["spec"]["type"] == "ClusterIP"


def test_flower_keeps_its_history_on_a_writable_volume(production: list[Manifest]) -> None:
    """Persistent Flower writes its state file on SIGTERM and every interval: on a read-only root
    that directory must be a volume (an emptyDir: the history outlives the container, not the pod)."""
    command = containers(production)["mwap-flower"]["command"]
    assert "--persistent=True" in command
    [db] = [arg.removeprefix("--db=") for arg in command if arg.startswith("--db=")]
    pod = pods(production)["mwap-flower"]
    mounts = {m["mountPath"]: m["name"] for m in pod["containers"][0]["volumeMounts"]}
    volume = {v["name"]: v for v in pod["volumes"]}[mounts[db.rsplit("/", 1)[0]]]
    assert "emptyDir" in volume


# --- queues and autoscaling ------------------------------------------------------------------


def test_every_queue_has_exactly_one_worker_deployment(production: list[Manifest]) -> None:
    consumed: dict[str, list[str]] = {}
    for name, deployment in workers(production).items():
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        for queue in option(container["command"], "-Q").split(","):
            consumed.setdefault(queue, []).append(name)
    assert set(consumed) == {q.value for q in jobtypes.Queue}
    assert all(len(names) == 1 for names in consumed.values()), consumed
    routed = {route["queue"] for route in jobtypes.routes().values()}
    assert routed <= set(consumed), routed - set(consumed)


def test_worker_pools_and_names_match_the_compose_stack(production: list[Manifest]) -> None:
    """The pool per queue is docker-compose.yml's; each liveness ping names its own worker."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    compose_pool = {
        queue: option(service["command"], "-P")
        for service in compose.values()
        if "worker" in service.get("command", [])
        for queue in option(service["command"], "-Q").split(",")
    }
    for name, deployment in workers(production).items():
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        command = container["command"]
        queue = option(command, "-Q")
        assert option(command, "-P") == compose_pool[queue], name
        assert option(command, "-n") == f"worker-{queue}@%h", name
        ping = container["livenessProbe"]["exec"]["command"][-1]
        assert f"{CELERY_APP} inspect ping" in ping, name
        assert f'-d "worker-{queue}@$HOSTNAME"' in ping, name


def test_each_worker_has_one_scaled_object_on_its_kombu_lists(production: list[Manifest]) -> None:
    scaled = of_kind(production, "ScaledObject")
    (auth_name,) = of_kind(production, "TriggerAuthentication")
    targets = [s["spec"]["scaleTargetRef"]["name"] for s in scaled.values()]
    assert sorted(targets) == sorted(workers(production)), "one ScaledObject per worker Deployment"
    for so in scaled.values():
        spec = so["spec"]
        deployment = workers(production)[spec["scaleTargetRef"]["name"]]
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        queue, concurrency = option(container["command"], "-Q"), option(container["command"], "-c")
        triggers = spec["triggers"]
        # Exactly kombu's lists, every priority step included, in the order mwap.broker reads them.
        assert [t["metadata"]["listName"] for t in triggers] == broker.queue_keys(queue)
        assert all(t["type"] == "redis" and t["authenticationRef"]["name"] == auth_name for t in triggers)
        assert all(t["metadata"]["listLength"] == concurrency for t in triggers)
        # The formula adds every list: the scaler sees the queue's whole depth, as `mwap queues`.
        modifiers = spec["advanced"]["scalingModifiers"]
        assert sorted(re.findall(r"\w+", modifiers["formula"])) == sorted(t["name"] for t in triggers)
        assert set(modifiers["formula"].replace(" ", "")) - set("".join(t["name"] for t in triggers)) <= {"+"}
        assert modifiers["target"] == concurrency
        assert modifiers["metricType"] == "AverageValue"
        # KEDA's CEL rule (not checked by the JSON schema): min <= max.
        assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
        assert spec["pollingInterval"] > 0
        assert "cooldownPeriod" in spec
        assert "replicas" not in deployment["spec"], "KEDA owns the replica count"


def test_kombu_list_names_are_kombus() -> None:
    """The separator and steps the manifests spell out are the pinned kombu's."""
    from kombu.transport.redis import Channel  # noqa: PLC0415

    assert Channel.sep == "\x06\x16"
    assert list(Channel.priority_steps) == [0, 3, 6, 9]
    assert broker.queue_keys("sync") == ["sync", "sync\x06\x163", "sync\x06\x166", "sync\x06\x169"]


def test_the_api_scales_on_cpu_and_beat_runs_twice(production: list[Manifest]) -> None:
    (hpa,) = of_kind(production, "HorizontalPodAutoscaler").values()
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "mwap-api",
    }
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert 2 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    deployments = of_kind(production, "Deployment")
    assert "replicas" not in deployments["mwap-api"]["spec"], "the HPA owns the replica count"
    assert deployments["mwap-beat"]["spec"]["replicas"] == 2
    assert deployments["mwap-flower"]["spec"]["replicas"] == 1


# --- probes, resources, shutdown, security ---------------------------------------------------


def test_api_probes_are_seed_003s_on_real_routes(production: list[Manifest]) -> None:
    api = containers(production)["mwap-api"]
    routes = {e.path: e for e in ENDPOINTS}
    for probe, seed in ((api["livenessProbe"], SEED_LIVENESS), (api["readinessProbe"], SEED_READINESS)):
        path = probe["httpGet"]["path"]
        assert path == seed["path"]
        assert routes[path].method == "GET"
        assert routes[path].auth is Auth.NONE
        assert probe["initialDelaySeconds"] == seed["initialDelaySeconds"]
        assert probe["periodSeconds"] == seed["periodSeconds"]
        assert probe["timeoutSeconds"] <= probe["periodSeconds"]
    # The probes' port is the one gunicorn binds and the Service targets.
    (port,) = api["ports"]
    env = {e["name"]: e.get("value") for e in api["env"]}
    assert port["containerPort"] == int(env["MWAP_API_PORT"])
    assert env["MWAP_API_HOST"] == "0.0.0.0"
    assert api["livenessProbe"]["httpGet"]["port"] == port["name"]
    service = of_kind(production, "Service")["mwap-api"]
    assert service["spec"]["ports"][0]["targetPort"] == port["name"]


def test_every_container_has_seed_003s_resources(production: list[Manifest]) -> None:
    for name, container in containers(production).items():
        assert container["resources"] == SEED_RESOURCES, name


def test_workers_outlast_the_task_time_limit_on_sigterm(production: list[Manifest]) -> None:
    hard, soft = effective(production, "task_time_limit"), effective(production, "task_soft_time_limit")
    assert soft < hard
    for name, deployment in workers(production).items():
        grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        assert grace > hard, f"{name}: SIGKILL at {grace} s would cut tasks allowed to run {hard} s"
        # Rollouts bring the new pods up before the old ones drain.
        assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0, name


def test_pods_run_as_the_image_user_on_a_read_only_root(production: list[Manifest]) -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    uid = int(re.search(r"useradd .*--uid (\d+)", dockerfile).group(1))  # type: ignore[union-attr]
    assert re.search(r"^USER mwap$", dockerfile, re.MULTILINE)
    for name, pod in pods(production).items():
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] == uid, name
        assert pod["automountServiceAccountToken"] is False, name
        volumes = {v["name"]: v for v in pod["volumes"]}
        for container in pod["containers"]:
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True, name
            assert security["allowPrivilegeEscalation"] is False, name
            assert security["capabilities"]["drop"] == ["ALL"], name
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            env = {e["name"]: e.get("value") for e in container.get("env", [])}
            assert "emptyDir" in volumes[mounts["/tmp"]], name
            assert env["HOME"] == "/tmp", name
            if MULTIPROC_ENV in env:  # the metrics directory is a writable emptyDir of its own
                assert "emptyDir" in volumes[mounts[env[MULTIPROC_ENV]]], name
    metered = {n for n, c in containers(production).items() if MULTIPROC_ENV in {e["name"] for e in c["env"]}}
    assert metered == {"mwap-api", "mwap-beat", *workers(production)}


# --- disruption budgets and network policies -------------------------------------------------


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether a label selector (matchLabels and In-expressions) selects ``labels``."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        assert expression["operator"] == "In"
        if labels.get(expression["key"]) not in expression["values"]:
            return False
    return True


def pod_labels(manifests: list[Manifest]) -> dict[str, dict[str, str]]:
    return {
        m["metadata"]["name"]: m["spec"]["template"]["metadata"]["labels"]
        for m in manifests
        if m["kind"] in {"Deployment", "Job"}
    }


def test_disruption_budgets_cover_api_beat_and_every_worker(production: list[Manifest]) -> None:
    labels = pod_labels(production)
    covered = {
        name
        for pdb in of_kind(production, "PodDisruptionBudget").values()
        for name, pod in labels.items()
        if selects(pdb["spec"]["selector"], pod)
    }
    assert covered == {"mwap-api", "mwap-beat", *workers(production)}
    assert of_kind(production, "PodDisruptionBudget")["mwap-beat"]["spec"]["minAvailable"] == 1


def test_network_policies_deny_by_default_and_open_only_the_api(production: list[Manifest]) -> None:
    policies = of_kind(production, "NetworkPolicy")
    deny = policies["mwap-default-deny"]["spec"]
    assert deny["podSelector"] == {}
    assert set(deny["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in deny
    assert "egress" not in deny
    labels = pod_labels(production)
    for name, policy in policies.items():
        for rule in policy["spec"].get("ingress", []):
            if "from" not in rule:  # open to every source: only the API's own port
                selected = {p for p, pod in labels.items() if selects(policy["spec"]["podSelector"], pod)}
                assert selected == {"mwap-api"}, name
                assert [p["port"] for p in rule["ports"]] == [8000], name
    https = {
        p for p, pod in labels.items() if selects(policies["mwap-egress-https"]["spec"]["podSelector"], pod)
    }
    assert https == {"mwap-api", "mwap-beat", *workers(production)}
    backends = policies["mwap-egress-backends"]["spec"]
    assert backends["podSelector"] == {}
    assert {p["port"] for rule in backends["egress"] for p in rule["ports"]} == {53, 6379, 26379, 27017}
    for service in of_kind(production, "Service").values():
        assert service["spec"]["type"] == "ClusterIP"


def test_the_overlay_pins_the_image(base: list[Manifest], production: list[Manifest]) -> None:
    images = {c["image"] for c in containers(production).values()}
    (image,) = images
    assert not image.endswith(":latest")
    assert ":" in image.rsplit("/", 1)[-1]
    assert {c["image"] for c in containers(base).values()} == {"mwap-tasks:latest"}
    assert {m["metadata"].get("namespace") for m in production if m["kind"] != "Namespace"} == {"mwap"}


# --- metrics: every pod that writes metrics serves them --------------------------------------

METRICS_SIDECAR = "metrics"
SCRAPE = "prometheus.io/scrape"


def sidecars(manifests: list[Manifest]) -> dict[str, dict[str, Any]]:
    """The ``mwap metrics serve`` sidecar of each pod that has one, by object name."""
    return {
        name: c
        for name, pod in pods(manifests).items()
        for c in pod.get("initContainers", [])
        if c["name"] == METRICS_SIDECAR
    }


def annotations(manifests: list[Manifest]) -> dict[str, dict[str, str]]:
    return {
        m["metadata"]["name"]: m["spec"]["template"]["metadata"].get("annotations", {})
        for m in manifests
        if m["kind"] in {"Deployment", "Job"}
    }


def test_every_worker_and_beat_pod_serves_its_metrics_directory(production: list[Manifest]) -> None:
    """On Kubernetes each pod's metrics directory is its own: a sidecar serves it, read-only."""
    served = sidecars(production)
    assert set(served) == {"mwap-beat", *workers(production)}
    with click.Context(mwap_main) as ctx:
        group = mwap_main.get_command(ctx, "metrics")
        assert isinstance(group, click.Group)
        assert group.get_command(ctx, "serve") is not None
    main_image = {c["image"] for c in containers(production).values()}
    for name, sidecar in served.items():
        pod = pods(production)[name]
        (main,) = pod["containers"]
        command = sidecar["command"]
        assert command[:3] == ["mwap", "metrics", "serve"], name
        assert option(command, "--host") == "0.0.0.0", name
        # A native sidecar: up before the main container, stopped after it (the drain's last scrapes).
        assert sidecar["restartPolicy"] == "Always", name
        assert {sidecar["image"]} == main_image, name
        # It reads the directory the main container's processes write, and cannot write to it.
        directory = {e["name"]: e.get("value") for e in main["env"]}[MULTIPROC_ENV]
        assert option(command, "--dir") == directory, name
        writer = {m["mountPath"]: m for m in main["volumeMounts"]}[directory]
        (reader,) = sidecar["volumeMounts"]
        assert (reader["name"], reader["mountPath"]) == (writer["name"], directory), name
        assert reader["readOnly"] is True, name
        assert not writer.get("readOnly"), name
        # Without the variable (its PIDs would be the worker's file names) and with only the token.
        assert "envFrom" not in sidecar, name
        (token,) = sidecar["env"]
        assert token["name"] == f"{ENV_PREFIX}METRICS_TOKEN", name
        assert token["valueFrom"]["secretKeyRef"] == {
            "name": "mwap-secrets",
            "key": f"{ENV_PREFIX}METRICS_TOKEN",
            "optional": True,
        }, name
        # Probe and scrape on the named port the server binds, on the paths it serves.
        (port,) = sidecar["ports"]
        assert port == {"name": "metrics", "containerPort": int(option(command, "--port"))}, name
        assert sidecar["livenessProbe"]["httpGet"] == {"path": HEALTH_PATH, "port": "metrics"}, name
        assert sidecar["livenessProbe"]["timeoutSeconds"] <= sidecar["livenessProbe"]["periodSeconds"]
        assert annotations(production)[name] == {
            SCRAPE: "true",
            "prometheus.io/port": str(port["containerPort"]),
            "prometheus.io/path": METRICS_PATH,
        }, name
        # Small, and as locked down as the main container.
        assert sidecar["resources"]["limits"]["memory"] == "128Mi", name
        assert sidecar["resources"]["requests"] == {"memory": "80Mi", "cpu": "10m"}, name
        assert sidecar["securityContext"] == main["securityContext"], name


def test_the_api_pods_are_scraped_on_their_own_port(production: list[Manifest]) -> None:
    api = containers(production)["mwap-api"]
    (port,) = api["ports"]
    assert annotations(production)["mwap-api"] == {
        SCRAPE: "true",
        "prometheus.io/port": str(port["containerPort"]),
        "prometheus.io/path": "/metrics",
    }
    scraped = {name for name, found in annotations(production).items() if found.get(SCRAPE) == "true"}
    assert scraped == {"mwap-api", "mwap-beat", *workers(production)}


def test_network_policies_let_the_monitoring_namespace_scrape_every_metrics_port(
    production: list[Manifest],
) -> None:
    policies = of_kind(production, "NetworkPolicy")
    labels = pod_labels(production)
    for name, found in annotations(production).items():
        if found.get(SCRAPE) != "true":
            continue
        port = int(found["prometheus.io/port"])
        admitted = [
            rule
            for policy in policies.values()
            if selects(policy["spec"]["podSelector"], labels[name])
            for rule in policy["spec"].get("ingress", [])
            if port in [p["port"] for p in rule["ports"]]
        ]
        assert admitted, f"{name}: nothing lets Prometheus reach port {port}"
    # The sidecars' port: only from the monitoring namespace, never from anywhere.
    metrics_policy = policies["mwap-metrics-ingress"]["spec"]
    selected = {p for p, pod in labels.items() if selects(metrics_policy["podSelector"], pod)}
    assert selected == set(sidecars(production))
    (rule,) = metrics_policy["ingress"]
    monitoring = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    assert rule["from"] == [monitoring]
    assert [p["port"] for p in rule["ports"]] == [9108]
