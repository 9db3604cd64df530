"""Celery tasks: thin wrappers that take ids and call the plain functions."""

from celery import Task, shared_task
from django.conf import settings

from runners import run_artifacts
from runners.actions import do_fail_stale_jobs, do_redispatch_queued_jobs
from runners.execute import execute_job
from runners.schedules import do_fire_job_schedule


@shared_task(bind=True, name="runners.tasks.run_job")
def run_job(self: Task, job_id: int) -> str:
    return execute_job(job_id, worker=self.request.hostname or "")


@shared_task(name="runners.tasks.fail_stale_jobs")
def fail_stale_jobs() -> list[int]:
    return do_fail_stale_jobs(settings.STEWARD_JOB_HEARTBEAT_TIMEOUT_S)


@shared_task(name="runners.tasks.redispatch_queued_jobs")
def redispatch_queued_jobs() -> list[int]:
    return do_redispatch_queued_jobs(
        settings.STEWARD_JOB_REDISPATCH_AFTER_S, settings.STEWARD_JOB_MAX_DISPATCHES
    )


@shared_task(name="runners.tasks.fire_job_schedule")
def fire_job_schedule(schedule_id: int) -> int | None:
    """Beat's call at each cron time of a job schedule: the id of the job submitted, or None."""
    job = do_fire_job_schedule(schedule_id)
    return job.pk if job is not None else None


@shared_task(name="runners.tasks.collect_run_artifacts", ignore_result=True)
def collect_run_artifacts() -> int:
    """Daily: delete the stored bytes of tracked runs' files that a later upload replaced
    (``run_artifacts.do_collect_unreferenced``). Returns how many objects were deleted."""
    return run_artifacts.do_collect_unreferenced()
