"""The tracking side's answers to the hostile test of issue 9: interrupted and chunked uploads,
non-ASCII digits and infinite numbers, files used as directories, MLflow's other URL spaces,
contradictory batches, finalized logged models and the ``steward.team`` tag on runs."""

from __future__ import annotations

import socket
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from django.conf import settings
from mlflow.exceptions import MlflowException

from runners.models import Job, RunArtifact
from tests.mlflow.artifact_helpers import run_file, run_path

pytestmark = pytest.mark.django_db(transaction=True)

ARABIC_INDIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")


def call(steward_server, token: str, method: str, endpoint: str, **kwargs) -> requests.Response:
    return requests.request(
        method,
        f"{steward_server.url}{endpoint}",
        headers={"Authorization": f"Bearer {token}", **kwargs.pop("headers", {})},
        timeout=30,
        **kwargs,
    )


@pytest.fixture
def run(mlflow_client):
    experiment_id = mlflow_client.create_experiment("hostile")
    return mlflow_client.create_run(experiment_id, run_name="hostile")


@pytest.fixture
def token(mlflow_env) -> str:
    return mlflow_env["MLFLOW_TRACKING_TOKEN"]


def artifact_url(run) -> str:
    info = run.info
    return f"/api/2.0/mlflow-artifacts/artifacts/experiments/{info.experiment_id}/{info.run_id}/artifacts"


