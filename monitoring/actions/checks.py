"""Drift checks: queue one (on request or on a monitor's schedule), run it, record its outcome.

A check follows the one worker lifecycle of ``runners.lifecycle`` (queued -> running -> succeeded
or failed, once). Its outcome is recorded with the alert it raises or clears, in one transaction
(``monitoring.actions.alerts``).
"""

from __future__ import annotations

import datetime
import logging
import tempfile
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from governance.actions.checks import ensure_can
from governance.audit import record_audit_event, snapshot
from governance.models import DatasetVersion, ModelVersion
from governance.permissions import CHANGE, VIEW
from monitoring.actions.alerts import record_breach, record_clean_check
from monitoring.engine import CheckConfig, ConfigError
from monitoring.engine.embedding import IMAGE
from monitoring.engine.windows import GroupConfig
from monitoring.lineage_events import announce_drift_check
from monitoring.models import CheckState, CurrentSource, DriftCheck, Monitor, ReportState
from monitoring.queries import window_of
from runners.lifecycle import Lifecycle
from runners.queries import VISION_TEMPLATE, is_vision_model

if TYPE_CHECKING:
    from django.contrib.auth.models import User

logger = logging.getLogger(__name__)

# A check is one run of the shared worker lifecycle; its failures also end its progress bar.
DRIFT_CHECKS: Lifecycle[DriftCheck] = Lifecycle(
    model=DriftCheck,
    noun="drift_check",
    task_name="monitoring.tasks.run_drift_check",
    terminal=frozenset({CheckState.SUCCEEDED, CheckState.FAILED}),
    broker_error="could not reach the task broker to run the check: {exc}",
    orphan_error="the worker running this check stopped before it finished, on each of {attempts} attempts",
    undelivered_error="sent to the task queue {count} times and no worker started it",
    on_claim=lambda now: {"stage": "starting", "progress": 0.0},
    on_fail={"progress": 1.0, "stage": "failed"},
    # Each start and end is an OpenLineage RunEvent when a receiver is configured (issue 10).
    on_transition=announce_drift_check,
)


@dataclass(frozen=True)
class CheckOutcome:
    """What a finished check found (built by ``monitoring.execute``).

    ``results``: per-column dicts of the engine (``ColumnResult.to_dict``); ``prediction``: the
    prediction column's dict or None; ``performance``: ``{"task", "rows", "status", "metrics":
    {metric: {current, baseline, baseline_source, change, is_degraded}}}`` or None.
    """

    results: list[dict]
    is_dataset_drift: bool
    drifted_count: int
    drifted_fraction: float
    prediction: dict | None = None
    performance: dict | None = None
    is_performance_drift: bool | None = None
    # One dict per multivariate test asked (``MultivariateResult.to_dict``); its own verdict.
    multivariate: list[dict] = field(default_factory=list)
    evidently_results: list[dict] = field(default_factory=list)
    sampled_rows: int | None = None
    report_error: str = ""
    # The worker asks for the evidently report, built by its own task once the verdict is stored.
    wants_report: bool = False
    # Verdicts per time window and segment (``GroupsResult.to_dict``), when the check asked.
    groups: dict = field(default_factory=dict)

    @classmethod
    def from_evidently(cls, result: Any) -> CheckOutcome:
        """An outcome whose verdicts are evidently's (a ``monitoring.drift.DriftResult``)."""
        columns = [
            dict(column, status="drift" if column["is_drifted"] else "ok")
            for column in result.columns_as_dicts()
        ]
        return cls(
            results=columns,
            is_dataset_drift=result.is_dataset_drift,
            drifted_count=result.drifted_count,
            drifted_fraction=result.drifted_fraction,
            evidently_results=result.columns_as_dicts(),
            sampled_rows=result.sampled_rows,
        )


def default_columns(model_version: ModelVersion, *versions: DatasetVersion) -> list[str]:
    """The model's features and target that every one of ``versions`` holds, in signature order."""
    wanted = [*model_version.signature.get("features", []), model_version.signature.get("target")]
    present = set.intersection(*(set(version.column_names) for version in versions))
    return [column for column in wanted if column and column in present]


