"""A drift check's state changes as OpenLineage run transitions (issue 10, "Emit").

``DRIFT_CHECKS`` (``monitoring.actions.checks``) calls ``announce_drift_check`` at each start and
end. A check reads the model version, its reference dataset version and the window's dataset
versions; it writes no dataset, so its events have inputs only. The job is the monitor
(``<team>.monitor.<name>``), or ``<team>.drift_check.<model>`` for a check asked for by hand.
"""

from __future__ import annotations

from governance.models import DatasetVersion
from lineage.openlineage import emit
from monitoring.models import DriftCheck
from runners.lineage_events import EVENT_OF_STATE, dataset_version_ref, iso, model_version_ref


def announce_drift_check(check_id: int, state: str) -> None:
    """Emit the check's transition to ``state`` after commit (nothing when not configured)."""
    emit.announce(lambda: describe_drift_check(check_id, state))


def describe_drift_check(check_id: int, state: str) -> emit.RunTransition | None:
    """The run transition of drift check ``check_id`` reaching ``state``, read from the committed
    row; None for a state OpenLineage does not know."""
    event_type = EVENT_OF_STATE.get(state)
    if event_type is None:
        return None
    check = DriftCheck.objects.select_related(
        "team", "monitor", "model_version__model__team", "reference_dataset_version__dataset__team"
    ).get(pk=check_id)
    window = [pk for pk in (check.window or {}).get("dataset_versions", []) if isinstance(pk, int)]
    current = {
        version.pk: version
        for version in DatasetVersion.objects.select_related("dataset__team").filter(
            pk__in=[*window, check.current_dataset_version_id]
        )
    }
    read = [current[pk] for pk in dict.fromkeys([*window, check.current_dataset_version_id]) if pk in current]
    model = check.model_version.model
    if check.monitor is not None:
        job_name = f"{check.team.slug}.monitor.{check.monitor.name}"
    else:
        job_name = f"{check.team.slug}.drift_check.{model.name}"
    moment = check.started_at if event_type == "START" else check.finished_at
    return emit.RunTransition(
        event_type=event_type,
        event_time=iso(moment or check.created_at) or "",
        run_key=f"drift-checks/{check.pk}",
        job_name=job_name,
        job_type="DRIFT_CHECK",
        url=check.get_absolute_url(),
        inputs=[
            model_version_ref(check.model_version),
            dataset_version_ref(check.reference_dataset_version),
            *(dataset_version_ref(version) for version in read),
        ],
        nominal_time=iso(check.created_at),
        error=check.error if event_type == "FAIL" else "",
        attempt=check.attempt,
    )