def raw_put(steward_server, token: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
    """Send a PUT by hand, then close our side of the socket (the client went away), and read
    the answer: (status, raw response)."""
    url = urlsplit(steward_server.url)
    with socket.create_connection((url.hostname, url.port), timeout=30) as sock:
        head = [f"PUT {path} HTTP/1.1", f"Host: {url.netloc}", f"Authorization: Bearer {token}"]
        head += [f"{name}: {value}" for name, value in headers.items()]
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return int(answer.split(b" ", 2)[1]), answer


def test_an_interrupted_upload_is_refused_and_keeps_the_stored_file(steward_server, token, run):
    job = Job.objects.get(pk=int(run.info.run_id))
    good = call(steward_server, token, "PUT", f"{artifact_url(run)}/model.bin", data=b"good" * 100)
    assert good.status_code == 200
    status, answer = raw_put(
        steward_server, token, f"{artifact_url(run)}/model.bin", {"Content-Length": "100000"}, b"x" * 1000
    )
    assert status == 400, answer
    assert b"ended after 1000 of 100000 bytes" in answer
    assert run_file(job, "model.bin") == b"good" * 100
    assert list(RunArtifact.objects.values_list("path", flat=True)) == [run_path(job, "model.bin")]
    # No scratch file left behind on the local copies' disk.
    assert not list(Path(settings.STEWARD_ARTIFACT_CACHE).glob(".incoming-*"))


def test_an_upload_without_content_length_is_411(steward_server, token, run):
    job = Job.objects.get(pk=int(run.info.run_id))
    chunked = call(steward_server, token, "PUT", f"{artifact_url(run)}/c.bin", data=iter([b"abc", b"def"]))
    assert chunked.status_code == 411, chunked.text
    assert chunked.json()["error_code"] == "LENGTH_REQUIRED"
    assert run_file(job, "c.bin") is None


def test_a_file_cannot_be_a_directory_of_another_upload(steward_server, token, run):
    assert call(steward_server, token, "PUT", f"{artifact_url(run)}/a.txt", data=b"a").status_code == 200
    nested = call(steward_server, token, "PUT", f"{artifact_url(run)}/a.txt/sub", data=b"b")
    assert nested.status_code == 400, nested.text
    assert nested.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert "'a.txt' is a file" in nested.json()["message"]


def test_non_ascii_digits_name_nothing(steward_server, token, run):
    experiment_id = run.info.experiment_id
    for endpoint, params in (
        ("/api/2.0/mlflow/experiments/get", {"experiment_id": "¹"}),
        ("/api/2.0/mlflow/experiments/get", {"experiment_id": experiment_id.translate(ARABIC_INDIC)}),
        ("/api/2.0/mlflow-artifacts/artifacts/steward/model-versions/²/x", None),
        (f"/api/2.0/mlflow-artifacts/artifacts/experiments/¹/{run.info.run_id}/artifacts/f", None),
    ):
        answer = call(steward_server, token, "GET", endpoint, params=params)
        assert answer.status_code == 404, (endpoint, params, answer.text)
        assert answer.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    for endpoint, body in (
        ("runs/search", {"experiment_ids": ["¹"]}),
        ("experiments/delete", {"experiment_id": "²"}),
        ("runs/create", {"experiment_id": experiment_id.translate(ARABIC_INDIC)}),
    ):
        answer = call(steward_server, token, "POST", f"/api/2.0/mlflow/{endpoint}", json=body)
        assert answer.status_code == 404, (endpoint, answer.text)
    arabic_max = call(
        steward_server,
        token,
        "GET",
        "/api/2.0/mlflow/experiments/search",
        params={"max_results": "10".translate(ARABIC_INDIC)},
    )
    assert arabic_max.status_code == 400, arabic_max.text


@pytest.mark.parametrize("number", ["1e400", "-1e400", "1e30"])
def test_infinite_and_huge_numbers_are_refused(steward_server, token, run, number):
    run_id, experiment_id = run.info.run_id, run.info.experiment_id
    for endpoint, body in (
        (
            "runs/log-metric",
            f'{{"run_id": "{run_id}", "key": "m", "value": 1, "timestamp": {number}, "step": 0}}',
        ),
        (
            "runs/log-metric",
            f'{{"run_id": "{run_id}", "key": "m", "value": 1, "timestamp": 1, "step": {number}}}',
        ),
        (
            "runs/log-batch",
            f'{{"run_id": "{run_id}", "metrics": '
            f'[{{"key": "m", "value": 1, "timestamp": {number}, "step": 0}}]}}',
        ),
        ("runs/create", f'{{"experiment_id": "{experiment_id}", "start_time": {number}}}'),
        ("runs/update", f'{{"run_id": "{run_id}", "end_time": {number}}}'),
        ("runs/search", f'{{"experiment_ids": ["{experiment_id}"], "max_results": {number}}}'),
        ("experiments/search", f'{{"max_results": {number}}}'),
        ("logged-models/search", f'{{"experiment_ids": ["{experiment_id}"], "max_results": {number}}}'),
    ):
        answer = call(
            steward_server,
            token,
            "POST",
            f"/api/2.0/mlflow/{endpoint}",
            data=body,
            headers={"Content-Type": "application/json"},
        )
        assert answer.status_code == 400, (endpoint, answer.text)
        assert answer.json()["error_code"] == "INVALID_PARAMETER_VALUE"


def test_other_mlflow_api_spaces_answer_json_endpoint_not_found(steward_server, token):
    for endpoint in (
        "/api/3.0/mlflow/traces/get",
        "/api/3.0/mlflow",
        "/ajax-api/2.0/mlflow/runs/get",
        "/ajax-api/3.0/mlflow/logged-models/search",
    ):
        answer = call(steward_server, token, "GET", endpoint)
        assert answer.status_code == 404, endpoint
        assert answer.json()["error_code"] == "ENDPOINT_NOT_FOUND"


def test_a_batch_cannot_give_a_parameter_two_values(mlflow_client, run):
    from mlflow.entities import Param

    run_id = run.info.run_id
    with pytest.raises(MlflowException) as refused:
        mlflow_client.log_batch(run_id, params=[Param("lr", "0.1"), Param("lr", "0.2")])
    assert refused.value.error_code == "INVALID_PARAMETER_VALUE"
    assert "'lr' is given twice" in refused.value.message
    assert mlflow_client.get_run(run_id).data.params == {}
    mlflow_client.log_batch(run_id, params=[Param("lr", "0.1"), Param("lr", "0.1")])
    assert mlflow_client.get_run(run_id).data.params == {"lr": "0.1"}


def test_a_finalized_logged_models_artifacts_are_read_only(steward_server, token, mlflow_client, run):
    from mlflow.entities import LoggedModelStatus

    model = mlflow_client.create_logged_model(
        run.info.experiment_id, name="frozen", source_run_id=run.info.run_id
    )
    url = f"/api/2.0/mlflow-artifacts/artifacts/{model.artifact_location.removeprefix('mlflow-artifacts:/')}"
    assert call(steward_server, token, "PUT", f"{url}/MLmodel", data=b"flavors: {}").status_code == 200
    mlflow_client.finalize_logged_model(model.model_id, LoggedModelStatus.READY)
    answer = call(steward_server, token, "PUT", f"{url}/MLmodel", data=b"tampered")
    assert answer.status_code == 400, answer.text
    assert "finalized: its artifacts are read-only" in answer.json()["message"]
    assert call(steward_server, token, "GET", f"{url}/MLmodel").content == b"flavors: {}"


def test_a_run_carries_only_its_own_teams_steward_team_tag(mlflow_client, run, team, other_team):
    experiment_id = run.info.experiment_id
    with pytest.raises(MlflowException) as refused:
        mlflow_client.create_run(experiment_id, tags={"steward.team": other_team.slug})
    assert refused.value.error_code == "INVALID_PARAMETER_VALUE"
    assert other_team.slug in refused.value.message
    with pytest.raises(MlflowException):
        mlflow_client.set_tag(run.info.run_id, "steward.team", other_team.slug)
    own = mlflow_client.create_run(experiment_id, tags={"steward.team": team.slug})
    assert own.data.tags["steward.team"] == team.slug
    assert Job.objects.filter(tags__has_key="steward.team").count() == 1