# The engine options a check request or a monitor may set beside its columns and drift share.
ENGINE_OPTIONS = (
    "min_sample_size",
    "methods",
    "thresholds",
    "column_kinds",
    "weights",
    "multiple_testing",
    "top_k",
    "multivariate",
    "multivariate_max_rows",
)


def engine_config(
    columns: list[str],
    drift_share: float,
    *,
    image_columns: dict[str, list[str]] | None = None,
    **options: Any,
) -> dict:
    """The engine's CheckConfig as a dict; ``options`` are ``ENGINE_OPTIONS`` (None or empty:
    the engine's default); ``image_columns`` the pixel columns of each image ``column_kinds``
    names (``image_columns``), whose threshold and weight may be set like a column's. Raises
    ValidationError naming the bad field."""
    unknown = sorted(set(options) - set(ENGINE_OPTIONS))
    if unknown:
        raise ValidationError({unknown[0]: f"unknown engine option(s): {', '.join(unknown)}"})
    values: dict[str, Any] = {"columns": tuple(columns), "drift_share": drift_share}
    values.update({name: value for name, value in options.items() if value is not None and value != {}})
    if isinstance(values.get("multivariate"), list):
        values["multivariate"] = tuple(values["multivariate"])
    images = set(image_columns or {})
    for name in ("methods", "thresholds", "column_kinds", "weights"):
        if name in values:
            if not isinstance(values[name], dict):
                raise ValidationError({name: "must be an object of column -> value"})
            stray = sorted(set(values[name]) - set(columns) - (set() if name == "methods" else images))
            if stray:
                raise ValidationError({name: f"{', '.join(map(repr, stray))} is not a checked column"})
    if image_columns:
        values["image_columns"] = {name: tuple(pixels) for name, pixels in image_columns.items()}
    try:
        return CheckConfig(**values).to_dict()
    except ConfigError as exc:
        raise ValidationError({exc.field: str(exc)}) from exc
    except (ValueError, TypeError) as exc:
        raise ValidationError({"detail": str(exc)}) from exc


# What a check request or a monitor may ask of windows and segments (``monitoring.engine.windows``).
GROUP_OPTIONS = ("time_window", "segment_by", "alert_on_groups")


def group_config(
    time_window: Any = None,
    segment_by: Any = None,
    alert_on_groups: Any = False,
    *,
    reference: DatasetVersion | None = None,
    current: DatasetVersion | None = None,
) -> dict:
    """The windows and segments a check judges, as the dict its config stores (``{}``: none).

    ``time_window``: ``{"column", "every", "rolling", "max_windows"}``; ``segment_by``: a column
    name or ``{"column", "top"}`` (empty values: none). The timestamp column must be in ``current``
    and the segment column in ``reference`` when given. Raises ValidationError naming the field.
    """
    try:
        config = GroupConfig.from_dict(
            {
                "time_window": time_window or None,
                "segment_by": segment_by or None,
                "alert_on_groups": alert_on_groups,
            }
        )
    except ConfigError as exc:
        raise ValidationError({exc.field: str(exc)}) from exc
    except TypeError as exc:  # a key of the wrong kind, e.g. a number as a column name
        raise ValidationError({"time_window" if time_window else "segment_by": str(exc)}) from exc
    if config.is_empty:
        return {}
    if config.time_window and current is not None and config.time_window.column not in current.column_names:
        raise ValidationError(
            {"time_window": f"{config.time_window.column!r} is not a column of the current data {current}"}
        )
    if config.segment_by and reference is not None and config.segment_by.column not in reference.column_names:
        raise ValidationError(
            {"segment_by": f"{config.segment_by.column!r} is not a column of the reference {reference}"}
        )
    return config.to_dict()


