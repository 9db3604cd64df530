"""Read helpers for monitoring: where a monitor's current data comes from, and what is due."""

from __future__ import annotations

import datetime
import math
from collections.abc import Sequence
from typing import Any

from django.db.models import Q, QuerySet

from governance.models import DatasetVersion, ModelVersion
from lineage.nodes import NodeRef
from lineage.queries import outputs_of_runs_reading
from monitoring.engine import methods
from monitoring.models import Alert, AlertState, CheckState, CurrentSource, DriftCheck, Monitor


def predictions_of(model_version: ModelVersion) -> QuerySet[DatasetVersion]:
    """Dataset versions written by inference jobs of ``model_version``, newest first.

    Read from lineage (model version -[input]-> job -[output]-> dataset version) through lineage's
    public reads, so monitoring needs nothing from ``runners``. One query: the edges are subqueries.
    """
    outputs = outputs_of_runs_reading(
        NodeRef("model_version", model_version.pk), run_type="job", output_type="dataset_version"
    )
    return (
        DatasetVersion.objects.filter(pk__in=outputs).select_related("dataset").order_by("-created_at", "-id")
    )


def window_of(monitor: Monitor) -> list[DatasetVersion]:
    """The newest ``monitor.window_versions`` dataset versions of the monitor's current source,
    oldest first (the order their rows are read in); empty when there is no data yet."""
    if monitor.source == CurrentSource.PREDICTIONS:
        versions = predictions_of(monitor.model_version)
    elif monitor.current_dataset_id is None:  # excluded by monitor_source_matches_current_dataset
        return []
    else:
        versions = (
            DatasetVersion.objects.filter(dataset_id=monitor.current_dataset_id)
            .select_related("dataset")
            .order_by("-version")
        )
    return list(reversed(versions[: monitor.window_versions]))


def due_alert_ids(now: datetime.datetime) -> list[int]:
    """Open alerts whose next escalation step is due and which are not snoozed, oldest due first."""
    return list(
        Alert.objects.filter(state=AlertState.OPEN, next_escalation_at__lte=now)
        .filter(Q(snoozed_until__isnull=True) | Q(snoozed_until__lte=now))
        .order_by("next_escalation_at", "id")
        .values_list("pk", flat=True)
    )


# -- charts (issue 14) ---------------------------------------------------------------------------
# A check's bar chart shows at most this many columns (the most drifted); a monitor's charts the
# last this many finished checks.
CHART_COLUMNS_MAX = 50
CHART_CHECKS_MAX = 100
# Relative scores are drawn up to this many times the threshold (a p-value of 0 is infinitely far).
RELATIVE_SCORE_CAP = 10.0
# Methods whose score is a p-value: drift when it is small (monitoring.engine.methods.is_drift).
P_VALUE_METHODS = methods.P_VALUE_METHODS | {"missing_rate"}


def relative_score(method: str | None, score: float | None, threshold: float | None) -> float | None:
    """How far a column's score is past its threshold, as one number for every method: 1 is the
    threshold, above 1 drifted. Distances (PSI, Wasserstein, ...) read ``score / threshold``;
    p-values read ``log(score) / log(threshold)``, which is 1 at the threshold and grows as the
    p-value shrinks. Capped at ``RELATIVE_SCORE_CAP``; None without a comparable score.

    Why not the raw scores: one check mixes p-values (drift below 0.05) and distances (drift above
    0.1 or 0.16) on different scales and in opposite directions, so raw bars against one axis
    would say nothing; each bar against its own threshold is what the verdict is."""
    if score is None or threshold is None or not math.isfinite(score) or not math.isfinite(threshold):
        return None
    if method in P_VALUE_METHODS:
        if not 0 < threshold < 1 or score < 0:
            return None
        ratio = RELATIVE_SCORE_CAP if score == 0 else math.log(min(score, 1.0)) / math.log(threshold)
    elif threshold > 0:
        ratio = score / threshold
    else:
        return None
    return min(max(ratio, 0.0), RELATIVE_SCORE_CAP)


def _compared_score(result: dict) -> float | None:
    # The Benjamini-Hochberg adjusted p-value, when the check asked for it, is what met the threshold.
    adjusted = result.get("adjusted_score")
    return adjusted if adjusted is not None else result.get("score")


def column_scores(check: DriftCheck) -> list[dict[str, Any]]:
    """A finished check's tested columns, most drifted first, at most ``CHART_COLUMNS_MAX``:
    ``{"column", "method", "score", "threshold", "relative", "is_drifted"}`` (``score`` the one
    compared with the threshold; ``relative`` from ``relative_score``). Untested columns (too few
    values, no method) are left out."""
    rows = []
    for result in check.results:
        score = _compared_score(result)
        relative = relative_score(result.get("method"), score, result.get("threshold"))
        if relative is None:
            continue
        rows.append(
            {
                "column": str(result.get("column")),
                "method": result.get("method"),
                "score": score,
                "threshold": result.get("threshold"),
                "relative": relative,
                "is_drifted": bool(result.get("is_drifted")),
            }
        )
    rows.sort(key=lambda row: (-row["relative"], row["column"]))
    return rows[:CHART_COLUMNS_MAX]


