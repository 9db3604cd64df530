"""Monitoring's worker side: running a drift check, and the periodic escalation pass.

The engine (``monitoring.engine``) decides: the window is compared column by column with the
reference profile (built once per dataset version and row filter, ``monitoring.profiles``). Then:

- prediction drift: the ``prediction`` column of the window against the model's own predictions
  on the reference rows. Those are computed once, by running the model on the reference rows
  (``predictor``), and cached as a profile beside the data's. We do not compare with the training
  target instead: a regression model's predictions are smoother than its target, so that
  comparison shows "drift" on the training data itself;
- performance drift, when the window holds labels beside its predictions (the model's target
  column, or late labels joined on the served rows' prediction id or the monitor's label key:
  ``monitoring.performance``): MAE/RMSE or accuracy/F1/ROC AUC against the validation metrics
  recorded on the model version, or, for metrics training did not record, the same metric on the
  reference rows; by a bootstrap interval of the change or the flat tolerance
  (``performance_test``); a classifier's rows with ``confidence`` also get CBPE's estimate;
- multivariate drift, when the check asks for it (``monitoring.engine.multivariate``): the raw
  reference rows against the window's, sampled, within ``STEWARD_MULTIVARIATE_TIME_LIMIT_S``. It is
  its own verdict; it does not change the column share or the dataset verdict;
- text and embedding columns (``column_kinds``: "text" / "embedding"), tested on bounded samples of
  the raw rows by MMD with a permutation test (``monitoring.engine.embedding``), within the same
  time limit; they count in the column share like any column. So does a Steward vision model's
  image (``column_kinds``: "image"), whose sampled rows ``embedder`` turns into the model's
  penultimate-layer activations in a child process (``embed_with_model``);
- windows and segments, when the check asks (``monitoring.engine.windows``): a verdict per time
  window and per segment beside the whole window's, which they do not change;
- the evidently report, for people, is not made here: once the verdict is stored and the alert
  raised, ``monitoring.reports`` builds it in its own task (issue 11).

A check past ``STEWARD_DRIFT_CHECK_TIME_LIMIT_S`` fails with the reason; the limit is checked at
each stage, where progress is recorded, so it holds on any worker pool.

``predictor`` (``predict_with_model``: the model runtime of ``runners``), ``embedder``
(``embed_with_model``) and ``retrainer`` (``monitoring.actions.retraining.submit_retraining``) are
passed in by the task layer, so a check can run without them (no prediction drift; an image
skipped; no retraining).
"""

from __future__ import annotations

import datetime
import functools
import itertools
import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import pandas as pd
from django.conf import settings
from django.utils import timezone

from governance import datafiles, storage
from governance.models import DatasetVersion, ModelVersion
from monitoring import performance as late_labels
from monitoring.actions.checks import DRIFT_CHECKS, CheckOutcome, do_finish_drift_check, record_check_progress
from monitoring.actions.deliveries import deliver_due_notifications
from monitoring.actions.escalations import do_escalate_alert
from monitoring.actions.retraining import Retrainer, retrain_if_opened
from monitoring.engine import (
    CheckConfig,
    build_profile,
    compare_raw_columns,
    raw_data_columns,
    raw_row_columns,
    run_check,
)
from monitoring.engine import performance as perf
from monitoring.engine.check import DEFAULT_MIN_SAMPLE_SIZE
from monitoring.engine.multivariate import run_multivariate
from monitoring.engine.windows import judge_groups
from monitoring.models import DriftCheck, Monitor, Notification, ReferenceProfile
from monitoring.profiles import claim_build, ensure_profile, profile_parts, profile_row
from monitoring.queries import due_alert_ids
from runners.execute import embed_in_child, predict_in_child
from runners.launcher import ComputeError

logger = logging.getLogger(__name__)

PREDICTION_COLUMN = "prediction"
# (model version, reference rows) -> predictions aligned with the rows.
Predictor = Callable[[ModelVersion, pd.DataFrame], pd.Series]
# (claimed reference profile row, row groups of each part) -> None: profiles the parts elsewhere.
FanOut = Callable[[ReferenceProfile, list[list[int]]], None]
# (model version, rows) -> the model's penultimate-layer activations, one vector per row.
Embedder = Callable[[ModelVersion, pd.DataFrame], np.ndarray]


