"""Any flavor (issue 17), with models logged and registered by the real ``mlflow`` client
against a live Steward: inference jobs on an MLflow sklearn and an MLflow pytorch model version
produce a predictions dataset version with lineage; online prediction of a code-executing flavor
goes through its model server (clean environment, own session, restarted when dead, stopped
when idle); a flavor that cannot predict is refused at submission naming the flavor."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from governance.actions.model_versions import do_register_model_version_from_artifact
from governance.datafiles import read_frame
from governance.models import ModelVersion
from lineage.models import LineageEdge
from runners.models import Job, JobState
from runners.serving import supervisor
from runners.serving.service import server_spec
from tests.conftest import run_job

pytestmark = pytest.mark.django_db(transaction=True)

FEATURES = ["temp", "hum", "windspeed", "hr"]
SECRETS = ("DATABASE_URL", "DJANGO_SECRET_KEY", "STEWARD_AUDIT_SIGNING_KEY", "CELERY_BROKER_URL")


@pytest.fixture
def model_servers(settings):
    """Model servers in a short-named folder (a socket path has at most 107 bytes), stopped after."""
    folder = Path(tempfile.mkdtemp(prefix="ms-", dir="/tmp"))
    settings.STEWARD_MODEL_SERVER_DIR = folder
    yield folder
    supervisor.stop_all(folder)
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def sklearn_version(mlflow_env, bike_frame) -> tuple[ModelVersion, object]:
    """A linear regression on 400 real hours, logged and registered through the mlflow client
    (cloudpickle: loading it executes code); returns the version and the fitted model."""
    import mlflow
    import mlflow.sklearn
    from sklearn.linear_model import LinearRegression

    rows = bike_frame.iloc[:400]
    model = LinearRegression().fit(rows[FEATURES], rows["cnt"])
    mlflow.set_experiment("serving")
    with mlflow.start_run():
        mlflow.sklearn.log_model(
            model,
            name="model",
            registered_model_name="bike-sklearn",
            input_example=rows[FEATURES].iloc[:2],
            serialization_format="cloudpickle",
        )
    return ModelVersion.objects.get(model__name="bike-sklearn"), model


def _infer(version: ModelVersion, dataset_version, scientist) -> Job:
    return run_job(
        kind="infer", dataset_version=dataset_version, model_version=version, spec={}, actor=scientist
    )


def _assert_predictions_dataset(
    job: Job, version: ModelVersion, dataset_version, expected: np.ndarray
) -> None:
    output = job.output_dataset_version
    frame = read_frame(output.path, output.format, output.original_filename)
    assert len(frame) == dataset_version.row_count
    np.testing.assert_allclose(frame["prediction"].to_numpy(dtype=float), expected, rtol=1e-4)
    edges = set(LineageEdge.objects.values_list("source_type", "source_id", "target_type", "target_id"))
    assert {
        ("model_version", version.pk, "job", job.pk),
        ("dataset_version", dataset_version.pk, "job", job.pk),
        ("job", job.pk, "dataset_version", output.pk),
    } <= edges


def test_inference_job_on_an_mlflow_sklearn_version(sklearn_version, dataset_version, scientist, bike_frame):
    version, model = sklearn_version
    assert (version.flavor, version.executes_code) == ("mlflow_model", True)

    job = _infer(version, dataset_version, scientist)

    assert (job.state, job.metrics["rows"]) == (JobState.SUCCEEDED, float(len(bike_frame)))
    _assert_predictions_dataset(job, version, dataset_version, model.predict(bike_frame[FEATURES]))


def test_inference_job_on_an_mlflow_pytorch_version(mlflow_env, dataset_version, scientist, bike_frame):
    import mlflow
    import mlflow.pytorch
    import torch

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(len(FEATURES), 4), torch.nn.ReLU(), torch.nn.Linear(4, 1))
    example = bike_frame[FEATURES].iloc[:2].astype("float32")
    mlflow.set_experiment("serving-torch")
    with mlflow.start_run():
        mlflow.pytorch.log_model(
            net,
            name="net",
            registered_model_name="bike-torch",
            serialization_format="pickle",
            input_example=example,
        )
    version = ModelVersion.objects.get(model__name="bike-torch")

    job = _infer(version, dataset_version, scientist)

    with torch.no_grad():
        expected = net(torch.tensor(bike_frame[FEATURES].to_numpy(dtype="float32"))).numpy().reshape(-1)
    assert job.state == JobState.SUCCEEDED
    _assert_predictions_dataset(job, version, dataset_version, expected)


def test_a_flavor_that_cannot_predict_is_refused_at_submission(
    registered_model, dataset_version, scientist, client_for, tmp_path
):
    import torch

    path = tmp_path / "weights.pt"
    torch.save(torch.nn.Linear(3, 1).state_dict(), path)
    version = do_register_model_version_from_artifact(
        model=registered_model, artifact_path=path, source="upload", actor=scientist
    )

    response = client_for(scientist).post(
        "/api/jobs/",
        {"kind": "infer", "dataset_version": dataset_version.pk, "model_version": version.pk, "spec": {}},
        format="json",
    )

    assert response.status_code == 400
    assert "pytorch_state_dict" in response.json()["model_version"][0]
    assert not Job.objects.filter(kind="infer").exists()


def _environment_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


def test_online_prediction_through_the_model_server(
    sklearn_version, scientist, client_for, bike_frame, model_servers, settings, monkeypatch
):
    version, model = sklearn_version
    for name in SECRETS:  # what the web process holds must not reach the server
        monkeypatch.setenv(name, f"secret-{name.lower()}")
    rows = json.loads(bike_frame[FEATURES].iloc[:5].to_json(orient="records"))
    client = client_for(scientist)
    url = "/api/models/bike-sklearn/versions/1/predict"

    first = client.post(url, {"rows": rows}, format="json")

    assert first.status_code == 200, first.content
    assert first.json()["served_by"] == "model_server"
    np.testing.assert_allclose(first.json()["predictions"], model.predict(pd.DataFrame(rows)), rtol=1e-9)
    pid = supervisor.server_pid(server_spec(version))
    assert pid is not None
    assert pid != os.getpid()
    assert os.getsid(pid) == pid  # its own session
    environment = _environment_of(pid)
    assert not set(SECRETS) & set(environment)
    assert not any(value.startswith("secret-") for value in environment.values())

    # Killed (its process group: the server and, in the sandbox, bubblewrap around it): the
    # next request starts it again.
    os.killpg(pid, signal.SIGKILL)
    again = client.post(url, {"rows": rows[:1]}, format="json")
    assert again.status_code == 200
    restarted = supervisor.server_pid(server_spec(version))
    assert restarted is not None
    assert restarted != pid

    # A row the signature refuses never reaches the server.
    missing = client.post(url, {"rows": [{"temp": 0.5, "hum": 0.5, "windspeed": 0.1}]}, format="json")
    assert missing.status_code == 400
    assert "missing column 'hr'" in missing.json()["rows"][0]


def test_an_idle_model_server_stops_itself(sklearn_version, scientist, client_for, model_servers, settings):
    version, _model = sklearn_version
    settings.STEWARD_MODEL_SERVER_IDLE_S = 1.0
    row = {"temp": 0.3, "hum": 0.6, "windspeed": 0.2, "hr": 8}

    assert (
        client_for(scientist)
        .post("/api/models/bike-sklearn/versions/1/predict", {"rows": [row]}, format="json")
        .status_code
        == 200
    )
    pid = supervisor.server_pid(server_spec(version))
    assert pid is not None
    deadline = time.monotonic() + 60
    while supervisor.server_pid(server_spec(version)) is not None and time.monotonic() < deadline:
        time.sleep(0.2)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # reap it: this test process started it

    assert supervisor.server_pid(server_spec(version)) is None
    # Nobody listens any more: the next request is refused, and starts a fresh server.
    with pytest.raises((ConnectionRefusedError, FileNotFoundError)), socket.socket(socket.AF_UNIX) as probe:
        probe.connect(str(server_spec(version).socket_path))


def _pyfunc_version(code_text: str, name: str, tmp_path: Path, registered_model, scientist) -> ModelVersion:
    """A version of ``registered_model``: an MLflow pyfunc whose code is ``code_text`` (its
    loading runs that code), saved with the real mlflow and registered as an upload."""
    import mlflow.pyfunc

    code = tmp_path / f"{name}.py"
    code.write_text(code_text)
    mlflow.pyfunc.save_model(str(tmp_path / name), python_model=str(code))
    version = do_register_model_version_from_artifact(
        model=registered_model, artifact_path=tmp_path / name, source="upload", actor=scientist
    )
    assert version.executes_code
    return version


LEAKY_MODEL = '''
import os

import mlflow
from mlflow.pyfunc import PythonModel

SECRETS = {secrets!r}


class Leaky(PythonModel):
    """Predicts, for every row, the names of the secrets it can read in its environment."""

    def predict(self, context, model_input, params=None):
        found = [name for name in SECRETS if name in os.environ]
        found += [name for name, value in os.environ.items() if value.startswith("secret-")]
        return [",".join(sorted(set(found))) or "none"] * len(model_input)


mlflow.models.set_model(Leaky())
'''


def test_a_model_that_executes_code_reads_no_secret_in_an_inference_job(
    registered_model, dataset_version, scientist, tmp_path, monkeypatch
):
    """A pyfunc whose loading and predicting run the artifact's code: in the inference job's child
    it finds none of the worker's secrets (the child's environment is ``launcher.clean_environment``)."""
    for name in SECRETS:
        monkeypatch.setenv(name, f"secret-{name.lower()}")
    version = _pyfunc_version(
        LEAKY_MODEL.format(secrets=SECRETS), "leaky", tmp_path, registered_model, scientist
    )

    job = _infer(version, dataset_version, scientist)

    output = job.output_dataset_version
    frame = read_frame(output.path, output.format, output.original_filename)
    assert set(frame["prediction"]) == {"none"}


PRYING_MODEL = '''
import os
import signal
import socket
import subprocess
import sys

import mlflow
from mlflow.pyfunc import PythonModel

TARGETS = {targets!r}


class Prying(PythonModel):
    """Predicts, for every row, what of the host it could read or reach."""

    def predict(self, context, model_input, params=None):
        found = []
        for label, path in TARGETS["files"].items():
            try:
                with open(path, "rb") as handle:
                    handle.read(1)
                found.append("read " + label)
            except OSError:
                pass
        for label, (host, port) in TARGETS["ports"].items():
            try:
                socket.create_connection((host, port), timeout=2).close()
                found.append("reached " + label)
            except OSError:
                pass
        # The host folders it sees: where its config lies (a link planted there would be
        # followed by the web process) and its model. (Its home is the sandbox's own tmpfs.)
        for label, folder in (
            ("beside its config", os.path.dirname(sys.argv[-1])),
            ("in its model", os.path.dirname(os.path.abspath(__file__))),
        ):
            try:
                os.symlink("/etc/passwd", os.path.join(folder, "planted"))
                found.append("wrote " + label)
            except OSError:
                pass
        # A process of its own that leaves the server's process group and ignores SIGTERM.
        ignore = lambda: signal.signal(signal.SIGTERM, signal.SIG_IGN)  # noqa: E731
        subprocess.Popen(["sleep", TARGETS["sleep"]], start_new_session=True, preexec_fn=ignore)
        return [";".join(found) or "nothing"] * len(model_input)


mlflow.models.set_model(Prying())
'''


def test_a_served_model_that_executes_code_sees_nothing_of_the_host(
    sklearn_version, registered_model, scientist, client_for, model_servers, settings, tmp_path
):
    """A pyfunc served online runs its own code in the model server: in the sandbox (bubblewrap,
    STEWARD_SANDBOX=auto where the host allows it) it cannot read the web host's files (a
    root-only key file, the project's code and settings, another version's artifact) nor reach
    the database, the broker or Steward's own port. The same model served without the sandbox
    reads and reaches them: the probe can fail."""
    from runners import sandbox

    if not sandbox.bwrap_usable():
        pytest.skip("bubblewrap is not usable on this host (CI installs it): nothing to confine with")
    other, _model = sklearn_version
    key_file = tmp_path / "signing_key.pem"
    key_file.write_text("-----BEGIN PRIVATE KEY-----")
    key_file.chmod(0o600)
    targets = {
        "files": {
            "the key file": str(key_file),
            "the settings": str(Path(settings.BASE_DIR) / "config" / "settings.py"),
            "another version's artifact": str(next(p for p in Path(other.path).rglob("*") if p.is_file())),
        },
        "ports": {"PostgreSQL": ("127.0.0.1", 5432), "Redis": ("127.0.0.1", 6379)},
        "sleep": f"{os.getpid()}.25",  # names the process the model leaves behind
    }
    version = _pyfunc_version(
        PRYING_MODEL.format(targets=targets), "prying", tmp_path, registered_model, scientist
    )
    url = f"/api/models/{registered_model.name}/versions/{version.version}/predict"
    client = client_for(scientist)

    settings.STEWARD_SANDBOX = "bwrap"
    confined = client.post(url, {"rows": [{"x": 1}]}, format="json")

    assert confined.status_code == 200, confined.content
    assert confined.json()["predictions"] == ["nothing"]
    assert not list(model_servers.rglob("planted"))
    # What the model started ends with its server, though it left the group and ignores SIGTERM.
    assert _processes_running(targets["sleep"], wait_s=0)
    supervisor.stop_all(model_servers)
    assert not _processes_running(targets["sleep"])

    settings.STEWARD_SANDBOX = "none"
    try:
        free = client.post(url, {"rows": [{"x": 1}]}, format="json")
    finally:
        supervisor.stop_all(model_servers)
        for pid in _processes_running(targets["sleep"]):  # unconfined, it outlives the server
            os.kill(pid, signal.SIGKILL)

    assert free.status_code == 200, free.content
    seen = free.json()["predictions"][0]
    assert "read the settings" in seen
    assert "reached PostgreSQL" in seen or "reached Redis" in seen
    assert "wrote beside its config" in seen


def _processes_running(argument: str, wait_s: float = 5.0) -> list[int]:
    """Pids of the live processes whose command line holds ``argument``, waiting up to
    ``wait_s`` for them to be gone (a killed process takes a moment to end)."""
    deadline = time.monotonic() + wait_s
    while True:
        found = []
        for entry in Path("/proc").iterdir():
            with contextlib.suppress(OSError):
                if entry.name.isdigit() and argument.encode() in (entry / "cmdline").read_bytes():
                    state = (entry / "stat").read_bytes().rsplit(b")", 1)[1].split()[0]
                    if state not in (b"Z", b"X"):
                        found.append(int(entry.name))
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.1)
