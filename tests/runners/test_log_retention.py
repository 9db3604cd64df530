"""Job logs under a team's retention policy (issue 12): the ``logs`` kind deletes the output logs
of jobs that ended ``delete_after_days`` ago, audited; running jobs and recent ones keep theirs;
logs have no cold tier."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from governance.actions.retention import apply_retention
from governance.models import AuditEvent
from runners.models import Job
from tests.conftest import run_job, small_training_spec


def _log(client, job) -> list[str]:
    return [chunk["text"] for chunk in client.get(f"/api/jobs/{job.pk}/log/").json()["chunks"]]


def test_logs_of_jobs_ended_long_ago_are_deleted_and_audited(
    client_for, team, owner, scientist, dataset_version, registered_model
):
    old = run_job(
        kind="train",
        dataset_version=dataset_version,
        registered_model=registered_model,
        spec=small_training_spec(),
        actor=scientist,
    )
    recent = run_job(
        kind="train",
        dataset_version=dataset_version,
        registered_model=registered_model,
        spec=small_training_spec(),
        actor=scientist,
    )
    now = timezone.now()
    Job.objects.filter(pk=old.pk).update(finished_at=now - timedelta(days=40))
    client = client_for(owner)
    assert _log(client, old)
    policy = client.put(
        f"/api/teams/{team.pk}/retention-policy/",
        {"rules": {"logs": {"delete_after_days": 30}}},
        format="json",
    )
    assert policy.status_code == 200, policy.json()

    apply_retention(now)

    assert _log(client, old) == []
    assert _log(client, recent)  # ended today: kept
    old.refresh_from_db()
    assert (old.state, old.output_model_version_id is not None) == ("succeeded", True)  # the job stays
    event = AuditEvent.objects.get(action="job_log.delete")
    assert event.object_id == str(old.pk)
    assert event.before["log_chunks"] > 0
    assert event.after == {"log_chunks": 0, "reason": event.after["reason"]}
    assert "30 days" in event.after["reason"]
    apply_retention(now)  # a second run finds nothing more to delete
    assert AuditEvent.objects.filter(action="job_log.delete").count() == 1


def test_logs_have_no_cold_tier(client_for, team, owner):
    response = client_for(owner).put(
        f"/api/teams/{team.pk}/retention-policy/",
        {"rules": {"logs": {"cold_after_days": 7, "delete_after_days": 30}}},
        format="json",
    )

    assert response.status_code == 400
    assert "job logs are database rows, with no cold tier" in response.json()["rules"][0]
