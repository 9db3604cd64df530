"""Steward's own runs emit OpenLineage RunEvents (issue 10, "Emit").

The real ``openlineage-python`` client sends them, configured by its standard environment, to a
real HTTP receiver started by the test (a threaded ``http.server``); a real Celery worker (a
thread, solo pool) on the configured broker runs the jobs and the send task. Each received event
is checked against ``RUN_EVENT_SCHEMA`` below: the requirements of the OpenLineage 2-0-2
RunEvent and of the facets Steward sends (spec/OpenLineage.json and spec/facets/*.json of the
OpenLineage repository), written out here because the client ships no JSON schema and the tests
fetch nothing from the network.
"""

from __future__ import annotations

import contextlib
import datetime
import gzip
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jsonschema
import pytest
from celery.contrib.testing.worker import start_worker
from django.conf import settings

import config.celery
import lineage.openlineage.tasks  # noqa: F401 - registers the send task in this process's worker
from governance.models import DatasetVersion, ModelVersion
from lineage.models import OpenLineageEmitFailure
from lineage.openlineage import emit
from monitoring.actions.checks import do_request_drift_check
from monitoring.models import DriftCheck
from runners.models import Job, JobState
from tests.mlflow.conftest import api_token, mlflow_client, mlflow_env, steward_server  # noqa: F401

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

TOKEN = "scrape-me-0123456789"
WAIT_S = 240

_FACET = {"type": "object", "required": ["_producer", "_schemaURL"]}
_URI = {"type": "string", "pattern": r"^[a-zA-Z][a-zA-Z0-9+.-]*:"}


def _facet(required: list[str], **properties: Any) -> dict:
    return {
        "allOf": [_FACET, {"type": "object", "required": required, "properties": properties}],
    }


_DATASET = {
    "type": "object",
    "required": ["namespace", "name"],
    "properties": {
        "namespace": {"type": "string", "minLength": 1},
        "name": {"type": "string", "minLength": 1},
        "facets": {
            "type": "object",
            "additionalProperties": _FACET,
            "properties": {
                "symlinks": _facet(
                    ["identifiers"],
                    identifiers={
                        "type": "array",
                        "items": {"type": "object", "required": ["namespace", "name", "type"]},
                    },
                ),
                "schema": _facet(
                    ["fields"],
                    fields={"type": "array", "items": {"type": "object", "required": ["name"]}},
                ),
                "version": _facet(["datasetVersion"], datasetVersion={"type": "string"}),
            },
        },
    },
}
RUN_EVENT_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["eventTime", "producer", "schemaURL", "run", "job"],
    "properties": {
        "eventType": {"enum": ["START", "RUNNING", "COMPLETE", "ABORT", "FAIL", "OTHER"]},
        "eventTime": {"type": "string", "format": "date-time"},
        "producer": _URI,
        "schemaURL": _URI,
        "run": {
            "type": "object",
            "required": ["runId"],
            "properties": {
                "runId": {"type": "string", "format": "uuid"},
                "facets": {
                    "type": "object",
                    "additionalProperties": _FACET,
                    "properties": {
                        "errorMessage": _facet(["message", "programmingLanguage"]),
                        "nominalTime": _facet(["nominalStartTime"]),
                        "parent": _facet(["run", "job"]),
                    },
                },
            },
        },
        "job": {
            "type": "object",
            "required": ["namespace", "name"],
            "properties": {
                "namespace": {"type": "string"},
                "name": {"type": "string"},
                "facets": {
                    "type": "object",
                    "additionalProperties": _FACET,
                    "properties": {"jobType": _facet(["processingType", "integration"])},
                },
            },
        },
        "inputs": {"type": "array", "items": _DATASET},
        "outputs": {"type": "array", "items": _DATASET},
    },
}


def _valid(event: dict) -> dict:
    """``event`` after checking it against ``RUN_EVENT_SCHEMA`` (formats included: the runId a
    UUID; the time ISO 8601 with an offset, as the spec's date-time)."""
    jsonschema.validate(event, RUN_EVENT_SCHEMA, format_checker=jsonschema.FormatChecker())
    assert datetime.datetime.fromisoformat(event["eventTime"]).utcoffset() is not None
    uuid.UUID(event["run"]["runId"])
    return event


