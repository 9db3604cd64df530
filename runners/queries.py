"""Reads for the job page (issue 17): a job's metric series, bounded, for live step-curve charts.

Two sources, one shape: a code or tracked run's ``RunMetric`` history (what the MLflow client
logged, with steps) and a built-in training job's ``Job.history`` (one record per epoch, step =
epoch). Polling is incremental: an answer's ``next`` is the cursor of the one after it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from django.db.models import Count, F, Max, Window
from django.db.models.functions import Greatest, RowNumber

from governance.models import ModelVersion
from runners.models import CodeSource, Job, JobKind, RunMetric

# At most this many points of one series in one answer: a longer series is thinned evenly (its
# first and last points kept), so a run that logs every batch for a day still draws in a browser.
SERIES_POINTS_MAX = 1000
# At most this many series of logged metrics, by key in code-point order; the rest are left out.
SERIES_MAX = 100
# The field of a Job.history record that is its step, not a metric.
HISTORY_STEP_KEY = "epoch"

Point = dict[str, Any]


@dataclass(frozen=True)
class SeriesCursor:
    """Where the previous answer stopped: the last ``RunMetric`` id sent (``after``), the number
    of ``Job.history`` records sent (``after_epoch``) and the job's attempt they were sent in
    (``attempt``; a new attempt rewrites the history, so a cursor of another attempt starts over)."""

    after: int = 0
    after_epoch: int = 0
    attempt: int | None = None


def _finite(value: Any) -> float | None:
    """A JSON-safe value: NaN and infinities (no chart draws them) and non-numbers are None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _thinned_run_metrics(
    job: Job, after: int, up_to: int, keys: list[str] | None, bound_points: int = SERIES_POINTS_MAX
) -> dict[str, list[Point]]:
    """``job``'s RunMetric points with ``after < id <= up_to`` (of ``keys`` when given), per key,
    ordered by step, timestamp and id, each key thinned to at most ``bound_points`` points.

    Of a key's n points the i-th (from 0) is kept when ``i * (M - 1) mod (n - 1) < M - 1`` (M the
    bound): exactly M points evenly spaced, the first and the last among them, and all of them
    when n <= M. Thinned in SQL with window functions (SQLite >= 3.25, PostgreSQL), in one query,
    so a long series is never read whole into Python."""
    rows = RunMetric.objects.filter(job=job, id__gt=after, id__lte=up_to)
    if keys is not None:
        rows = rows.filter(key__in=keys)
    per_key: dict[str, Any] = {"partition_by": [F("key")]}
    bound = bound_points - 1
    kept = (
        rows.annotate(
            position=Window(RowNumber(), order_by=[F("step"), F("timestamp_ms"), F("id")], **per_key),
            size=Window(Count("id"), **per_key),
        )
        .annotate(phase=((F("position") - 1) * bound) % Greatest(F("size") - 1, 1))
        .filter(phase__lt=bound)
        .order_by("key", "step", "timestamp_ms", "id")
        .values_list("key", "step", "value", "timestamp_ms")
    )
    series: dict[str, list[Point]] = {}
    for key, step, value, timestamp_ms in kept:
        series.setdefault(key, []).append(
            {"step": step, "value": _finite(value), "timestamp_ms": timestamp_ms}
        )
    return series


def _history_series(records: list[Any]) -> dict[str, list[Point]]:
    """Per-epoch records ``[{"epoch": 1, "train_loss": 0.5, ...}]`` as one series per field, step =
    the epoch (the record's position from 1 when it has none); no timestamps. At most 1,000 epochs
    (``runners.specs``), so never thinned."""
    series: dict[str, list[Point]] = {}
    for position, record in enumerate(records, start=1):
        if not isinstance(record, dict):
            continue
        step = record.get(HISTORY_STEP_KEY)
        step = step if isinstance(step, int) and not isinstance(step, bool) else position
        for key, value in record.items():
            if key != HISTORY_STEP_KEY:
                series.setdefault(str(key), []).append(
                    {"step": step, "value": _finite(value), "timestamp_ms": None}
                )
    return series