class CheckTimeLimit(Exception):
    """The check ran past ``STEWARD_DRIFT_CHECK_TIME_LIMIT_S``; the message names the stage."""


# ComputeError: the model's child stopped with its message (e.g. the artifact changed on disk).
USER_ERRORS = (
    datafiles.DataFileError,
    datafiles.RowFilterError,
    FileNotFoundError,
    ComputeError,
    CheckTimeLimit,
    storage.ArtifactUnreadable,
)


def predict_with_model(model_version: ModelVersion, rows: pd.DataFrame) -> pd.Series:
    """The model version's predictions on ``rows`` (its artifact's sha256 checked first), made in
    a child process: the worker never loads torch (issue 16, ``runners.execute.predict_in_child``)."""
    return predict_in_child(model_version, rows)


def embed_with_model(model_version: ModelVersion, rows: pd.DataFrame) -> np.ndarray:
    """The vision model version's penultimate-layer activations of ``rows`` (rows x dimensions),
    computed in a child process like its predictions (``runners.execute.embed_in_child``)."""
    return embed_in_child(model_version, rows)


class _Stages:
    """Records a running check's progress and enforces its time limit between stages."""

    def __init__(self, check_id: int, limit_s: float):
        self.check_id, self.limit_s = check_id, limit_s
        self.deadline = time.monotonic() + limit_s

    def __call__(self, progress: float, stage: str) -> None:
        if time.monotonic() > self.deadline:
            raise CheckTimeLimit(
                f"the check ran past its time limit of {self.limit_s:g} s (STEWARD_DRIFT_CHECK_TIME_LIMIT_S) "
                f"before: {stage}"
            )
        record_check_progress(self.check_id, progress, stage)


def _frame(version: DatasetVersion, where: dict | None = None) -> pd.DataFrame:
    """All of the version's rows (filtered): only for the model's predictions on the reference."""
    return pd.concat(list(version.iter_frames(where)), ignore_index=True)


class _Window:
    """The current window streamed once into the engine, keeping on the side what needs raw rows:
    a bounded uniform sample (``datafiles.RowSampler``) of the columns that text, embedding and
    multivariate tests read, and all rows of the few columns prediction and performance drift
    need (``prediction``, the target, and what late labels join on and the estimate reads:
    ``prediction_id``, the monitor's ``label_key``, ``confidence``). Memory: one chunk, the sample
    and those columns."""

    def __init__(
        self,
        chunks: Iterable[pd.DataFrame],
        whole: list[str],
        sampler: datafiles.RowSampler | None,
        progress: Callable[[int], None],
    ):
        self._chunks, self._whole, self.sampler, self._progress = chunks, whole, sampler, progress
        self._kept: list[pd.DataFrame] = []

    def __iter__(self) -> Iterator[pd.DataFrame]:
        rows = 0
        for chunk in self._chunks:
            # Progress and the time limit between chunks: a long window cannot overrun unseen.
            self._progress(rows)
            rows += len(chunk)
            if self.sampler is not None:
                self.sampler.add(chunk)
            if PREDICTION_COLUMN in chunk.columns:  # without predictions the target is not needed
                self._kept.append(chunk[[c for c in self._whole if c in chunk.columns]])
            yield chunk

    def kept(self) -> pd.DataFrame:
        """All rows read of the kept columns, in order."""
        return pd.concat(self._kept, ignore_index=True) if self._kept else pd.DataFrame()


class _Lazy:
    """An iterable computed when first iterated (raw-row results, once the window was read)."""

    def __init__(self, compute: Callable[[], Iterable[Any]]):
        self._compute = compute

    def __iter__(self) -> Iterator[Any]:
        return iter(self._compute())


class _Once:
    """A value computed on first use (the reference rows: read only if something needs them)."""

    def __init__(self, compute: Callable[[], Any]):
        self._compute, self._done, self._value = compute, False, None

    def __call__(self) -> Any:
        if not self._done:
            self._value, self._done = self._compute(), True
        return self._value