def image_columns(
    model_version: ModelVersion,
    column_kinds: Any,
    columns: Sequence[str],
    versions: Sequence[tuple[str, DatasetVersion]],
) -> dict[str, list[str]]:
    """The pixel columns of the image ``column_kinds`` names (kind "image"; issue 11: images are
    compared through the model's own penultimate layer): the model's input columns, as its
    signature names them, which every one of ``versions`` (``(side, version)``) must hold.

    Raises ValidationError on ``column_kinds`` when the model is not a Steward vision model
    (``runners.queries.is_vision_model``), when more than one image is named, when the image's
    name is a checked or pixel column, or when a side lacks a pixel column. ``{}`` when no image is named
    (a malformed ``column_kinds`` is ``engine_config``'s to refuse)."""
    if not isinstance(column_kinds, dict):
        return {}
    images = [name for name, kind in column_kinds.items() if kind == IMAGE]
    if not images:
        return {}
    named = ", ".join(map(repr, images))
    if not is_vision_model(model_version):
        raise ValidationError(
            {
                "column_kinds": f"{named} is an image, compared through the model's own embeddings (its "
                f"penultimate layer): only a Steward vision model gives them (a version registered by a "
                f"run of the {VISION_TEMPLATE} template), and {model_version} is not one"
            }
        )
    if len(images) > 1:
        raise ValidationError({"column_kinds": f"{named}: a vision model reads one image; name one"})
    pixels = [str(column) for column in model_version.signature.get("features") or []]
    if not pixels:
        raise ValidationError({"column_kinds": f"{model_version}'s signature names no input columns"})
    if images[0] in columns or images[0] in pixels:
        raise ValidationError(
            {
                "column_kinds": f"{named} is a column: name the image apart from the checked columns and "
                "its pixels (the model's input columns)"
            }
        )
    for side, version in versions:
        missing = [column for column in pixels if column not in version.column_names]
        if missing:
            shown = ", ".join(map(repr, missing[:5])) + (" ..." if len(missing) > 5 else "")
            raise ValidationError(
                {
                    "column_kinds": f"image {images[0]!r}: the model's input column(s) {shown} are not in "
                    f"the {side} dataset version {version}"
                }
            )
    return {images[0]: pixels}


def do_request_drift_check(
    *,
    model_version: ModelVersion,
    current_dataset_version: DatasetVersion,
    actor: User,
    columns: list[str] | None = None,
    drift_share: float = 0.5,
    make_report: bool = True,
    time_window: dict | None = None,
    segment_by: dict | str | None = None,
    alert_on_groups: bool = False,
    **engine_options: Any,
) -> DriftCheck:
    """Queue a drift check of ``current_dataset_version`` against the version's training data.

    The reference is the training dataset version with the training spec's row filter.
    ``engine_options`` are ``ENGINE_OPTIONS`` (min sample size, methods, thresholds, column kinds,
    weights, multiple testing, top k, multivariate tests and their rows); a column kind "image"
    names the model's image (``image_columns``); ``make_report=False`` skips the evidently report;
    ``time_window``, ``segment_by`` and ``alert_on_groups`` ask for verdicts per window and segment
    (``group_config``). Raises
    ValidationError naming the field when the version has no training dataset, a named column is
    absent from either side, or an option is invalid; PermissionDenied without the right.
    """
    reference = model_version.training_dataset_version
    if reference is None:
        raise ValidationError(
            {"model_version": f"{model_version} has no training dataset version to compare to"}
        )
    if not 0 < drift_share <= 1:
        raise ValidationError({"drift_share": f"must be in (0, 1], got {drift_share}"})
    if columns is None:
        columns = default_columns(model_version, reference, current_dataset_version)
    else:
        for side, version in (("reference", reference), ("current", current_dataset_version)):
            missing = [c for c in columns if c not in version.column_names]
            if missing:
                names = ", ".join(map(repr, missing))
                raise ValidationError({"columns": f"{names} not in the {side} dataset version {version}"})
    if not columns:
        raise ValidationError({"columns": "the two dataset versions share none of the model's columns"})
    images = image_columns(
        model_version,
        engine_options.get("column_kinds"),
        columns,
        [("reference", reference), ("current", current_dataset_version)],
    )
    config = {
        "engine": engine_config(columns, drift_share, image_columns=images, **engine_options),
        "check_predictions": True,
        "check_performance": True,
        "performance_tolerance": 0.1,
        "make_report": bool(make_report),
    }
    groups = group_config(
        time_window, segment_by, alert_on_groups, reference=reference, current=current_dataset_version
    )
    if groups:
        config["groups"] = groups
    with transaction.atomic():
        ensure_can(actor, CHANGE, model_version.model.team_id)
        ensure_can(actor, VIEW, current_dataset_version.dataset.team_id)
        check = DriftCheck.objects.create(
            team_id=model_version.model.team_id,
            model_version=model_version,
            reference_dataset_version=reference,
            reference_where=model_version.training_spec.get("where") or {},
            current_dataset_version=current_dataset_version,
            window=_window([current_dataset_version]),
            columns=columns,
            config=config,
            drift_share=drift_share,
            created_by=actor,
            celery_task_id=str(uuid.uuid4()),
        )
        record_audit_event(actor=actor, action="drift_check.request", obj=check, after=snapshot(check))
        transaction.on_commit(lambda: enqueue_drift_check(check.pk))
    return check


