"""Evaluations started by promotion requests (issue 15): "a promotion request runs or reuses the
evaluation". Where the alias's gate policy has an ``evaluation`` setting and the candidate has no
evaluation by Steward young enough, the request starts one once it is committed.

Evaluation jobs live in runners and governance imports no other app, so the starter is registered
by runners (``RunnersConfig.ready`` registers ``runners.promotion_evaluations.start_evaluation``),
as monitoring registers the audit subjects finder. Governance resolves the dataset's newest
labelled version (``queries.newest_labelled_version``), calls the starter and records on the
request the job it started, or why none was: a refused submission or a broker outage never loses
the request.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction

from governance.audit import record_audit_event
from governance.models import Dataset, DatasetVersion, PromotionRequest
from governance.queries import newest_labelled_version

logger = logging.getLogger(__name__)

# starter(request, dataset_version, spec) -> the id of the evaluation job it submitted, on behalf
# of the request's requester. Raises ValidationError / PermissionDenied when the submission is
# refused (anything else is reported too).
StartEvaluation = Callable[[PromotionRequest, DatasetVersion, dict[str, Any]], int]
_starter: list[StartEvaluation] = []


def register_evaluation_starter(starter: StartEvaluation) -> None:
    """Start a promotion request's evaluation with ``starter``; registering again replaces it."""
    _starter[:] = [starter]


def _reason(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        if hasattr(exc, "error_dict"):
            return "; ".join(
                message if field == "__all__" else f"{field}: {message}"
                for field, messages in exc.message_dict.items()
                for message in messages
            )
        return "; ".join(exc.messages)
    if isinstance(exc, PermissionDenied):
        return str(exc) or "the requester may not submit jobs in the team"
    return f"{type(exc).__name__}: {exc}"


def start_request_evaluation(request_id: int, setting: dict[str, Any]) -> None:
    """Start the evaluation ``setting`` (a gate policy's ``evaluation``) asks for, for pending
    request ``request_id``; runs after the request is committed. Records ``evaluation_job_id`` or
    ``evaluation_job_error`` on the request, with a ``promotion_request.evaluation`` audit event
    (the system, on behalf of the requester). Never raises."""
    request = (
        PromotionRequest.objects.select_related("model_version__model", "requested_by")
        .filter(pk=request_id)
        .first()
    )
    if request is None:
        return
    job_id, error = None, ""
    dataset_id = int(setting.get("dataset") or 0)
    dataset = Dataset.objects.filter(pk=dataset_id, team_id=request.model_version.model.team_id).first()
    dataset_version: DatasetVersion | None = None
    if dataset is None:
        error = f"dataset #{dataset_id} of the gate policy is not in the team"
    else:
        # The newest labelled data: a newer upload without the label (predictions to score
        # later) is passed over, as a scheduled evaluation and a retraining pass it over.
        try:
            dataset_version = newest_labelled_version(
                dataset, request.model_version, target=setting.get("target")
            )
        except ValidationError as exc:
            error = _reason(exc)
    if not _starter:
        error = "no evaluation runner is installed"
    elif dataset_version is not None:
        spec = {key: value for key, value in setting.items() if key != "dataset"}
        try:
            job_id = _starter[0](request, dataset_version, spec)
        except Exception as exc:  # a refusal or an outage: the request stays, with the reason
            if not isinstance(exc, ValidationError | PermissionDenied):
                logger.warning(
                    "could not start the evaluation of promotion request %s", request_id, exc_info=True
                )
            error = _reason(exc)
    with transaction.atomic():
        PromotionRequest.objects.filter(pk=request.pk).update(
            evaluation_job_id=job_id, evaluation_job_error=error
        )
        record_audit_event(
            actor=None,
            on_behalf_of=request.requested_by,
            action="promotion_request.evaluation",
            obj=request,
            team_id=request.model_version.model.team_id,
            after={
                "dataset_version_id": dataset_version.pk if dataset_version else None,
                "evaluation_job_id": job_id,
                "evaluation_job_error": error,
            },
        )