def execute_drift_check(
    check_id: int,
    *,
    predictor: Predictor | None = None,
    retrainer: Retrainer | None = None,
    make_report: bool = True,
    embedder: Embedder | None = None,
) -> str:
    """Run drift check ``check_id`` once; redelivery of a finished or claimed check does nothing.

    ``make_report=False`` never asks for the evidently report; otherwise it is queued (its own
    task, after the verdict) when the check's config and ``STEWARD_DRIFT_REPORT_ENABLED`` say so.
    Returns the check's state afterwards. A check found running is left alone while its heartbeat
    is fresh and run again when its worker died (``runners.lifecycle``); its outcome is recorded
    only while it still runs under this delivery's attempt.
    """
    claimed = False

    def body(attempt: int) -> None:
        nonlocal claimed
        claimed = True
        check = DriftCheck.objects.select_related(
            "model_version__model", "monitor", "reference_dataset_version__dataset"
        ).get(pk=check_id)
        with DRIFT_CHECKS.heartbeat(check_id, settings.STEWARD_JOB_HEARTBEAT_INTERVAL_S, attempt):
            outcome, report = _run(check, predictor, make_report, embedder)
        with DRIFT_CHECKS.fenced(check_id, attempt):
            do_finish_drift_check(check_id, result=outcome, report=report)

    state = DRIFT_CHECKS.run(check_id, body, user_errors=USER_ERRORS)
    if claimed and retrainer is not None:
        retrain_if_opened(check_id, retrainer)
    return state


def _options(check: DriftCheck) -> dict:
    # Checks queued before monitors existed carry no config: the defaults then.
    options = {
        "engine": {"columns": check.columns, "drift_share": check.drift_share},
        "check_predictions": True,
        "check_performance": True,
        "performance_tolerance": 0.1,
    }
    options.update(check.config or {})
    return options


