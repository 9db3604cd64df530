"""The evidently report of a drift check: a separate, optional artifact for people (issue 11).

The verdict is the engine's and is stored (and its alert raised) before the report is asked for
(``monitoring.actions.checks.do_finish_drift_check`` queues it on commit). This worker side then
samples each side to ``STEWARD_DRIFT_REPORT_MAX_ROWS`` rows, runs evidently in a child process
killed after ``STEWARD_DRIFT_REPORT_TIME_LIMIT_S`` seconds, and stores the HTML; a report that times
out or errors is marked failed with the reason and the check stays as it is.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
from pathlib import Path

import pandas as pd
from django.conf import settings

from governance import artifacts, datafiles
from governance.models import DatasetVersion
from monitoring import drift
from monitoring.actions.checks import claim_drift_report, record_drift_report
from monitoring.models import DriftCheck

logger = logging.getLogger(__name__)


def _sampled_frame(
    version: DatasetVersion, columns: list[str], max_rows: int, seed: int, where: dict | None = None
) -> tuple[pd.DataFrame, int]:
    """A seeded uniform sample of at most ``max_rows`` rows of the version's ``columns``, taken
    while its file streams by (``datafiles.RowSampler``), and the number of rows read."""
    return datafiles.sample_frames(version.iter_frames(where, columns=columns), max_rows, seed, columns)


def execute_drift_report(check_id: int) -> str:
    """Build the evidently report of check ``check_id`` once; returns the report's state after.

    Only a queued report is built (a redelivery, or a check whose report was not asked for, does
    nothing). Never raises for the report's own faults: each is recorded as the report's error.
    """
    if not claim_drift_report(check_id):
        return DriftCheck.objects.filter(pk=check_id).values_list("report_state", flat=True).first() or ""
    check = DriftCheck.objects.select_related("reference_dataset_version").get(pk=check_id)
    max_rows = settings.STEWARD_DRIFT_REPORT_MAX_ROWS
    try:
        reference, reference_rows = _sampled_frame(
            check.reference_dataset_version, check.columns, max_rows, 0, check.reference_where
        )
        ids = check.window.get("dataset_versions") or [check.current_dataset_version_id]
        versions = {version.pk: version for version in DatasetVersion.objects.filter(pk__in=ids)}
        parts = [_sampled_frame(versions[pk], check.columns, max_rows, 1) for pk in ids]
        current_rows = sum(rows for _frame, rows in parts)
        current = drift.sample_rows(
            pd.concat([frame for frame, _rows in parts], ignore_index=True), max_rows, 1
        )
        columns = [c for c in check.columns if c in reference.columns and c in current.columns]
        with tempfile.TemporaryDirectory(prefix="steward-report-") as folder:
            html_path, results = drift.compare_with_time_limit(
                reference,
                current,
                columns,
                check.drift_share,
                settings.STEWARD_DRIFT_REPORT_TIME_LIMIT_S,
                Path(folder),
            )
            html = html_path.read_bytes()
    except drift.ReportTimeout as exc:
        record_drift_report(check_id, error=f"{exc}; the check's verdicts stand")
    except Exception as exc:
        if not isinstance(exc, drift.DriftInputError | datafiles.DataFileError | FileNotFoundError):
            logger.exception("evidently report of drift check %s failed", check_id)
        record_drift_report(check_id, error=f"evidently could not make its report: {exc}")
    else:
        path = artifacts.store_bytes(html, hashlib.sha256(html).hexdigest(), "reports", ".html")
        sampled = max_rows if max(reference_rows, current_rows) > max_rows else None
        record_drift_report(check_id, report=path, evidently_results=results, sampled_rows=sampled)
    return DriftCheck.objects.values_list("report_state", flat=True).get(pk=check_id)
