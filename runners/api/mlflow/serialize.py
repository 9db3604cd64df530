"""Tracking objects in MLflow's JSON shapes (``mlflow/protos/service.proto``: Experiment, Run,
LoggedModel, Metric); ids are strings, times integer milliseconds."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from governance.api.mlflow.base import InvalidParameterValue, ms
from runners.models import Experiment, Job, LoggedModel, RunMetric
from runners.tracking import STATE_TO_STATUS, json_number, run_artifact_location


def key_values(mapping: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"key": key, "value": value} for key, value in mapping.items()]


def experiment_json(experiment: Experiment) -> dict[str, Any]:
    return {
        "experiment_id": str(experiment.pk),
        "name": experiment.name,
        "artifact_location": experiment.artifact_location,
        "lifecycle_stage": experiment.lifecycle_stage,
        "creation_time": ms(experiment.created_at),
        "last_update_time": ms(experiment.updated_at),
        "tags": key_values(experiment.tags),
    }


def metric_json(point: RunMetric, run_id: str | None = None) -> dict[str, Any]:
    answer = {
        "key": point.key,
        "value": json_number(point.value),
        "timestamp": point.timestamp_ms,
        "step": point.step,
    }
    if point.dataset_digest:
        # MLflow 3: the dataset the point was computed on (mlflow.evaluate's metrics, issue 15).
        answer["dataset_name"] = point.dataset_name
        answer["dataset_digest"] = point.dataset_digest
    if run_id:
        answer["run_id"] = run_id
    return answer


def latest_metrics(job: Job) -> list[RunMetric]:
    """Each metric key's latest point (highest step, then timestamp): one query per key, and a
    run has a few keys."""
    points = []
    for key in job.metrics:
        point = job.metric_history.filter(key=key).order_by("-step", "-timestamp_ms", "-id").first()
        if point is not None:
            points.append(point)
    return points


def run_info_json(job: Job) -> dict[str, Any]:
    return {
        "run_id": job.mlflow_run_id,
        "run_uuid": job.mlflow_run_id,
        "run_name": job.run_name,
        "experiment_id": str(job.experiment_id),
        "user_id": job.created_by.get_username(),
        "status": STATE_TO_STATUS[job.state],
        "start_time": ms(job.started_at or job.created_at),
        "end_time": ms(job.finished_at),
        "artifact_uri": run_artifact_location(job),
        "lifecycle_stage": "deleted" if job.deleted_at else "active",
    }


def run_json(job: Job) -> dict[str, Any]:
    return {
        "info": run_info_json(job),
        "data": {
            "metrics": [metric_json(p) for p in latest_metrics(job)],
            "params": key_values(job.params),
            "tags": key_values(job.tags),
        },
        "inputs": {
            "dataset_inputs": [
                {
                    "tags": key_values(run_input.tags),
                    "dataset": {
                        "name": run_input.name,
                        "digest": run_input.digest,
                        "source_type": run_input.source_type,
                        "source": run_input.source,
                        "schema": run_input.schema,
                        "profile": run_input.profile,
                    },
                }
                for run_input in job.run_inputs.all()
            ]
        },
        "outputs": {
            "model_outputs": [
                {"model_id": model_id, "step": 0}
                for model_id in job.logged_models.filter(deleted_at__isnull=True).values_list("pk", flat=True)
            ]
        },
    }


def logged_model_json(model: LoggedModel) -> dict[str, Any]:
    run = model.source_run
    return {
        "info": {
            "model_id": model.pk,
            "experiment_id": str(model.experiment_id),
            "name": model.name,
            "creation_timestamp_ms": ms(model.created_at),
            "last_updated_timestamp_ms": ms(model.updated_at),
            "artifact_uri": model.artifact_location,
            "status": model.status,
            "status_message": model.status_message,
            "model_type": model.model_type,
            "source_run_id": run.mlflow_run_id if run else "",
            "tags": key_values(model.tags),
        },
        "data": {
            "params": key_values(model.params),
            "metrics": [metric_json(p, run.mlflow_run_id) for p in latest_metrics(run)] if run else [],
        },
    }


def page_offset(token: str | None) -> int:
    """The offset a page token carries (base64 of ``{"offset": n}``, as MLflow's own)."""
    if not token:
        return 0
    try:
        offset = json.loads(base64.b64decode(token, validate=True))["offset"]
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise InvalidParameterValue("Invalid page token.") from None
    if not isinstance(offset, int) or offset < 0:
        raise InvalidParameterValue("Invalid page token.")
    return offset


def page_token(offset: int) -> str:
    return base64.b64encode(json.dumps({"offset": offset}).encode()).decode()
