"""Issue 17's journey, end to end through the public doors, on the real bike data: a data
scientist uploads their own training code, runs it, follows its log and metric curve, gets a
model version with its whole lineage, serves it with a canary and monitors what it served.

Everything a user touches goes through the API; the worker's part is its plain function
``execute_job`` (the compute runs in its sandbox and logs to the live Steward with its job
token, exactly as under Celery). The user's code is scikit-learn's, logged with the real
``mlflow`` client: its version executes code when loaded, so it is served by a model server.
"""

from __future__ import annotations

import io
import json
import textwrap
import zipfile

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from governance.actions.aliases import do_set_alias
from governance.models import ModelVersion
from monitoring.execute import execute_drift_check
from monitoring.models import CheckState, DriftCheck
from runners.execute import execute_job
from runners.models import Prediction
from tests.conftest import BIKE_FEATURES

pytestmark = pytest.mark.django_db(transaction=True)

MLPROJECT = """
    name: bike-sgd
    entry_points:
      main:
        parameters:
          data: path
          epochs: {type: int, default: 5}
          alpha: {type: float, default: 0.0001}
          model_name: {type: string, default: bike-sgd}
        command: "python train.py --data {data} --epochs {epochs} --alpha {alpha} --model-name {model_name}"
"""

TRAIN = f"""
    import argparse

    import mlflow
    import mlflow.sklearn
    import numpy as np
    import pandas as pd
    from mlflow.models import infer_signature
    from sklearn.linear_model import SGDRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    FEATURES = {BIKE_FEATURES!r}

    parser = argparse.ArgumentParser()
    parser.add_argument("--data")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--alpha", type=float)
    parser.add_argument("--model-name")
    args = parser.parse_args()

    frame = pd.read_csv(args.data)
    train = frame.sample(frac=0.8, random_state=0)
    validation = frame.drop(train.index)
    scaler = StandardScaler().fit(train[FEATURES])
    model = SGDRegressor(alpha=args.alpha, random_state=0)
    with mlflow.start_run():
        mlflow.log_params({{"epochs": args.epochs, "alpha": args.alpha}})
        for epoch in range(1, args.epochs + 1):
            model.partial_fit(scaler.transform(train[FEATURES]), train["cnt"])
            predicted = model.predict(scaler.transform(validation[FEATURES]))
            rmse = float(np.sqrt(np.mean((predicted - validation["cnt"]) ** 2)))
            mlflow.log_metric("val_rmse", rmse, step=epoch)
            print(f"epoch {{epoch}} val_rmse {{rmse:.2f}}", flush=True)
        pipeline = make_pipeline(scaler, model)
        signature = infer_signature(validation[FEATURES], pipeline.predict(validation[FEATURES]))
        mlflow.sklearn.log_model(
            pipeline,
            name="model",
            signature=signature,
            serialization_format="cloudpickle",
            registered_model_name=args.model_name,
        )
"""


def _archive() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("bike-sgd/MLproject", textwrap.dedent(MLPROJECT).lstrip())
        archive.writestr("bike-sgd/train.py", textwrap.dedent(TRAIN).lstrip())
    return buffer.getvalue()


def _run(client, code_version: int, dataset_version: int, alpha: float) -> int:
    """Submit a run of the user's code through the API and run it as a worker does."""
    submitted = client.post(
        "/api/jobs/",
        {
            "kind": "code",
            "code_version": code_version,
            "entry_point": "main",
            "parameters": {"data": "train", "epochs": 5, "alpha": alpha},
            "inputs": {"train": dataset_version},
            "experiment_name": "bike demand",
        },
        format="json",
    )
    assert submitted.status_code == 201, submitted.content
    job_id = submitted.json()["id"]
    assert execute_job(job_id) == "succeeded", client.get(f"/api/jobs/{job_id}/").json()["error"]
    return job_id