def _run(
    check: DriftCheck, predictor: Predictor | None, make_report: bool, embedder: Embedder | None = None
) -> tuple[CheckOutcome, str]:
    options = _options(check)
    config = CheckConfig.from_dict(options["engine"])
    reference_rows = _Once(lambda: _frame(check.reference_dataset_version, check.reference_where))
    stage = _Stages(check.pk, settings.STEWARD_DRIFT_CHECK_TIME_LIMIT_S)
    chunk_rows = settings.STEWARD_DATA_CHUNK_ROWS

    stage(0.05, "profiling the reference (once per dataset version)")
    row = profile_row(check.reference_dataset_version, check.reference_where)
    profile, _ = ensure_profile(
        row,
        lambda: (
            build_profile(
                check.reference_dataset_version.iter_frames(check.reference_where, chunk_rows=chunk_rows)
            ),
            {},
        ),
    )

    ids = check.window.get("dataset_versions") or [check.current_dataset_version_id]
    versions = {version.pk: version for version in DatasetVersion.objects.filter(pk__in=ids)}
    total_rows = max(1, sum(version.row_count for version in versions.values()))
    raw = raw_row_columns(config)
    # Issue 11: the window is streamed; raw rows are bounded samples of both sides, seeded.
    sampled = _sampled_columns(config, raw)
    sampler = None if sampled == [] else datafiles.RowSampler(config.multivariate_max_rows, 1, sampled)
    target = check.model_version.signature.get("target")

    def window_chunks() -> Iterator[pd.DataFrame]:
        return itertools.chain.from_iterable(versions[pk].iter_frames(chunk_rows=chunk_rows) for pk in ids)

    window = _Window(
        window_chunks(),
        # Late labels join on the prediction id or the monitor's key; the estimate reads confidence.
        [
            PREDICTION_COLUMN,
            *([target] if target else []),
            late_labels.PREDICTION_ID_COLUMN,
            late_labels.CONFIDENCE_COLUMN,
            *([options["label_key"]] if options.get("label_key") else []),
        ],
        sampler,
        lambda rows: stage(
            0.3 + 0.2 * min(1.0, rows / total_rows), f"read {rows} of {total_rows} rows of the window"
        ),
    )
    reference_sample = _Once(
        lambda: datafiles.sample_frames(
            check.reference_dataset_version.iter_frames(check.reference_where, chunk_rows=chunk_rows),
            config.multivariate_max_rows,
            0,
            sampled,
        )[0]
    )

    def raw_results() -> list:
        if not raw:
            return []
        # Text and embedding columns: MMD on bounded samples of the raw rows of both sides.
        stage(0.45, f"text and embedding drift: {', '.join(raw)}")
        deadline = time.monotonic() + settings.STEWARD_MULTIVARIATE_TIME_LIMIT_S
        embed = None if embedder is None else functools.partial(embedder, check.model_version)
        return compare_raw_columns(
            reference_sample(), _sample_of(window), config, deadline=deadline, embed=embed
        )

    stage(
        0.3,
        f"reading {len(ids)} dataset version(s) of the window, comparing {len(config.columns or ())} columns",
    )
    result = run_check(profile, window, config, raw_results=_Lazy(raw_results))
    current = window.kept()

    multivariate = []
    if config.multivariate:
        stage(0.55, f"multivariate drift: {', '.join(config.multivariate)}")
        multivariate = [
            test.to_dict()
            for test in run_multivariate(
                reference_sample(),
                _sample_of(window),
                config.multivariate,
                columns=config.columns,
                max_rows=config.multivariate_max_rows,
                time_limit_s=settings.STEWARD_MULTIVARIATE_TIME_LIMIT_S,
            )
        ]

    groups = {}
    if options.get("groups"):
        stage(0.58, "windows and segments")
        # A second pass over the window's files: the first kept only what every check needs.
        groups = judge_groups(
            profile,
            window_chunks(),
            config,
            options["groups"],
            lambda: check.reference_dataset_version.iter_frames(check.reference_where, chunk_rows=chunk_rows),
        )

    stage(0.6, "prediction and performance drift")
    prediction, baseline = _prediction_drift(check, current, config, options, predictor, reference_rows)
    performance = _performance(check, current, config, options, baseline)
    stage(0.95, "recording the verdict")
    outcome = CheckOutcome(
        results=[column.to_dict() for column in result.columns],
        is_dataset_drift=result.is_dataset_drift,
        drifted_count=result.number_of_drifted_columns,
        drifted_fraction=result.share_of_drifted_columns,
        prediction=prediction,
        performance=performance,
        is_performance_drift=None
        if performance is None or performance["status"] == "estimated_only"
        else performance["status"] == "drift",
        multivariate=multivariate,
        groups=groups,
        wants_report=make_report
        and options.get("make_report", True)
        and settings.STEWARD_DRIFT_REPORT_ENABLED,
    )
    DriftCheck.objects.filter(pk=check.pk).update(reference_profile=row)
    return outcome, ""


def _sampled_columns(config: CheckConfig, raw: dict[str, str]) -> list[str] | None:
    """The columns the bounded samples keep: [] when nothing needs raw rows, None for all (a
    multivariate test over every column)."""
    # An image's rows are its pixel columns (raw_data_columns), not a column named after it.
    pixels = raw_data_columns(config)
    if config.multivariate:
        return None if config.columns is None else list(dict.fromkeys([*config.columns, *pixels]))
    return pixels


def _sample_of(window: _Window) -> pd.DataFrame:
    return window.sampler.frame() if window.sampler is not None else pd.DataFrame()