def recent_checks(monitor: Monitor) -> list[DriftCheck]:
    """The last ``CHART_CHECKS_MAX`` succeeded checks of ``monitor``, oldest first (one query)."""
    newest = (
        DriftCheck.objects.filter(monitor=monitor, state=CheckState.SUCCEEDED)
        .order_by("-created_at", "-id")
        .only("pk", "created_at", "drifted_fraction", "drift_share", "results")[:CHART_CHECKS_MAX]
    )
    return list(reversed(newest))


def column_history(checks: Sequence[DriftCheck], column: str) -> list[dict[str, Any]]:
    """``column``'s result in each of ``checks``: ``{"check", "method", "score", "threshold"}``
    (``score`` and ``threshold`` None where the check did not test it)."""
    history = []
    for check in checks:
        found: dict[str, Any] = next((r for r in check.results if r.get("column") == column), {})
        history.append(
            {
                "check": check,
                "method": found.get("method"),
                "score": _compared_score(found),
                "threshold": found.get("threshold"),
            }
        )
    return history


# At most this many checks in one drift history answer (``drift_history``).
HISTORY_CHECKS_MAX = 1000


def drift_history(
    monitor: Monitor, *, column: str | None = None, limit: int = CHART_CHECKS_MAX
) -> list[dict[str, Any]]:
    """The monitor's succeeded checks, oldest first, the newest ``limit`` (at most
    ``HISTORY_CHECKS_MAX``), for trend charts and scripts (issue 11): per check its id, when it
    was made and finished, the dataset verdict (``is_dataset_drift``, ``drifted_fraction``,
    ``drift_share``), the performance verdict, and per tested column (only ``column`` when
    given) ``{"method", "score", "threshold", "is_drifted", "status"}``, ``score`` being the value
    compared with the threshold (the adjusted p-value under Benjamini-Hochberg). One query."""
    newest = (
        DriftCheck.objects.filter(monitor=monitor, state=CheckState.SUCCEEDED)
        .order_by("-created_at", "-id")
        .only(
            "pk",
            "created_at",
            "finished_at",
            "is_dataset_drift",
            "drifted_fraction",
            "drift_share",
            "is_performance_drift",
            "results",
            "current_dataset_version_id",
        )[: max(1, min(limit, HISTORY_CHECKS_MAX))]
    )
    history = []
    for check in reversed(newest):
        columns = {
            str(result["column"]): {
                "method": result.get("method"),
                "score": _compared_score(result),
                "threshold": result.get("threshold"),
                "is_drifted": bool(result.get("is_drifted")),
                "status": result.get("status"),
            }
            for result in check.results
            if result.get("column") is not None and (column is None or result.get("column") == column)
        }
        history.append(
            {
                "check": check.pk,
                "created_at": check.created_at,
                "finished_at": check.finished_at,
                "current_dataset_version": check.current_dataset_version_id,
                "is_dataset_drift": check.is_dataset_drift,
                "drifted_fraction": check.drifted_fraction,
                "drift_share": check.drift_share,
                "is_performance_drift": check.is_performance_drift,
                "columns": columns,
            }
        )
    return history


def checked_columns(checks: Sequence[DriftCheck]) -> list[str]:
    """The columns tested by any of ``checks``, by name."""
    return sorted({str(r["column"]) for check in checks for r in check.results if r.get("method")})


def group_trend(check: DriftCheck) -> dict[str, Any]:
    """A check's verdicts per time window and segment (issue 11) for its API and page.

    ``{"check", "state", "alert_on_groups", "is_drift", "columns": [compared columns, in the check's
    order], "windows": {config, "windows": [GroupResult dicts, oldest first], "unparsed_rows",
    "unparsed_examples", "error", "message"} | None, "segments": {config, "segments": [...],
    "error"} | None}``; each group has its verdict, the share of drifted columns (the trend) and,
    per column, its status, method, score and threshold. Windows and segments are None when the
    check asked for none or has not finished.
    """
    groups = check.groups or {}
    windows, segments = groups.get("windows"), groups.get("segments")
    listed = [*((windows or {}).get("windows") or []), *((segments or {}).get("segments") or [])]
    names = {name for group in listed for name in group.get("columns", {})}
    return {
        "check": check.pk,
        "state": check.state,
        "alert_on_groups": bool(groups.get("alert_on_groups")),
        "is_drift": bool(groups.get("is_drift")),
        "columns": [column for column in check.columns if column in names],
        "windows": windows,
        "segments": segments,
    }