class Receiver:
    """An OpenLineage HTTP consumer on 127.0.0.1: answers ``fail_first`` POSTs with 503, then
    keeps each event (gzip bodies inflated) and answers 200."""

    def __init__(self, fail_first: int = 0):
        self.fail_first = fail_first
        self.posts = 0
        self.paths: list[str] = []
        self.events: list[dict] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if body[:2] == b"\x1f\x8b":
                    body = gzip.decompress(body)
                with receiver.lock:
                    receiver.posts += 1
                    refused = receiver.posts <= receiver.fail_first
                    if not refused:
                        receiver.paths.append(self.path)
                        receiver.events.append(json.loads(body))
                self.send_response(503 if refused else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def wait_for(self, count: int) -> list[dict]:
        deadline = time.monotonic() + WAIT_S
        while True:
            with self.lock:
                if len(self.events) >= count:
                    return list(self.events)
            assert time.monotonic() < deadline, f"received {len(self.events)} of {count} events"
            time.sleep(0.1)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    found.thread.start()
    yield found
    found.server.shutdown()
    found.server.server_close()


@pytest.fixture
def openlineage_env() -> Iterator[None]:
    """No OPENLINEAGE* variable but the test's own; the process's are put back after (the client
    adds aliases of OPENLINEAGE_URL to the environment when it is built)."""
    saved = {k: v for k, v in os.environ.items() if k.startswith("OPENLINEAGE")}
    for name in saved:
        del os.environ[name]
    yield
    for name in [k for k in os.environ if k.startswith("OPENLINEAGE")]:
        del os.environ[name]
    os.environ.update(saved)


# A queue of the tests' own (as tests/test_lifecycle.py): a development worker consuming the
# default queue of the same broker must not take these tasks.
QUEUE = "steward-tests-openlineage"


@contextlib.contextmanager
def _worker(settings, before: Callable[[], None] = lambda: None) -> Iterator[None]:
    """A real Celery worker on the tests' queue, which every task (jobs of resource class cpu,
    drift checks, the OpenLineage send task) is routed to; one task at a time. ``before`` runs
    once the routes are set, before the worker starts."""
    app = config.celery.app
    settings.STEWARD_RESOURCE_CLASSES = {"cpu": {"queue": QUEUE, "gpus": 0, "price_per_hour": 0.10}}
    saved = app.conf.task_routes
    app.conf.update(task_routes={"*": {"queue": QUEUE}})
    try:
        with app.connection_for_write() as conn:
            conn.default_channel.queue_declare(QUEUE)
            conn.default_channel.queue_purge(QUEUE)
        before()
        with start_worker(app, pool="solo", perform_ping_check=False, queues=[QUEUE], shutdown_timeout=60):
            yield
    finally:
        app.conf.update(task_routes=saved)


@pytest.fixture
def worker(openlineage_env, settings) -> Iterator[None]:
    """``_worker`` for the whole test. A fixture that runs a job itself (``model_version``) comes
    before it, or the worker would take that job too."""
    settings.STEWARD_OPENLINEAGE_RETRY_BACKOFF_S = 0.2
    with _worker(settings):
        yield


def _wait_job(job_id: int) -> Job:
    deadline = time.monotonic() + WAIT_S
    while Job.objects.get(pk=job_id).state in (JobState.QUEUED, JobState.RUNNING):
        assert time.monotonic() < deadline, f"job {job_id} did not finish within {WAIT_S} s"
        time.sleep(0.2)
    return Job.objects.get(pk=job_id)


def _submit_training(client, dataset_version, registered_model, spec) -> int:
    body = {
        "kind": "train",
        "dataset_version": dataset_version.pk,
        "registered_model": registered_model.pk,
        "spec": spec,
    }
    response = client.post("/api/jobs/", body, format="json")
    assert response.status_code == 201, response.content
    return response.json()["id"]


def _names(datasets: list[dict]) -> list[str]:
    return [dataset["name"] for dataset in datasets]


def test_a_training_job_emits_start_then_complete_with_its_input_and_the_model_version(
    worker, receiver, client_for, scientist, team, dataset_version, registered_model, training_spec
):
    os.environ["OPENLINEAGE_URL"] = receiver.url

    job_id = _submit_training(client_for(scientist), dataset_version, registered_model, training_spec)

    job = _wait_job(job_id)
    assert job.state == JobState.SUCCEEDED
    start, complete = (_valid(event) for event in receiver.wait_for(2))
    assert receiver.paths == ["/api/v1/lineage", "/api/v1/lineage"]
    assert (start["eventType"], complete["eventType"]) == ("START", "COMPLETE")
    expected_run = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{settings.STEWARD_BASE_URL}/jobs/{job_id}"))
    assert start["run"]["runId"] == complete["run"]["runId"] == expected_run
    for event in (start, complete):
        assert event["job"]["namespace"] == "steward"
        assert event["job"]["name"] == f"{team.slug}.train.bike-demand"
        assert event["job"]["facets"]["jobType"]["jobType"] == "TRAINING"
        assert event["producer"] == settings.STEWARD_BASE_URL
        assert _names(event["inputs"]) == [f"datasets/{team.slug}/{dataset_version.dataset.name}@v1"]
        assert event["inputs"][0]["namespace"] == "steward://127.0.0.1:8000"
        assert event["run"]["facets"]["nominalTime"]["nominalStartTime"] == job.created_at.isoformat()
        assert event["run"]["facets"]["steward_run"]["url"] == f"{settings.STEWARD_BASE_URL}/jobs/{job_id}/"
    assert start["eventTime"] == job.started_at.isoformat()
    assert complete["eventTime"] == job.finished_at.isoformat()
    assert start["outputs"] == []
    version = ModelVersion.objects.get(source_job_id=job_id)
    assert _names(complete["outputs"]) == [f"models/{team.slug}/bike-demand@v1"]
    output = complete["outputs"][0]["facets"]
    assert output["symlinks"]["identifiers"] == [
        {"namespace": settings.STEWARD_BASE_URL, "name": version.get_absolute_url(), "type": "STEWARD_URL"}
    ]
    assert output["version"]["datasetVersion"] == "1"
    assert [field["name"] for field in output["schema"]["fields"]] == training_spec["features"]
    columns = complete["inputs"][0]["facets"]["schema"]["fields"]
    assert [(c["name"], c["type"]) for c in columns] == [
        (c["name"], c["dtype"]) for c in DatasetVersion.objects.get(pk=dataset_version.pk).schema
    ]
    assert "errorMessage" not in complete["run"]["facets"]


def test_an_inference_job_emits_the_model_and_data_it_read_and_the_predictions_it_wrote(
    model_version, worker, receiver, client_for, scientist, team, dataset_version
):
    os.environ["OPENLINEAGE_URL"] = receiver.url
    body = {"kind": "infer", "dataset_version": dataset_version.pk, "model_version": model_version.pk}

    response = client_for(scientist).post("/api/jobs/", body, format="json")

    assert response.status_code == 201, response.content
    job = _wait_job(response.json()["id"])
    assert job.state == JobState.SUCCEEDED
    start, complete = (_valid(event) for event in receiver.wait_for(2))
    inputs = [f"models/{team.slug}/bike-demand@v1", f"datasets/{team.slug}/{dataset_version.dataset.name}@v1"]
    assert (start["eventType"], _names(start["inputs"]), start["outputs"]) == ("START", inputs, [])
    predictions = job.output_dataset_version
    assert (complete["eventType"], _names(complete["inputs"]), _names(complete["outputs"])) == (
        "COMPLETE",
        inputs,
        [f"datasets/{team.slug}/{predictions.dataset.name}@v{predictions.version}"],
    )
    assert complete["job"]["name"] == f"{team.slug}.infer.bike-demand"
    assert "prediction" in [f["name"] for f in complete["outputs"][0]["facets"]["schema"]["fields"]]


def test_a_failing_job_emits_fail_with_its_error_message(
    worker, receiver, client_for, scientist, dataset_version, registered_model, training_spec
):
    os.environ["OPENLINEAGE_URL"] = receiver.url
    spec = {**training_spec, "where": {"season": [9]}}  # no row has season 9

    job = _wait_job(_submit_training(client_for(scientist), dataset_version, registered_model, spec))

    assert job.state == JobState.FAILED
    start, fail = (_valid(event) for event in receiver.wait_for(2))
    assert (start["eventType"], fail["eventType"]) == ("START", "FAIL")
    assert fail["run"]["facets"]["errorMessage"]["message"] == job.error
    assert fail["run"]["facets"]["errorMessage"]["programmingLanguage"] == "python"
    assert fail["outputs"] == []


def test_a_job_cancelled_before_it_started_emits_abort(
    openlineage_env,
    receiver,
    client_for,
    scientist,
    dataset_version,
    registered_model,
    training_spec,
    settings,
):
    os.environ["OPENLINEAGE_URL"] = receiver.url
    client = client_for(scientist)
    submitted = []

    def submit_and_cancel() -> None:
        submitted.append(_submit_training(client, dataset_version, registered_model, training_spec))
        assert client.post(f"/api/jobs/{submitted[0]}/cancel/").status_code == 200

    with _worker(settings, before=submit_and_cancel):  # the job's task, then the ABORT's send
        (abort,) = (_valid(event) for event in receiver.wait_for(1))
    job_id = submitted[0]
    assert Job.objects.get(pk=job_id).state == JobState.CANCELLED
    assert (abort["eventType"], abort["run"]["runId"]) == ("ABORT", emit.run_id(f"jobs/{job_id}"))


def test_a_data_preparation_code_run_emits_its_input_and_the_dataset_version_it_wrote(
    worker, receiver, team, scientist, dataset_version
):
    from runners.code_runs import do_submit_code_run
    from tests.runners.code_fixtures import make_code_version
    from tests.runners.test_code_runs import PREPARE

    os.environ["OPENLINEAGE_URL"] = receiver.url
    code = make_code_version(team, scientist, PREPARE)

    job = do_submit_code_run(
        code_version=code,
        entry_point="prepare",
        parameters={"hours": "hours"},
        inputs={"hours": dataset_version},
        outputs={"datasets": ["bike-daily"]},
        actor=scientist,
    )

    assert _wait_job(job.pk).state == JobState.SUCCEEDED, Job.objects.get(pk=job.pk).error
    start, complete = (_valid(event) for event in receiver.wait_for(2))
    source = f"datasets/{team.slug}/{dataset_version.dataset.name}@v1"
    assert [(e["eventType"], _names(e["inputs"]), _names(e["outputs"])) for e in (start, complete)] == [
        ("START", [source], []),
        ("COMPLETE", [source], [f"datasets/{team.slug}/bike-daily@v1"]),
    ]
    assert complete["job"]["name"] == f"{team.slug}.code.bike-code.prepare"  # project.entry point
    assert complete["job"]["facets"]["jobType"]["jobType"] == "CODE"
    fields = complete["outputs"][0]["facets"]["schema"]["fields"]
    assert [field["name"] for field in fields] == ["dteday", "cnt"]


def test_an_mlflow_clients_tracked_run_emits_start_and_complete(
    worker,
    receiver,
    mlflow_client,  # noqa: F811 - the fixture imported above
    team,
):
    os.environ["OPENLINEAGE_URL"] = receiver.url
    experiment_id = mlflow_client.create_experiment("bike-tuning")

    run = mlflow_client.create_run(experiment_id, run_name="lr-0.01")
    mlflow_client.set_terminated(run.info.run_id, "FINISHED")

    start, complete = (_valid(event) for event in receiver.wait_for(2))
    job = Job.objects.get(kind="tracked")
    assert [(e["eventType"], e["run"]["runId"], e["job"]["name"]) for e in (start, complete)] == [
        ("START", emit.run_id(f"jobs/{job.pk}"), f"{team.slug}.mlflow.bike-tuning"),
        ("COMPLETE", emit.run_id(f"jobs/{job.pk}"), f"{team.slug}.mlflow.bike-tuning"),
    ]
    assert complete["job"]["facets"]["jobType"]["jobType"] == "TRACKED"
    assert complete["eventTime"] == job.finished_at.isoformat()


def test_a_drift_check_emits_start_and_complete_with_the_versions_it_compared(
    model_version, worker, receiver, team, scientist, dataset_version
):
    os.environ["OPENLINEAGE_URL"] = receiver.url

    check = do_request_drift_check(
        model_version=model_version, current_dataset_version=dataset_version, actor=scientist
    )

    start, complete = (_valid(event) for event in receiver.wait_for(2))
    assert DriftCheck.objects.get(pk=check.pk).state == "succeeded"
    data = f"datasets/{team.slug}/{dataset_version.dataset.name}@v1"
    expected = [f"models/{team.slug}/bike-demand@v1", data, data]
    assert [(e["eventType"], _names(e["inputs"]), e["outputs"]) for e in (start, complete)] == [
        ("START", expected, []),
        ("COMPLETE", expected, []),
    ]
    assert complete["job"]["name"] == f"{team.slug}.drift_check.bike-demand"
    assert complete["job"]["facets"]["jobType"]["jobType"] == "DRIFT_CHECK"
    assert complete["run"]["runId"] == emit.run_id(f"drift-checks/{check.pk}")


def test_nothing_is_emitted_nor_described_when_openlineage_is_not_configured(
    worker, receiver, client_for, scientist, dataset_version, registered_model, training_spec, settings
):
    def describe() -> emit.RunTransition:
        raise AssertionError("described although OpenLineage is not configured")

    from django.db import transaction
    from django.test import TestCase

    with TestCase.captureOnCommitCallbacks() as callbacks, transaction.atomic():
        emit.announce(describe)
    assert callbacks == []

    job = _wait_job(_submit_training(client_for(scientist), dataset_version, registered_model, training_spec))

    assert job.state == JobState.SUCCEEDED
    os.environ["OPENLINEAGE_DISABLED"] = "true"
    os.environ["OPENLINEAGE_URL"] = receiver.url  # disabled wins over a configured URL
    with TestCase.captureOnCommitCallbacks() as callbacks, transaction.atomic():
        emit.announce(describe)
    assert callbacks == []
    assert (receiver.posts, OpenLineageEmitFailure.objects.count()) == (0, 0)


def _configure_by_file(config_file, url: str) -> None:
    """Configure the client by an OPENLINEAGE_CONFIG file (gzip bodies), its own inline HTTP
    retries off: the retries seen are the Celery task's."""
    config_file.write_text(
        f"transport:\n  type: http\n  url: {url}\n  timeout: 2\n  compression: gzip\n  retry:\n    total: 0\n"
    )
    os.environ["OPENLINEAGE_CONFIG"] = str(config_file)


def test_a_receiver_answering_503_is_retried_and_the_job_still_succeeds(
    worker, client_for, scientist, dataset_version, registered_model, training_spec, tmp_path
):
    flaky = Receiver(fail_first=2)
    flaky.thread.start()
    try:
        _configure_by_file(tmp_path / "openlineage.yml", flaky.url)

        job = _wait_job(
            _submit_training(client_for(scientist), dataset_version, registered_model, training_spec)
        )

        assert job.state == JobState.SUCCEEDED
        events = [_valid(event) for event in flaky.wait_for(2)]
    finally:
        flaky.server.shutdown()
        flaky.server.server_close()
    assert sorted(event["eventType"] for event in events) == ["COMPLETE", "START"]
    assert flaky.posts == 4  # two refused sends, retried by the task, then each event once
    assert OpenLineageEmitFailure.objects.count() == 0


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_receiver_that_stays_down_is_retried_then_logged_and_counted_and_the_job_succeeds(
    worker,
    client,
    client_for,
    scientist,
    dataset_version,
    registered_model,
    training_spec,
    tmp_path,
    settings,
):
    settings.STEWARD_OPENLINEAGE_MAX_RETRIES = 2
    settings.STEWARD_METRICS_TOKEN = TOKEN
    _configure_by_file(tmp_path / "openlineage.yml", f"http://127.0.0.1:{_closed_port()}")

    job = _wait_job(_submit_training(client_for(scientist), dataset_version, registered_model, training_spec))

    assert (job.state, job.error) == (JobState.SUCCEEDED, "")
    deadline = time.monotonic() + WAIT_S
    while OpenLineageEmitFailure.objects.count() < 2:
        assert time.monotonic() < deadline, "the failed sends were not recorded"
        time.sleep(0.1)
    failures = list(
        OpenLineageEmitFailure.objects.order_by("event_type").values_list("event_type", "run_id", "error")
    )
    assert [(kind, str(run)) for kind, run, _ in failures] == [
        ("COMPLETE", emit.run_id(f"jobs/{job.pk}")),
        ("START", emit.run_id(f"jobs/{job.pk}")),
    ]
    assert all(
        error.startswith("ConnectionError") and error.endswith("(after 2 retries)") for *_, error in failures
    )
    scraped = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").content.decode()
    lines = [
        line for line in scraped.splitlines() if line.startswith("steward_openlineage_emit_failures_total")
    ]
    assert lines == [
        'steward_openlineage_emit_failures_total{event_type="START"} 1.0',
        'steward_openlineage_emit_failures_total{event_type="COMPLETE"} 1.0',
        'steward_openlineage_emit_failures_total{event_type="FAIL"} 0.0',
        'steward_openlineage_emit_failures_total{event_type="ABORT"} 0.0',
    ]