def metric_series(job: Job, cursor: SeriesCursor = SeriesCursor()) -> dict[str, Any]:
    """The points of ``job``'s metrics logged since ``cursor``, for its page's charts.

    Returns ``{"series": {key: [{"step": int, "value": float | None, "timestamp_ms": int | None}]},
    "next": {"after", "after_epoch", "attempt"}, "reset": bool, "series_left_out": int}``:
    ``series`` merges the logged metrics (RunMetric; NaN and infinities are None) and the per-epoch
    history (Job.history); each series in one answer has at most ``SERIES_POINTS_MAX`` points
    (evenly thinned) and at most ``SERIES_MAX`` logged keys are answered (``series_left_out``
    counts the others). ``reset`` is true when the cursor's attempt is not the job's: the answer
    then starts from the beginning and replaces what the caller holds.

    Exact for a poller: ``do_log_batch`` writes a run's points under a lock on its job row, so ids
    commit in order and no point is ever behind ``next``. ``job`` must be freshly read (its
    history, metrics and attempt are taken from it).
    """
    reset = cursor.attempt is not None and cursor.attempt != job.attempt
    if reset:
        cursor = SeriesCursor()
    up_to = RunMetric.objects.filter(job=job, id__gt=cursor.after).aggregate(last=Max("id"))["last"]
    logged_keys = sorted(job.metrics) if len(job.metrics) > SERIES_MAX else None
    keys = logged_keys[:SERIES_MAX] if logged_keys is not None else None
    series = _thinned_run_metrics(job, cursor.after, up_to, keys) if up_to is not None else {}
    history = job.history if isinstance(job.history, list) else []
    for key, points in _history_series(history[cursor.after_epoch :]).items():
        series.setdefault(key, []).extend(points)
    return {
        "series": series,
        "next": {
            "after": up_to if up_to is not None else cursor.after,
            "after_epoch": max(len(history), cursor.after_epoch),
            "attempt": job.attempt,
        },
        "reset": reset,
        "series_left_out": len(logged_keys) - SERIES_MAX if logged_keys is not None else 0,
    }


# Per series on a page that embeds its curves (a model version's training run): the page carries
# them and a table of them, so fewer than a live chart polls.
CURVE_POINTS_MAX = 200


def _thin(points: list[Point], bound: int) -> list[Point]:
    """At most ``bound`` of ``points``, evenly spaced, the first and last kept (the rule of
    ``_thinned_run_metrics``, in Python for the per-epoch history)."""
    size = len(points)
    if size <= bound:
        return points
    return [point for i, point in enumerate(points) if (i * (bound - 1)) % (size - 1) < bound - 1]


def metric_curves(job: Job, points_max: int = CURVE_POINTS_MAX) -> dict[str, list[Point]]:
    """All of ``job``'s step curves at once, for a page that embeds them: ``{key: [{"step",
    "value", "timestamp_ms"}]}`` as in ``metric_series``, at most ``SERIES_MAX`` logged keys and
    ``points_max`` points per key (evenly thinned). Two queries."""
    up_to = RunMetric.objects.filter(job=job).aggregate(last=Max("id"))["last"]
    keys = sorted(job.metrics)[:SERIES_MAX] if len(job.metrics) > SERIES_MAX else None
    series = _thinned_run_metrics(job, 0, up_to, keys, points_max) if up_to is not None else {}
    history = job.history if isinstance(job.history, list) else []
    for key, points in _history_series(history).items():
        series.setdefault(key, []).extend(points)
    return {key: _thin(points, points_max) for key, points in series.items()}


# The shipped template whose models are Steward vision models (issue 17; image drift, issue 11).
VISION_TEMPLATE = "vision"


def is_vision_model(model_version: ModelVersion) -> bool:
    """Whether ``model_version`` is a Steward vision model: an MLflow model registered by a code
    run of the shipped vision template (its pyfunc wrapper keeps its torch network, whose
    penultimate layer ``runners.serving.predictors.penultimate_layer`` reads in a child). Read
    from the database only: the model's pickle is never loaded to decide."""
    if model_version.flavor != ModelVersion.Flavor.MLFLOW_MODEL or model_version.source_job_id is None:
        return False
    return Job.objects.filter(
        pk=model_version.source_job_id,
        kind=JobKind.CODE,
        code_version__source=CodeSource.TEMPLATE,
        code_version__source_path=VISION_TEMPLATE,
    ).exists()