def test_own_code_from_upload_to_a_served_canary_and_a_monitor(
    live_server, settings, team, scientist, client_for, dataset_version, bike_frame
):
    settings.STEWARD_API_URL = live_server.url  # the sandbox's proxy leads the code there
    client = client_for(scientist)

    # 1. Upload the code.
    project = client.post("/api/code-projects/", {"team": team.pk, "name": "bike-sgd"}, format="json")
    assert project.status_code == 201, project.content
    uploaded = client.post(
        "/api/code-versions/",
        {"project": project.json()["id"], "archive": SimpleUploadedFile("code.zip", _archive())},
        format="multipart",
    )
    assert uploaded.status_code == 201, uploaded.content
    code = uploaded.json()
    assert code["version"] == 1
    assert set(code["entry_points"]["main"]["parameters"]) == {"data", "epochs", "alpha", "model_name"}

    # 2. Run it on the bike data; its log and its metric curve are there to follow.
    job_id = _run(client, code["id"], dataset_version.pk, alpha=0.0001)
    log = client.get(f"/api/jobs/{job_id}/log/", {"after": 0}).json()
    text = "".join(chunk["text"] for chunk in log["chunks"])
    assert "epoch 5 val_rmse" in text
    assert log["finished"] is True
    curve = client.get(f"/api/jobs/{job_id}/metrics/").json()["series"]["val_rmse"]
    assert [point["step"] for point in curve] == [1, 2, 3, 4, 5]
    assert f"epoch 5 val_rmse {curve[-1]['value']:.2f}\n" in text

    # 3. A model version with its whole lineage: code version + data -> run -> version.
    first = ModelVersion.objects.get(model__name="bike-sgd", version=1)
    assert (first.source_job_id, first.flavor, first.executes_code) == (job_id, "mlflow_model", True)
    assert first.signature["features"] == BIKE_FEATURES
    assert first.training_dataset_version == dataset_version
    graph = client.get(
        "/api/lineage/", {"node": f"model_version:{first.pk}", "direction": "upstream", "depth": 2}
    ).json()
    upstream = {node["id"] for node in graph["nodes"]}
    assert {
        f"job:{job_id}",
        f"code_version:{code['id']}",
        f"dataset_version:{dataset_version.pk}",
    } <= upstream

    # 4. A second run (another regularisation) gives version 2; serve 1 with 2 as a 50 % canary.
    _run(client, code["id"], dataset_version.pk, alpha=0.5)
    second = ModelVersion.objects.get(model__name="bike-sgd", version=2)
    do_set_alias(model=first.model, alias="staging", version=first, actor=scientist)
    policy = client.post(
        "/api/serving-policies/",
        {
            "registered_model": first.model_id,
            "alias": "staging",
            "canary_version": second.pk,
            "canary_percent": 50,
        },
        format="json",
    )
    assert policy.status_code == 201, policy.content
    rows = json.loads(bike_frame[bike_frame["yr"] == 1][BIKE_FEATURES].iloc[:40].to_json(orient="records"))
    answers = [
        client.post("/api/models/bike-sgd/aliases/staging/predict", {"rows": [row]}, format="json")
        for row in rows
    ]
    assert all(answer.status_code == 200 for answer in answers), answers[0].content
    bodies = [answer.json() for answer in answers]
    assert {body["model_version"] for body in bodies} == {1, 2}  # 40 draws at 50 %: both answer
    assert {body["served_by"] for body in bodies} == {"model_server"}
    assert all((body["model_version"] == 2) == body["is_canary"] for body in bodies)
    assert (
        Prediction.objects.filter(model_version=first).count()
        + Prediction.objects.filter(model_version=second).count()
        == 40
    )
    # The signature types "hr" as an integer (long): 5.9 is refused, not scored as 5; 5.0 is 5.
    fractional = client.post(
        "/api/models/bike-sgd/aliases/staging/predict", {"rows": [{**rows[0], "hr": 5.9}]}, format="json"
    )
    assert fractional.status_code == 400, fractional.content
    assert fractional.json()["rows"] == ["row 0, column 'hr': expected an integer, got 5.9"]
    whole = client.post(
        "/api/models/bike-sgd/aliases/staging/predict", {"rows": [{**rows[0], "hr": 5.0}]}, format="json"
    )
    assert whole.status_code == 200, whole.content

    # 5. A monitor of version 1 reads what it served as its current data.
    monitor = client.post(
        "/api/monitors/",
        {
            "model_version": first.pk,
            "name": "served rows",
            "source": "served",
            "served_hours": 1,
            "columns": BIKE_FEATURES,
            "min_sample_size": 5,
            "check_performance": False,
        },
        format="json",
    )
    assert monitor.status_code == 201, monitor.content
    assert client.post(f"/api/monitors/{monitor.json()['id']}/run/").status_code in (200, 201, 202)
    check = DriftCheck.objects.get()
    assert execute_drift_check(check.pk, make_report=False) == CheckState.SUCCEEDED
    check.refresh_from_db()
    assert check.window["rows"] == Prediction.objects.filter(model_version=first).count()
    # The served rows are 2012's; the reference is the whole of both years.
    assert check.results, "the check compared no column"