def _prediction_drift(
    check: DriftCheck,
    current: pd.DataFrame,
    config: CheckConfig,
    options: dict,
    predictor: Predictor | None,
    reference_rows: _Once,
) -> tuple[dict | None, dict]:
    """The prediction column's result and the metrics of the predictions on the reference rows."""
    if not options["check_predictions"] or PREDICTION_COLUMN not in current.columns:
        return None, {}
    if predictor is None:
        message = "no model runtime in this process to predict on the reference rows"
        return {"column": PREDICTION_COLUMN, "status": "skipped", "message": message, "is_drifted": False}, {}
    model_version = check.model_version
    row = profile_row(check.reference_dataset_version, check.reference_where, predictions_of=model_version)

    profile, baseline = ensure_profile(
        row, lambda: _predictions_profile(model_version, predictor, reference_rows())
    )
    methods = {PREDICTION_COLUMN: options["prediction_method"]} if options.get("prediction_method") else {}
    thresholds = (
        {PREDICTION_COLUMN: options["prediction_threshold"]}
        if options.get("prediction_threshold") is not None
        else {}
    )
    prediction_config = CheckConfig(
        drift_share=config.drift_share,
        min_sample_size=config.min_sample_size,
        methods=methods,
        thresholds=thresholds,
        columns=(PREDICTION_COLUMN,),
    )
    (result,) = run_check(profile, current[[PREDICTION_COLUMN]], prediction_config).columns
    return result.to_dict(), baseline


def _predictions_profile(model_version: ModelVersion, predictor: Predictor, rows: pd.DataFrame) -> tuple:
    """The profile of the model's predictions on the reference rows, and their metrics there."""
    predictions = predictor(model_version, rows)
    profile = build_profile(pd.DataFrame({PREDICTION_COLUMN: predictions.to_numpy()}))
    return profile, _metrics_on(model_version, rows, predictions)


def _metrics_on(model_version: ModelVersion, rows: pd.DataFrame, predictions: pd.Series) -> dict:
    task, target = model_version.signature.get("task"), model_version.signature.get("target")
    if not target or target not in rows.columns:
        return {}
    truth, predicted = perf.labelled(rows[target], pd.Series(predictions.to_numpy(), index=rows.index))
    if len(truth) == 0:
        return {}
    return {k: v for k, v in perf.compute_metrics(task, truth, predicted).items() if math.isfinite(v)}


def _performance(
    check: DriftCheck, current: pd.DataFrame, config: CheckConfig, options: dict, reference_metrics: dict
) -> dict | None:
    """Metrics on the window's labelled rows against their baselines, or None when nothing can be
    said. Labels are the target column of the rows, or late labels joined on the prediction id
    (served rows) or on the monitor's ``label_key`` (``monitoring.performance``); the test is
    the bootstrap's or the flat tolerance's (``performance_test``). A classification whose rows
    carry the model's confidence also gets its estimated performance (``estimated: true``), with
    or without labels."""
    model_version = check.model_version
    task, target = model_version.signature.get("task"), model_version.signature.get("target")
    if not options["check_performance"] or not target or task not in ("regression", "classification"):
        return None
    if PREDICTION_COLUMN not in current.columns:
        return None
    test = options.get("performance_test", "tolerance")
    truth_values, coverage = late_labels.join(check, current, target, options.get("label_key") or "")
    estimate = late_labels.estimate(task, current, model_version)
    base = {
        "task": task,
        "target": target,
        "test": test,
        "tolerance": options["performance_tolerance"],
        "coverage": coverage,
        **({"estimated": estimate} if estimate else {}),
    }
    if test == "bootstrap":
        base |= {
            "alpha": options.get("performance_alpha", 0.05),
            "min_effect": options.get("performance_min_effect", 0.0),
        }
    truth, predicted = (
        perf.labelled(truth_values, current[PREDICTION_COLUMN]) if truth_values is not None else ([], [])
    )
    base["rows"] = len(truth)
    if len(truth) == 0:
        if estimate:
            message = (
                f"no labelled rows; estimated accuracy {estimate['accuracy']:.3f} from the model's confidence"
            )
            return base | {"status": "estimated_only", "message": message, "metrics": {}}
        return None
    minimum = config.min_sample_size or DEFAULT_MIN_SAMPLE_SIZE
    if len(truth) < minimum:
        message = f"{len(truth)} labelled rows; the minimum is {minimum}"
        return base | {"status": "insufficient_data", "message": message, "metrics": {}}
    metrics = perf.compute_metrics(task, truth, predicted)
    baselines = {
        name: (float(value), "validation")
        for name, value in model_version.metrics.items()
        if name in metrics and isinstance(value, int | float)
    }
    for name, value in reference_metrics.items():
        baselines.setdefault(name, (float(value), "reference rows"))
    if test == "bootstrap":
        # Training records on how many rows it measured the validation metrics: their own
        # sampling error then widens the interval (monitoring.engine.performance.bootstrap_compare).
        validation_rows = model_version.metrics.get("validation_rows")
        sized = (
            {name: int(validation_rows) for name, (_v, source) in baselines.items() if source == "validation"}
            if isinstance(validation_rows, int | float) and validation_rows >= 1
            else {}
        )
        compared = perf.bootstrap_compare(
            task,
            (truth, predicted),
            baselines,
            baseline_rows=sized,
            alpha=options.get("performance_alpha", 0.05),
            min_effect=options.get("performance_min_effect", 0.0),
            resamples=perf.DEFAULT_RESAMPLES,
            max_rows=perf.DEFAULT_MAX_ROWS,
            seed=check.pk,  # the same check gives the same interval when run again
        )
    else:
        compared = perf.compare(metrics, baselines, options["performance_tolerance"])
    for name, value in metrics.items():
        if name not in compared:
            compared[name] = {
                "current": value if math.isfinite(value) else None,
                "baseline": None,
                "baseline_source": "",
                "change": None,
                "is_degraded": False,
            }
    degraded = sorted(name for name, values in compared.items() if values["is_degraded"])
    if degraded:
        message = f"worse than baseline: {', '.join(degraded)}"
    else:
        message = "no significant worsening" if test == "bootstrap" else "within tolerance"
    return base | {"status": "drift" if degraded else "ok", "message": message, "metrics": compared}