def monitor_engine_config(monitor: Monitor) -> dict:
    """The engine config of a monitor's checks (its per-column settings of checked columns; those
    of ``prediction`` go to the prediction check). Raises ValidationError naming the field."""

    images = image_columns(
        monitor.model_version,
        monitor.column_kinds,
        monitor.columns,
        [("reference", monitor.reference_dataset_version)],
    )

    def of_columns(values: dict) -> dict:
        return {k: v for k, v in values.items() if k in monitor.columns or k in images}

    return engine_config(
        monitor.columns,
        monitor.drift_share,
        image_columns=images,
        min_sample_size=monitor.min_sample_size,
        methods=of_columns(monitor.methods),
        thresholds=of_columns(monitor.thresholds),
        column_kinds=of_columns(monitor.column_kinds),
        weights=of_columns(monitor.weights),
        multiple_testing=monitor.multiple_testing,
        top_k=monitor.top_k,
        multivariate=monitor.multivariate,
    )


def _window(versions: Sequence[DatasetVersion]) -> dict[str, Any]:
    """The window a check compares: its dataset versions' ids and labels, and their rows."""
    return {
        "dataset_versions": [version.pk for version in versions],
        "labels": [str(version) for version in versions],
        "rows": sum(version.row_count for version in versions),
    }


def do_run_monitor(
    *, monitor: Monitor, actor: User | None, now: datetime.datetime | None = None
) -> DriftCheck:
    """Queue a check of the monitor's current window (``actor=None``: the schedule).

    Raises ValidationError when the source has no data yet; PermissionDenied without the right.
    """
    now = now or timezone.now()
    with transaction.atomic():
        monitor = (
            Monitor.objects.select_for_update().select_related("model_version__model").get(pk=monitor.pk)
        )
        ensure_can(actor, CHANGE, monitor.team_id)
        if monitor.source == CurrentSource.SERVED:
            served = served_predictions(monitor, now)
            versions = [] if served is None else [served]
        else:
            versions = window_of(monitor)
        if not versions:
            sources: dict[str, str] = {
                CurrentSource.PREDICTIONS: f"inference outputs of {monitor.model_version}",
                CurrentSource.SERVED: f"online predictions of {monitor.model_version} logged in the last "
                f"{monitor.served_hours} hours",
            }
            source = sources.get(monitor.source, f"versions of dataset {monitor.current_dataset}")
            raise ValidationError({"source": f"there are no {source} to check yet"})
        check = DriftCheck.objects.create(
            team_id=monitor.team_id,
            model_version=monitor.model_version,
            monitor=monitor,
            reference_dataset_version=monitor.reference_dataset_version,
            reference_where=monitor.reference_where,
            current_dataset_version=versions[-1],
            window=_window(versions),
            columns=monitor.columns,
            config={
                "engine": monitor_engine_config(monitor),
                "make_report": monitor.make_report,
                "check_predictions": monitor.check_predictions,
                "check_performance": monitor.check_performance,
                "performance_tolerance": monitor.performance_tolerance,
                "performance_test": monitor.performance_test,
                "performance_alpha": monitor.performance_alpha,
                "performance_min_effect": monitor.performance_min_effect,
                "label_key": monitor.label_key,
                "prediction_method": monitor.methods.get("prediction"),
                "prediction_threshold": monitor.thresholds.get("prediction"),
                "groups": group_config(monitor.time_window, monitor.segment_by, monitor.alert_on_groups),
            },
            drift_share=monitor.drift_share,
            created_by=actor or monitor.created_by,
            created_at=now,
            celery_task_id=str(uuid.uuid4()),
        )
        Monitor.objects.filter(pk=monitor.pk).update(last_checked_at=now)
        record_audit_event(
            actor=actor,
            on_behalf_of=None if actor else monitor.created_by,
            action="drift_check.request",
            obj=check,
            after=snapshot(check),
        )
        transaction.on_commit(lambda: enqueue_drift_check(check.pk))
    return check


