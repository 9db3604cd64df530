"""Running a drift check: the plain function behind the Celery task."""

from __future__ import annotations

import hashlib
import logging

from governance import artifacts, datafiles
from monitoring import drift
from monitoring.actions import claim_drift_check, do_finish_drift_check
from monitoring.models import CheckState, DriftCheck

logger = logging.getLogger(__name__)


def _frame(version, where=None):
    frame = datafiles.read_frame(version.path, version.format, version.original_filename or version.file)
    return datafiles.apply_where(frame, where) if where else frame


def execute_drift_check(check_id: int) -> str:
    """Run drift check ``check_id`` once; redelivery of a finished or claimed check does nothing.

    The reference is the model version's training rows (its training spec's ``where`` applied
    to the training dataset version), the current side the whole current dataset version.
    """
    check = DriftCheck.objects.filter(pk=check_id).select_related("model_version").first()
    if check is None:
        return "missing"
    if check.state == CheckState.RUNNING:
        do_finish_drift_check(check_id, error="the worker running this check stopped before it finished")
        return CheckState.FAILED
    if not claim_drift_check(check_id):
        return check.state
    try:
        reference = _frame(check.reference_dataset_version, check.model_version.training_spec.get("where"))
        current = _frame(check.current_dataset_version)
        result = drift.compare(reference, current, check.columns, check.drift_share)
        html = result.html.encode("utf-8")
        report = artifacts.store_bytes(html, hashlib.sha256(html).hexdigest(), "reports", ".html")
        do_finish_drift_check(check_id, result=result, report=report)
    except (
        drift.DriftInputError,
        datafiles.DataFileError,
        datafiles.RowFilterError,
        FileNotFoundError,
    ) as exc:
        do_finish_drift_check(check_id, error=str(exc))
    except Exception as exc:
        logger.exception("drift check %s failed", check_id)
        do_finish_drift_check(check_id, error=f"internal error: {type(exc).__name__}: {exc}")
    return DriftCheck.objects.get(pk=check_id).state
