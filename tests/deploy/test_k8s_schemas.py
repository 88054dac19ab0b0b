"""Every rendered manifest is valid: Kubernetes' schemas (strict), KEDA's CRDs, yamllint."""

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]  # stubs (types-jsonschema) not in the lock
import kubernetes_validate  # type: ignore[import-untyped]  # no stubs, no py.typed
import pytest
import yaml
from conftest import K8S, ROOT, Manifest

# The oldest Kubernetes the recipe supports, and the newest kubernetes-validate ships.
K8S_VERSIONS = ["1.31.0", kubernetes_validate.latest_version()]
KEDA_CRDS = {
    "ScaledObject": K8S / "schemas" / "keda.sh_scaledobjects.yaml",
    "TriggerAuthentication": K8S / "schemas" / "keda.sh_triggerauthentications.yaml",
}
# Relative to the root: the configuration's ignore patterns (the vendored CRDs) match those.
YAMLLINT_TARGETS = ["deploy/k8s", "ops/prometheus-alerts.yml"]


def closed(schema: Any) -> Any:
    """A CRD's structural schema with unknown fields refused, as the API server's strict field
    validation does (a structural schema prunes them silently otherwise)."""
    if isinstance(schema, dict):
        schema = {key: closed(value) for key, value in schema.items()}
        if (
            "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [closed(item) for item in schema]
    return schema


def crd_validator(path: Path) -> jsonschema.Draft7Validator:
    crd = yaml.safe_load(path.read_text())
    (served,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1"]
    return jsonschema.Draft7Validator(closed(served["schema"]["openAPIV3Schema"]))


@pytest.fixture(scope="module")
def keda() -> dict[str, jsonschema.Draft7Validator]:
    return {kind: crd_validator(path) for kind, path in KEDA_CRDS.items()}


def kubernetes_errors(manifest: Manifest, version: str) -> str | None:
    try:
        kubernetes_validate.validate(manifest, version, strict=True)
    except kubernetes_validate.ValidationError as error:
        return f"{error.path}: {error.message}"
    return None


def keda_errors(validators: dict[str, jsonschema.Draft7Validator], manifest: Manifest) -> list[str]:
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validators[manifest["kind"]].iter_errors(manifest)
    ]


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("overlay", ["base", "production"])
def test_every_manifest_is_valid(
    overlay: str,
    version: str,
    keda: dict[str, jsonschema.Draft7Validator],
    request: pytest.FixtureRequest,
    secret_template: list[Manifest],
) -> None:
    manifests: list[Manifest] = request.getfixturevalue(overlay) + secret_template
    seen = set()
    for manifest in manifests:
        name = f"{manifest['kind']}/{manifest['metadata']['name']}"
        if manifest["apiVersion"] == "keda.sh/v1alpha1":
            assert not keda_errors(keda, manifest), name
        else:
            assert kubernetes_errors(manifest, version) is None, (name, kubernetes_errors(manifest, version))
        seen.add(manifest["kind"])
    assert {"Deployment", "Service", "ScaledObject", "TriggerAuthentication", "Job"} <= seen


def test_the_validators_refuse_what_a_cluster_would(
    production: list[Manifest], keda: dict[str, jsonschema.Draft7Validator]
) -> None:
    """The checks above can fail: a misspelt field, a wrong type, an unknown KEDA option."""
    deployment = copy.deepcopy(next(m for m in production if m["kind"] == "Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessprobe"] = {}
    assert kubernetes_errors(deployment, K8S_VERSIONS[0]) is not None
    deployment = copy.deepcopy(next(m for m in production if m["kind"] == "Deployment"))
    deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = "360"
    assert kubernetes_errors(deployment, K8S_VERSIONS[0]) is not None

    scaled = copy.deepcopy(next(m for m in production if m["kind"] == "ScaledObject"))
    assert not keda_errors(keda, scaled)
    scaled["spec"]["pollingIntervall"] = 15
    assert keda_errors(keda, scaled)
    scaled = copy.deepcopy(next(m for m in production if m["kind"] == "ScaledObject"))
    scaled["spec"]["triggers"][0]["metadata"]["listLength"] = 16  # KEDA's metadata values are strings
    assert keda_errors(keda, scaled)


def test_yamllint_passes() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "yamllint", "--strict", "-c", str(ROOT / ".yamllint.yaml"), *YAMLLINT_TARGETS],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