def prepare_reference_profiles(
    monitor_id: int, *, predictor: Predictor | None = None, fan_out: FanOut | None = None
) -> list[str]:
    """Build a monitor's reference profiles ahead of its first check (the data's, and with a
    ``predictor`` its model's predictions on the reference rows); returns their states.

    With ``fan_out`` (the task layer's chord), a Parquet reference of more than
    ``STEWARD_PROFILE_FANOUT_ROWS`` rows is profiled in parts on several workers instead
    (``monitoring.profiles.profile_parts``): the row is claimed here and stored by the chord's
    callback; its state is then "building"."""
    monitor = Monitor.objects.select_related("model_version", "reference_dataset_version__dataset").get(
        pk=monitor_id
    )
    reference_rows = _Once(lambda: _frame(monitor.reference_dataset_version, monitor.reference_where))
    rows = [profile_row(monitor.reference_dataset_version, monitor.reference_where)]
    parts = profile_parts(monitor.reference_dataset_version, settings.STEWARD_PROFILE_FANOUT_ROWS)
    if fan_out is not None and parts and claim_build(rows[0]):
        fan_out(rows[0], parts)
    else:
        ensure_profile(
            rows[0],
            lambda: (
                build_profile(monitor.reference_dataset_version.iter_frames(monitor.reference_where)),
                {},
            ),
        )
    if predictor is not None and monitor.check_predictions:
        model_version = monitor.model_version
        rows.append(profile_row(monitor.reference_dataset_version, monitor.reference_where, model_version))

        ensure_profile(rows[1], lambda: _predictions_profile(model_version, predictor, reference_rows()))
    for row in rows:
        row.refresh_from_db()
    return [row.state for row in rows]


def run_escalations(now: datetime.datetime | None = None) -> dict:
    """One pass of the escalation task: claim due steps, then retry due deliveries.

    Returns ``{"escalated": [alert ids], "notifications": {id: state}}``; the new steps' deliveries
    ran on commit of their claims and are included.
    """
    now = now or timezone.now()
    escalated, states = [], {}
    for alert_id in due_alert_ids(now):
        ids = do_escalate_alert(alert_id, now=now)
        if ids:
            escalated.append(alert_id)
            states.update(Notification.objects.filter(pk__in=ids).values_list("pk", "state"))
    states.update(deliver_due_notifications(now))
    return {"escalated": escalated, "notifications": states}
