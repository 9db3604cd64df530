"""Issue 17's templates (tabular, vision, text) on the real data: the bike-sharing hours,
scikit-learn's digits and the SpamAssassin corpus under ``demo_data/``.

Preparation and training run as users run them: the template registered as a code version, a
code run submitted through ``do_submit_code_run`` and run by the worker's ``execute_job`` in its
sandbox, logging to its own job through the live Steward with its job token. The ``predict``
entry points, which read a registered model by its ``models:/`` URI, run here as a subprocess
with a scientist's token (a person's own use of the template, outside a job), with the
environment a code run gives (``runners.workload_env``).
"""

from __future__ import annotations

import http.server
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import ClassVar

import pandas as pd
import pytest
from django.conf import settings

from governance.actions.datasets import do_create_dataset, do_register_dataset_version
from governance.datafiles import read_frame
from governance.models import DatasetVersion, ModelVersion
from runners import codefiles
from runners.code_runs import do_submit_code_run
from runners.code_versions import do_create_code_project, do_register_code_version
from runners.execute import execute_job
from runners.models import Job, JobDatasetRole, JobState, RunMetric
from runners.serving import supervisor
from tests.conftest import BIKE_FEATURES, BIKE_HOURLY, run_job

pytestmark = pytest.mark.django_db(transaction=True)

WORKLOADS = Path(settings.BASE_DIR) / "runners" / "workloads"
SPAM = Path(settings.BASE_DIR) / "demo_data" / "spam-assassin" / "spam-assassin.csv"


def command_of(template: str, entry_point: str, parameters: dict[str, object]) -> str:
    """The entry point's command with its parameters filled in as MLflow Projects does: each
    ``{name}`` replaced by the shell-quoted value, defaults for those not given."""
    folder = WORKLOADS / template
    files = {path.name: path.read_bytes() for path in folder.iterdir() if path.is_file()}
    entry = codefiles.entry_points(files)[entry_point]
    values = {name: spec["default"] for name, spec in entry["parameters"].items()}
    values.update(parameters)
    missing = [name for name, value in values.items() if value is None]
    assert not missing, f"parameters without a value: {missing}"
    return re.sub(r"\{(\w+)\}", lambda m: shlex.quote(str(values[m.group(1)])), entry["command"])