def served_predictions(monitor: Monitor, now: datetime.datetime) -> DatasetVersion | None:
    """The rows online prediction logged for the monitor's model version (role served) in the
    ``served_hours`` before ``now``, registered as the next version of dataset
    ``<model>-served`` (features as sent, the ``prediction`` column as answered), so the check
    reads them like any current data and its window names what it read (issue 17). None when
    nothing was logged. Runs inside the caller's transaction (``do_run_monitor``)."""
    import pandas as pd

    from governance.actions.datasets import dataset_named, do_register_dataset_version
    from runners.models import Prediction, PredictionRole

    since = now - datetime.timedelta(hours=monitor.served_hours)
    logged = list(
        Prediction.objects.filter(
            model_version=monitor.model_version,
            role=PredictionRole.SERVED,
            created_at__gt=since,
            created_at__lte=now,
        )
        .order_by("created_at", "id")
        .values_list("features", "output", "prediction_id", "confidence")
    )
    if not logged:
        return None
    frame = pd.DataFrame.from_records([row[0] for row in logged])
    frame["prediction"] = [row[1] for row in logged]
    # Late labels join on it (issue 11); not a monitored column (the monitor's columns are features).
    frame["prediction_id"] = [str(row[2]) for row in logged]
    if any(row[3] is not None for row in logged):
        frame["confidence"] = [row[3] for row in logged]  # a classifier's: estimated accuracy
    model = monitor.model_version.model
    name = f"{model.name}-served"
    dataset = dataset_named(
        model.team,
        name,
        description=f"Online predictions of {model.name}, as monitors read them",
        on_behalf_of=monitor.created_by,
    )
    with tempfile.TemporaryDirectory(prefix="steward-served-") as folder:
        path = Path(folder) / "served.csv"
        frame.to_csv(path, index=False)
        return do_register_dataset_version(
            dataset=dataset,
            file_path=path,
            filename=f"{name}-{now:%Y%m%dT%H%M%S}.csv",
            source=DatasetVersion.Source.JOB,
            description=(
                f"{len(frame)} online predictions of {monitor.model_version} logged from "
                f"{since.isoformat(timespec='seconds')} to {now.isoformat(timespec='seconds')}, "
                f"read by monitor {monitor.name}"
            ),
            actor=None,
            on_behalf_of=monitor.created_by,
        )


def _report_state(report: str, result: CheckOutcome) -> str:
    if result.wants_report:
        return ReportState.QUEUED
    if report:
        return ReportState.SUCCEEDED
    return ReportState.FAILED if result.report_error else ReportState.NOT_REQUESTED


# The evidently report (issue 11): its own task, after the verdict is stored and the alert raised.
REPORT_TASK = "monitoring.tasks.build_drift_report"


def enqueue_drift_report(check_id: int) -> bool:
    """Send the report task of a check whose report is queued; a broker outage fails the report
    (never the check) with the reason. True if it was sent. Sent by name: tasks sit above actions."""
    from celery import current_app

    try:
        current_app.send_task(REPORT_TASK, args=[check_id], retry=False)
    except Exception as exc:
        logger.warning("could not enqueue the report of drift check %s", check_id, exc_info=True)
        record_drift_report(check_id, error=f"could not reach the task broker to build the report: {exc}")
        return False
    return True


def claim_drift_report(check_id: int) -> bool:
    """queued -> running with a conditional UPDATE; False if another delivery has it or it is done."""
    return bool(
        DriftCheck.objects.filter(pk=check_id, report_state=ReportState.QUEUED).update(
            report_state=ReportState.RUNNING
        )
    )


