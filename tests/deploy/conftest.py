"""deploy/k8s rendered once per session with the real kustomize (``kubectl kustomize``)."""

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
BASE = K8S / "base"
PRODUCTION = K8S / "overlays" / "production"
SECRET_TEMPLATE = BASE / "secret.example.yaml"

Manifest = dict[str, Any]


def render(directory: Path) -> list[Manifest]:
    """The objects ``kubectl kustomize directory`` renders (kustomize v2 and v5 render them alike)."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:  # ops/test installs it (ops/bootstrap.sh, MWAP_NEED_PROMTOOL)
        pytest.fail("kubectl is missing: apt-get install kubernetes-client (ops/test does)")
    result = subprocess.run(
        [kubectl, "kustomize", str(directory)], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="session")
def base() -> list[Manifest]:
    return render(BASE)


@pytest.fixture(scope="session")
def production() -> list[Manifest]:
    return render(PRODUCTION)


@pytest.fixture(scope="session")
def secret_template() -> list[Manifest]:
    return [doc for doc in yaml.safe_load_all(SECRET_TEMPLATE.read_text()) if doc]


def of_kind(manifests: list[Manifest], kind: str) -> dict[str, Manifest]:
    """The objects of one kind, by name."""
    return {m["metadata"]["name"]: m for m in manifests if m["kind"] == kind}