def run_template(
    template: str,
    entry_point: str,
    parameters: dict[str, object],
    *,
    run_id: str,
    env_of: dict[str, str],
    inputs: dict[str, Path],
    output: Path,
    threads: int = 1,
) -> subprocess.CompletedProcess[str]:
    """Run ``template``'s ``entry_point`` as a code run would: /bin/sh, cwd the template's folder,
    a clean environment (no DATABASE_URL, no secret key) naming the inputs, output and run."""
    output.mkdir(parents=True, exist_ok=True)
    env = {
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        "HOME": str(output),
        "PYTHONPATH": str(settings.BASE_DIR),  # the sandbox's read-only bind of runners/, governance/
        "STEWARD_THREADS": str(threads),
        "STEWARD_OUTPUT_DIR": str(output),
        "STEWARD_INPUTS_DIR": str(next(iter(inputs.values())).parent) if inputs else str(output),
        "MLFLOW_TRACKING_URI": env_of["MLFLOW_TRACKING_URI"],
        "MLFLOW_TRACKING_TOKEN": env_of["MLFLOW_TRACKING_TOKEN"],
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
        "MLFLOW_RUN_ID": run_id,
    }
    env |= {f"STEWARD_INPUT_{name.upper()}": str(path) for name, path in inputs.items()}
    return subprocess.run(  # noqa: S603 - the template's own command, as its MLproject says
        ["/bin/sh", "-c", command_of(template, entry_point, parameters)],
        cwd=WORKLOADS / template,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def code_run(
    team,
    user,
    template: str,
    entry_point: str,
    parameters: dict[str, object],
    inputs: dict[str, DatasetVersion],
    outputs: list[str] | None = None,
) -> Job:
    """Register ``template`` as a code version of ``team`` (once per project), run its
    ``entry_point`` as a code run of ``user`` through the worker's plain function, and return the
    job re-read; it must succeed."""
    from runners.models import CodeProject

    project = CodeProject.objects.filter(team=team, name=f"{template}-template").first()
    if project is None:
        project = do_create_code_project(team=team, name=f"{template}-template", actor=user)
    version = project.versions.order_by("-version").first() or do_register_code_version(
        project, template=template, actor=user
    )
    job = do_submit_code_run(
        code_version=version,
        entry_point=entry_point,
        parameters=parameters,
        inputs=inputs,
        outputs={"datasets": outputs or []},
        spec={"limits": {"threads": 1}},
        actor=user,
    )
    state = execute_job(job.pk)
    job.refresh_from_db()
    assert state == "succeeded", f"{job.error}\n{job.log_tail}"
    return job


def dataset_of(team, user, name: str, path: Path) -> DatasetVersion:
    """A version of a new dataset ``name`` holding the file at ``path``."""
    dataset = do_create_dataset(team=team, name=name, actor=user)
    return do_register_dataset_version(
        dataset=dataset, file_path=path, filename=path.name, source=DatasetVersion.Source.UPLOAD, actor=user
    )


@pytest.fixture
def code_runs_reach(steward_server, settings):
    """Code runs' code reaches the live Steward (the sandbox proxies to STEWARD_API_URL)."""
    settings.STEWARD_API_URL = steward_server.url
    return steward_server


@pytest.fixture
def model_servers(settings):
    """Model servers in a short-named folder (a socket path has at most 107 bytes), stopped after."""
    folder = Path(tempfile.mkdtemp(prefix="ms-", dir="/tmp"))
    settings.STEWARD_MODEL_SERVER_DIR = folder
    yield folder
    supervisor.stop_all(folder)
    shutil.rmtree(folder, ignore_errors=True)


def predict_online(client, name: str, rows: list[dict[str, object]]) -> list[object]:
    """``POST /api/models/<name>/versions/1/predict`` with ``rows``; it must answer 200 from
    the version's model server. Returns the predictions."""
    response = client.post(f"/api/models/{name}/versions/1/predict", {"rows": rows}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["served_by"] == "model_server"
    return response.json()["predictions"]


def infer(version: ModelVersion, dataset_version: DatasetVersion, user) -> pd.DataFrame:
    """An inference job of ``version`` on ``dataset_version`` run through the worker's plain
    function; returns its predictions dataset (the rows with a ``prediction`` column)."""
    job = run_job(kind="infer", dataset_version=dataset_version, model_version=version, spec={}, actor=user)
    output = job.output_dataset_version
    return read_frame(output.path, output.format, output.original_filename)


def start_run(client, experiment: str) -> str:
    """A tracked run of the scientist started through the MLflow API (the job the code logs to)."""
    experiment_id = client.create_experiment(experiment)
    return client.create_run(experiment_id).info.run_id


def succeeded(done: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert done.returncode == 0, f"exit {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    return done


def test_tabular_template_trains_registers_and_predicts(
    code_runs_reach, mlflow_env, mlflow_client, tmp_path, team, scientist, dataset_version
):
    epochs = 3
    job = code_run(
        team,
        scientist,
        "tabular",
        "train",
        {
            "target": "cnt",
            "features": ",".join(BIKE_FEATURES),
            "categorical": "season,weathersit",
            "epochs": epochs,
            "model_name": "bike-template",
        },
        {"train": dataset_version},
    )
    assert "1 thread(s)" in job.log_tail

    # The run is the job: parameters, per-epoch metrics with their steps, the evaluation.
    assert job.state == JobState.SUCCEEDED
    assert job.params["target"] == "cnt"
    assert job.params["features"] == ",".join(BIKE_FEATURES)
    assert job.params["threads"] == "1"
    steps = list(
        RunMetric.objects.filter(job=job, key="val_rmse").order_by("step").values_list("step", flat=True)
    )
    assert steps == [1, 2, 3]
    assert list(
        RunMetric.objects.filter(job=job, key="train_loss").values_list("step", flat=True).order_by("step")
    ) == [1, 2, 3]
    # The validation split's error in rentals per hour: the data's own spread is 181.
    assert 0.3 < job.metrics["r2"] < 1.0
    assert 0 < job.metrics["rmse"] < float(pd.read_csv(BIKE_HOURLY)["cnt"].std())

    # The version: Steward's own tabular flavor (no code runs to load it), from this run, with
    # the input schema its artifact holds and the run's input as its training data.
    version = ModelVersion.objects.get(model__name="bike-template")
    assert (version.version, version.flavor, version.executes_code) == (1, "steward_tabular", False)
    assert version.source_job_id == job.pk
    assert version.model.team == team
    assert version.metrics["r2"] == job.metrics["r2"]
    assert version.signature["target"] == "cnt"
    assert version.signature["features"] == BIKE_FEATURES
    assert version.training_dataset_version == dataset_version
    job.refresh_from_db()
    assert job.output_model_version == version

    # Batch inference with that version, by its models:/ URI, in another run.
    predict_run = start_run(mlflow_client, "tabular-template-predict")
    rows = pd.read_csv(BIKE_HOURLY).iloc[:200]
    data = tmp_path / "rows.csv"
    rows.to_csv(data, index=False)
    succeeded(
        run_template(
            "tabular",
            "predict",
            {"model_uri": "models:/bike-template/1"},
            run_id=predict_run,
            env_of=mlflow_env,
            inputs={"data": data},
            output=tmp_path / "predict-out",
        )
    )
    predictions = pd.read_csv(tmp_path / "predict-out" / "datasets" / "predictions.csv")
    assert len(predictions) == 200
    assert list(predictions.columns) == [*rows.columns, "prediction"]
    assert predictions["prediction"].notna().all()
    # Predictions follow the hours' demand: correlated with the truth, not a constant.
    assert predictions["prediction"].corr(predictions["cnt"]) > 0.5


def test_tabular_template_names_a_missing_column(code_runs_reach, team, scientist, dataset_version):
    with pytest.raises(AssertionError, match="features: column\\(s\\) 'no_such_column' not in the dataset"):
        code_run(
            team,
            scientist,
            "tabular",
            "train",
            {"target": "cnt", "features": "temp,no_such_column", "epochs": 1},
            {"train": dataset_version},
        )
    job = Job.objects.get(kind="code")
    assert (job.state, "exited with 2" in job.error) == (JobState.FAILED, True), job.error
    assert not ModelVersion.objects.exists()


def test_threads_come_from_the_environment(tmp_path):
    probe = (
        "from runners import workload_env; import torch; "
        "workload_env.set_torch_threads(); print(torch.get_num_threads())"
    )
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(settings.BASE_DIR), "STEWARD_THREADS": "2"}
    done = subprocess.run(  # noqa: S603
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True, timeout=120
    )
    assert done.stdout.strip() == "2"
    env["STEWARD_THREADS"] = "many"
    refused = subprocess.run(  # noqa: S603
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=False, timeout=120
    )
    assert "STEWARD_THREADS: expected a positive integer, got 'many'" in refused.stderr


class _Misbehaving(http.server.BaseHTTPRequestHandler):
    """What a broken proxy in front of Steward answers (Steward itself answers JSON and never
    redirects): a stand-in for the faults the templates' REST client must name."""

    seen: ClassVar[list[tuple[str, str, bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.seen.append((self.path, self.headers.get("Authorization", ""), body))
        if self.path.endswith("runs/log-batch"):
            self._answer(200, b"{}", "application/json")
        elif self.path.endswith("registered-models/create"):
            self._answer(200, b"<html>a login page</html>", "text/html")
        elif self.path.endswith("model-versions/create"):
            self.send_response(302)
            self.send_header("Location", "http://127.0.0.1:9/steal")
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            self._answer(403, b"<html>nope</html>", "text/html")

    def _answer(self, status: int, body: bytes, kind: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_the_templates_rest_client_names_what_went_wrong(monkeypatch):
    """The tabular template's MLflow REST client (``workload_env.TrackingApi``): a non-JSON
    answer, a redirect (never followed: the token goes to Steward only) and an HTML error are each
    a TrackingError naming it; NaN and infinities are sent as MLflow's JSON strings."""
    from runners import workload_env

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Misbehaving)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        api = workload_env.TrackingApi(f"http://127.0.0.1:{server.server_port}", token="run-token")
        with pytest.raises(workload_env.TrackingError, match="not a JSON object: b'<html>a login page"):
            api.call("POST", "registered-models/create", {"name": "m"})
        with pytest.raises(workload_env.TrackingError, match="HTTP 302"):
            api.call("POST", "model-versions/create", {"name": "m"})
        with pytest.raises(workload_env.TrackingError, match="HTTP 403: b'<html>nope"):
            api.call("POST", "runs/update", {"run_id": "1"})
        monkeypatch.setenv("MLFLOW_RUN_ID", "7")  # a code run's: the job's run
        log = workload_env.BackgroundRunLog(api, interval_s=0.0)
        log.log_metrics({"loss": float("nan"), "big": float("inf"), "ok": 1.5}, step=3)
        log.finish()
    finally:
        server.shutdown()
    assert [path for path, _, _ in _Misbehaving.seen].count("/steal") == 0
    assert {auth for _, auth, _ in _Misbehaving.seen} == {"Bearer run-token"}
    batch = json.loads(next(body for path, _, body in _Misbehaving.seen if path.endswith("log-batch")))
    assert {m["key"]: m["value"] for m in batch["metrics"]} == {"loss": "NaN", "big": "Infinity", "ok": 1.5}
    assert {m["step"] for m in batch["metrics"]} == {3}


def test_the_templates_metrics_are_paced_by_the_workers_live_flush_setting(monkeypatch):
    """``BackgroundRunLog`` sends at most one log-batch per ``STEWARD_LIVE_FLUSH_S`` (the worker's
    setting, given to code runs): steps logged meanwhile go in one request, ended early by
    ``finish``; a value that is not a number of seconds is refused naming the variable."""
    from runners import workload_env

    class Counting(_Misbehaving):
        seen: ClassVar[list[tuple[str, str, bytes]]] = []

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Counting)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        api = workload_env.TrackingApi(f"http://127.0.0.1:{server.server_port}", token="run-token")
        monkeypatch.setenv("MLFLOW_RUN_ID", "7")
        monkeypatch.setenv("STEWARD_LIVE_FLUSH_S", "60")
        log = workload_env.BackgroundRunLog(api)
        assert log.interval_s == 60.0
        for step in range(1, 6):
            log.log_metrics({"loss": 1.0 / step}, step=step)
        log.finish()
        monkeypatch.setenv("STEWARD_LIVE_FLUSH_S", "soon")
        with pytest.raises(workload_env.WorkloadError, match="STEWARD_LIVE_FLUSH_S must be a number"):
            workload_env.BackgroundRunLog(api)
    finally:
        server.shutdown()
    batches = [json.loads(body) for path, _, body in Counting.seen if path.endswith("log-batch")]
    assert [[m["step"] for m in batch["metrics"]] for batch in batches] == [[1, 2, 3, 4, 5]]


def test_the_templates_rest_client_registers_new_and_existing_models(
    mlflow_env, mlflow_client, api_token, scientist, tmp_path
):
    """``TrackingApi.register`` against the live Steward: the first version of a model it has to
    create, the next of one that exists (one request), and a refusal that is not "no such model"
    (a read-only token) raised as it is, not taken for a missing model."""
    from runners import training, workload_env
    from runners.specs import parse_spec

    frame = pd.read_csv(BIKE_HOURLY, nrows=300)
    spec = parse_spec({"target": "cnt", "features": BIKE_FEATURES, "epochs": 1}, list(frame.columns))
    artifact = tmp_path / "model.pt"
    artifact.write_bytes(training.train(frame, spec).artifact)
    run_id = start_run(mlflow_client, "template-client")

    api = workload_env.TrackingApi()
    api.upload(run_id, artifact)
    assert api.register("bike-client", run_id, "model.pt") == "1"
    assert api.register("bike-client", run_id, "model.pt") == "2"
    versions = ModelVersion.objects.filter(model__name="bike-client").order_by("version")
    assert [(v.version, v.flavor, v.source_job_id) for v in versions] == [
        (1, "steward_tabular", int(run_id)),
        (2, "steward_tabular", int(run_id)),
    ]

    read_only = workload_env.TrackingApi(token=api_token(scientist, read_only=True))
    with pytest.raises(workload_env.TrackingError) as refused:
        read_only.register("bike-client-2", run_id, "model.pt")
    assert refused.value.error_code == "PERMISSION_DENIED"
    assert not ModelVersion.objects.filter(model__name="bike-client-2").exists()


def test_vision_template_prepares_trains_registers_serves_and_predicts(
    code_runs_reach, mlflow_env, mlflow_client, tmp_path, team, scientist, client_for, model_servers
):
    # A data preparation run writes scikit-learn's digits as a dataset version of the team.
    prepare = code_run(team, scientist, "vision", "prepare", {}, {}, outputs=["digits"])
    prepared = prepare.datasets.get(role=JobDatasetRole.OUTPUT).dataset_version
    assert (prepared.dataset.name, prepared.row_count) == ("digits", 1797)
    digits_csv = prepared.path
    digits = pd.read_csv(digits_csv)
    assert digits.shape == (1797, 65)
    assert list(digits.columns) == [*(f"p{i}" for i in range(64)), "label"]
    assert sorted(digits["label"].unique()) == list(range(10))

    # A training run reads that version.
    epochs = 4
    job = code_run(
        team,
        scientist,
        "vision",
        "train",
        {"epochs": epochs, "model_name": "digits-cnn"},
        {"train": prepared},
    )
    assert job.state == JobState.SUCCEEDED
    assert job.params["epochs"] == str(epochs)
    history = RunMetric.objects.filter(job=job, key="val_accuracy").order_by("step")
    assert list(history.values_list("step", flat=True)) == [1, 2, 3, 4]
    assert job.metrics["accuracy"] > 0.9
    assert set(job.metrics) >= {f"recall_{digit}" for digit in range(10)}

    # Registered as an MLflow pyfunc (its loading executes code) that takes the pixel columns:
    # the version's signature lists them as its features.
    version = ModelVersion.objects.get(model__name="digits-cnn")
    assert (version.version, version.flavor, version.executes_code) == (1, "mlflow_model", True)
    assert "python_function" in version.flavor_details["flavors"]
    assert version.signature["features"] == [f"p{i}" for i in range(64)]
    assert version.source_job_id == job.pk
    assert version.training_dataset_version == prepared

    # Online prediction: real images as JSON rows of integer intensities, digits back.
    shown = digits.sample(40, random_state=3)
    rows = shown.drop(columns=["label"]).to_dict(orient="records")
    labels = predict_online(client_for(scientist), "digits-cnn", rows)
    assert len(labels) == 40
    assert (pd.Series(labels, index=shown.index) == shown["label"]).mean() > 0.9

    # An inference job on the digits' dataset version: a prediction per image, mostly right.
    predicted = infer(version, prepared, scientist)
    assert len(predicted) == 1797
    assert (predicted["prediction"] == predicted["label"]).mean() > 0.9

    # Batch inference with the registered version on images it did not see in that order.
    sample = digits.sample(300, random_state=7)
    data = tmp_path / "sample.csv"
    sample.to_csv(data, index=False)
    predict_run = start_run(mlflow_client, "vision-predict")
    succeeded(
        run_template(
            "vision",
            "predict",
            {"model_uri": "models:/digits-cnn/1"},
            run_id=predict_run,
            env_of=mlflow_env,
            inputs={"data": data},
            output=tmp_path / "predict",
        )
    )
    predictions = pd.read_csv(tmp_path / "predict" / "datasets" / "predictions.csv")
    assert len(predictions) == 300
    assert predictions["confidence"].between(0, 1).all()
    assert (predictions["prediction"] == predictions["label"]).mean() > 0.9


def test_text_template_trains_registers_serves_and_predicts(
    code_runs_reach, mlflow_env, mlflow_client, tmp_path, team, scientist, client_for, model_servers
):
    corpus = pd.read_csv(SPAM)
    assert corpus.shape == (6046, 2)
    assert corpus["label"].value_counts().to_dict() == {"ham": 4150, "spam": 1896}

    spam = dataset_of(team, scientist, "spam-assassin", SPAM)
    job = code_run(
        team,
        scientist,
        "text",
        "train",
        {"epochs": 3, "model_name": "spam-filter"},
        {"train": spam},
        outputs=["reference"],
    )
    assert job.state == JobState.SUCCEEDED
    assert job.params["classes"] == "ham,spam"
    history = RunMetric.objects.filter(job=job, key="val_accuracy").order_by("step")
    assert list(history.values_list("step", flat=True)) == [1, 2, 3]
    # Spam is caught and ham let through on the held-out fifth of the corpus.
    assert job.metrics["accuracy"] > 0.9
    assert job.metrics["recall_spam"] > 0.8
    assert job.metrics["precision_spam"] > 0.8

    # An MLflow pyfunc taking the text column: the signature's one feature, a string.
    version = ModelVersion.objects.get(model__name="spam-filter")
    assert (version.flavor, version.executes_code, version.source_job_id) == ("mlflow_model", True, job.pk)
    assert "python_function" in version.flavor_details["flavors"]
    assert version.signature == {"features": ["text"], "categorical": ["text"]}

    # Online prediction: raw messages in, tokenized by the template's own code, labels out.
    shown = corpus.iloc[5::60]
    labels = predict_online(client_for(scientist), "spam-filter", shown[["text"]].to_dict(orient="records"))
    assert set(labels) <= {"ham", "spam"}
    assert (pd.Series(labels, index=shown.index) == shown["label"]).mean() > 0.9

    # An inference job on the corpus's dataset version.
    predicted = infer(version, spam, scientist)
    assert len(predicted) == len(corpus)
    assert (predicted["prediction"] == predicted["label"]).mean() > 0.9

    # The reference rows carry the numeric text features a drift monitor compares.
    reference_version = job.datasets.get(role=JobDatasetRole.OUTPUT).dataset_version
    reference = pd.read_csv(reference_version.path)
    assert len(reference) == round(len(corpus) * 0.2)
    assert list(reference.columns) == ["text", "label", "chars", "tokens", "prediction"]
    assert (reference["prediction"] == reference["label"]).mean() == pytest.approx(job.metrics["accuracy"])
    assert (reference["chars"] == reference["text"].fillna("").str.len()).all()

    # Batch inference on unlabelled messages.
    messages = corpus.drop(columns=["label"]).iloc[::20]
    data = tmp_path / "messages.csv"
    messages.to_csv(data, index=False)
    predict_run = start_run(mlflow_client, "text-predict")
    succeeded(
        run_template(
            "text",
            "predict",
            {"model_uri": "models:/spam-filter/1"},
            run_id=predict_run,
            env_of=mlflow_env,
            inputs={"data": data},
            output=tmp_path / "predict",
        )
    )
    predictions = pd.read_csv(tmp_path / "predict" / "datasets" / "predictions.csv")
    assert list(predictions.columns) == ["text", "chars", "tokens", "prediction", "confidence"]
    assert len(predictions) == len(messages)
    truth = corpus["label"].iloc[::20].to_numpy()
    assert (predictions["prediction"].to_numpy() == truth).mean() > 0.9
