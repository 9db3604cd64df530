"""Online prediction's actions (issue 17): predicting (RBAC, canary, shadow, the prediction log)
and setting an alias's serving policy (audited). Called by the API and the model page alike."""

from __future__ import annotations

import logging
import random
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from governance.actions.checks import check_alias_name, ensure_can, is_protected_alias
from governance.audit import record_audit_event, snapshot
from governance.models import ApiToken, ModelAlias, ModelVersion, RegisteredModel, TokenScope
from governance.permissions import CHANGE, PREDICT
from runners.models import Prediction, PredictionRole, ServingPolicy
from runners.serving import service
from runners.serving.rows import Rows, RowsError, parse_rows

if TYPE_CHECKING:
    from django.contrib.auth.models import User

logger = logging.getLogger(__name__)


@dataclass
class PredictAnswer:
    """What a predict request answers: one prediction and one id per row, the version that
    answered, how (``in_process`` / ``model_server``), whether it was the canary; ``status`` is
    200, or 413 for too many rows (``rows_error`` then says why)."""

    predictions: list[Any] = field(default_factory=list)
    prediction_ids: list[str] = field(default_factory=list)
    model_version: int = 0
    served_by: str = ""
    alias: str = ""
    is_canary: bool = False

    def as_json(self) -> dict[str, Any]:
        return {
            "predictions": self.predictions,
            "prediction_ids": self.prediction_ids,
            "model_version": self.model_version,
            "served_by": self.served_by,
            "alias": self.alias,
            "is_canary": self.is_canary,
        }


def ensure_may_predict(actor: User, model: RegisteredModel, token: ApiToken | None) -> None:
    """PermissionDenied unless ``actor`` holds ``predict`` on the model's team, and a prediction
    token (``token.scope`` predict) names this model."""
    if token is not None and token.scope == TokenScope.PREDICT and token.registered_model_id != model.pk:
        raise PermissionDenied("this prediction token predicts with another model only")
    ensure_can(actor, PREDICT, model.team_id, fresh=False)


def do_predict(
    *,
    name: str,
    body: Any,
    actor: User,
    team_slug: str | None = None,
    alias: str | None = None,
    version_number: int | None = None,
    token: ApiToken | None = None,
) -> PredictAnswer:
    """Score the rows of ``body`` with model ``name`` (among ``actor``'s; ``team_slug`` picks
    among several teams'): the version ``alias`` points at now (its policy's canary answers
    ``canary_percent`` % of requests; its shadow scores the same rows, logged, never returned,
    its failure never fails the request) or version ``version_number``.

    Logs each row as a Prediction (one bulk insert) when the request is sampled
    (``STEWARD_PREDICTION_LOG_SAMPLE``); prediction ids are returned either way. Raises Http404
    for a model out of sight or an unknown alias or version; ValidationError for a name that
    several teams hold; PermissionDenied without ``predict`` (or with another model's
    prediction token); RowsError (400/413) for rows that do not fit the version's signature;
    ValidationError when the version cannot predict on them.
    """
    registered_model, route = service.resolve(actor, name, team_slug, alias)
    ensure_may_predict(actor, registered_model, token)
    if route is None:
        route = service.route_by_number(registered_model, int(version_number or 0))
    version, is_canary = route.version, False
    if route.canary_version_id and route.canary_percent and random.random() * 100 < route.canary_percent:
        version, is_canary = service.version_by_id(route.canary_version_id), True
    service.ensure_predictable(version)
    rows = parse_rows(body, service.input_columns(version), settings.STEWARD_PREDICT_MAX_ROWS)
    predictions, latency_ms = service.score(version, rows)
    answer = PredictAnswer(
        predictions=predictions,
        prediction_ids=[str(uuid.uuid4()) for _ in predictions],
        model_version=version.version,
        served_by=service.served_by(version),
        alias=route.alias,
        is_canary=is_canary,
    )
    shadow = _shadow(route, rows) if route.shadow_version_id else None
    if random.random() < settings.STEWARD_PREDICTION_LOG_SAMPLE:
        _log(registered_model, version, route.alias, rows, answer, latency_ms, actor, shadow)
    return answer


def _shadow(route: service.Route, rows: Rows) -> tuple[ModelVersion, list[Any], float] | None:
    """The shadow version's predictions of ``rows``, or None when it fails (logged: a shadow
    never fails the request it shadows)."""
    try:
        version = service.version_by_id(int(route.shadow_version_id or 0))
        service.ensure_predictable(version)
        columns = service.input_columns(version)
        if columns is not None:
            rows = Rows(rows.records, [column.name for column in columns])
        predictions, latency_ms = service.score(version, rows)
    except Exception:
        logger.warning(
            "shadow version %s of alias %s failed", route.shadow_version_id, route.alias, exc_info=True
        )
        return None
    return version, predictions, latency_ms