def record_drift_report(
    check_id: int,
    *,
    report: str = "",
    evidently_results: list[dict] | None = None,
    sampled_rows: int | None = None,
    error: str = "",
) -> bool:
    """Store a report (``report``: its artifact path) or why there is none (``error``), once: only a
    queued or running report is written. The check's verdict and state are untouched (the report is
    for people; issue 11). Not audited, like progress. True if written."""
    fields: dict[str, Any] = {"report_error": error[:4000]}
    if error:
        fields["report_state"] = ReportState.FAILED
    else:
        fields.update(
            report_state=ReportState.SUCCEEDED,
            report=report,
            evidently_results=evidently_results or [],
            sampled_rows=sampled_rows,
        )
    return bool(
        DriftCheck.objects.filter(
            pk=check_id, report_state__in=[ReportState.QUEUED, ReportState.RUNNING]
        ).update(**fields)
    )


def enqueue_drift_check(check_id: int) -> bool:
    """Send the check's task; a broker outage leaves it queued with ``dispatch_error`` for
    ``do_redispatch_queued_drift_checks`` (issue 16). True if it was sent."""
    return DRIFT_CHECKS.enqueue(check_id)


def do_redispatch_queued_drift_checks(after_s: int, max_dispatches: int) -> list[int]:
    """Send again queued checks with no live delivery; fail those sent ``max_dispatches`` times."""
    return DRIFT_CHECKS.redispatch(after_s, max_dispatches)


def do_recover_stale_drift_checks(timeout_s: int) -> list[int]:
    """Send again running checks whose worker went silent for ``timeout_s`` seconds, or fail them
    on their last attempt (``Lifecycle.fail_stale``); returns the ids failed."""
    return DRIFT_CHECKS.fail_stale(timeout_s)


def claim_drift_check(check_id: int) -> bool:
    """queued -> running with a conditional UPDATE; False if another delivery claimed it."""
    return DRIFT_CHECKS.claim(check_id)


def record_check_progress(check_id: int, progress: float, stage: str) -> None:
    """Telemetry of a running check (not an audited change, like a job's heartbeat)."""
    DRIFT_CHECKS.record_progress(check_id, progress=progress, stage=stage[:200])


def do_finish_drift_check(
    check_id: int,
    *,
    result: CheckOutcome | Any = None,
    report: str = "",
    error: str = "",
    now: datetime.datetime | None = None,
) -> DriftCheck:
    """Record a check's outcome or its error; redelivery of a finished check changes nothing.

    ``result`` is a ``CheckOutcome`` (or an evidently ``DriftResult``, whose verdicts are then used).
    A breach (a drifted column, prediction or metric) opens, adds to or re-opens the alert of the
    monitor (or of the model version, for a check without a monitor) in the same transaction; a
    clean check of a monitor counts towards auto-resolving its open alert.
    """
    now = now or timezone.now()
    if result is None:
        DRIFT_CHECKS.fail(check_id, error, now=now)
        return DriftCheck.objects.get(pk=check_id)
    if not isinstance(result, CheckOutcome):
        result = CheckOutcome.from_evidently(result)
    with transaction.atomic():
        check, changed = DRIFT_CHECKS.finish(
            check_id,
            CheckState.SUCCEEDED,
            "drift_check.complete",
            now=now,
            progress=1.0,
            stage="done",
            results=result.results,
            is_dataset_drift=result.is_dataset_drift,
            drifted_count=result.drifted_count,
            drifted_fraction=result.drifted_fraction,
            prediction=result.prediction,
            performance=result.performance,
            is_performance_drift=result.is_performance_drift,
            multivariate=result.multivariate,
            evidently_results=result.evidently_results,
            sampled_rows=result.sampled_rows,
            groups=result.groups,
            report=report,
            report_error=result.report_error[:4000],
            report_state=_report_state(report, result),
        )
        if not changed:
            return check
        if check.report_state == ReportState.QUEUED:
            transaction.on_commit(lambda: enqueue_drift_report(check_id))
        if check.is_breach or check.monitor_id is not None:
            # Serialise alert decisions per dedup key: two checks finishing together must not
            # both open an alert (the partial unique constraint would fail the second).
            if check.monitor_id is not None:
                Monitor.objects.select_for_update().filter(pk=check.monitor_id).first()
            else:
                ModelVersion.objects.select_for_update().filter(pk=check.model_version_id).first()
        if check.is_breach:
            record_breach(check, now)
        elif check.monitor_id is not None:
            record_clean_check(check, now)
    return check