def _log(
    model: RegisteredModel,
    version: ModelVersion,
    alias: str,
    rows: Rows,
    answer: PredictAnswer,
    latency_ms: float,
    actor: User,
    shadow: tuple[ModelVersion, list[Any], float] | None,
) -> None:
    features = rows.records
    now = timezone.now()
    # Computed for the logged rows only (a sampled request), after the answer was made.
    confidence = service.confidences(version, rows) or [None] * len(features)
    logged = [
        Prediction(
            prediction_id=prediction_id,
            registered_model=model,
            model_version=version,
            alias=alias,
            role=PredictionRole.SERVED,
            is_canary=answer.is_canary,
            features=row,
            output=output,
            confidence=probability,
            latency_ms=latency_ms,
            requested_by=actor,
            created_at=now,
        )
        for prediction_id, row, output, probability in zip(
            answer.prediction_ids, features, answer.predictions, confidence, strict=True
        )
    ]
    if shadow is not None:
        shadow_version, outputs, shadow_ms = shadow
        logged += [
            Prediction(
                prediction_id=prediction_id,
                registered_model=model,
                model_version=shadow_version,
                alias=alias,
                role=PredictionRole.SHADOW,
                features=row,
                output=output,
                latency_ms=shadow_ms,
                requested_by=actor,
                created_at=now,
            )
            for prediction_id, row, output in zip(answer.prediction_ids, features, outputs, strict=True)
        ]
    # Telemetry like a job's log, not a change anyone made: not audited, one insert per request.
    Prediction.objects.bulk_create(logged)


def _version_of(model: RegisteredModel, version: ModelVersion | None, role: str) -> ModelVersion | None:
    if version is None:
        return None
    version = ModelVersion.objects.select_related("model").get(pk=version.pk)
    if version.model_id != model.pk:
        raise ValidationError({f"{role}_version": f"{version} is not a version of {model.name}"})
    if version.status != ModelVersion.Status.READY:
        raise ValidationError({f"{role}_version": f"{version} is {version.status}, not ready"})
    service.ensure_predictable(version)
    return version


def do_set_serving_policy(
    *,
    registered_model: RegisteredModel,
    alias: str,
    canary_version: ModelVersion | None = None,
    canary_percent: int = 0,
    shadow_version: ModelVersion | None = None,
    actor: User | None,
) -> ServingPolicy:
    """Set how ``registered_model@alias`` is served: ``canary_version`` answers ``canary_percent``
    % (0-100) of requests, ``shadow_version`` scores every request without answering; None and 0
    turn them off. Audited as ``serving_policy.set``. Raises ValidationError for an alias the
    model does not have, a version of another model or one not ready or that cannot predict, a
    percentage out of range or without a canary version; PermissionDenied without ``change``,
    or for a canary on a protected alias (``Team.protected_aliases``: four eyes).
    """
    alias = check_alias_name(alias)
    if (
        isinstance(canary_percent, bool)
        or not isinstance(canary_percent, int)
        or not 0 <= canary_percent <= 100
    ):
        raise ValidationError({"canary_percent": "a whole number from 0 to 100"})
    if canary_percent and canary_version is None:
        raise ValidationError({"canary_percent": "a canary percentage needs a canary_version"})
    with transaction.atomic():
        model = RegisteredModel.objects.select_for_update().get(pk=registered_model.pk)
        ensure_can(actor, CHANGE, model.team_id)
        if model.deleted_at is not None:
            raise ValidationError({"registered_model": f"model {model.name} was deleted"})
        if not ModelAlias.objects.filter(model=model, name=alias).exists():
            raise ValidationError({"alias": f"model {model.name} has no alias {alias!r}"})
        canary = _version_of(model, canary_version, "canary")
        shadow = _version_of(model, shadow_version, "shadow")
        if canary is not None and is_protected_alias(model.team.protected_aliases, alias):
            # A canary answers real requests in the alias's name: on a protected alias that would
            # serve an unapproved version to a share of its traffic, past the four eyes. A shadow
            # answers nobody, so it stays allowed.
            raise PermissionDenied(
                f"alias {alias!r} is protected in team {model.team.name}: what answers its requests "
                "changes only through an approved promotion request, so it takes no canary (a shadow "
                "is allowed; try the canary on an unprotected alias such as staging)"
            )
        policy = ServingPolicy.objects.select_for_update().filter(registered_model=model, alias=alias).first()
        before = snapshot(policy)
        if policy is None:
            policy = ServingPolicy(registered_model=model, alias=alias)
        policy.canary_version, policy.canary_percent, policy.shadow_version = canary, canary_percent, shadow
        policy.updated_by = actor if actor is not None else model.owner
        policy.updated_at = timezone.now()
        policy.save()
        record_audit_event(
            actor=actor,
            action="serving_policy.set",
            obj=policy,
            team_id=model.team_id,
            before=before,
            after=snapshot(policy),
        )
    return policy


__all__ = ["PredictAnswer", "RowsError", "do_predict", "do_set_serving_policy", "ensure_may_predict"]
