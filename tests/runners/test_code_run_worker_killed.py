"""A code run whose worker is killed (issue 17): nothing of the run outlives the worker, and the
run starts again on another worker with a new token, the old one revoked. Real Celery workers in
their own processes (tests/runners/test_durable_worker.py's)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from governance.models import ApiToken, TokenScope
from runners import tasks
from runners.models import Job, JobState
from tests.runners.code_fixtures import make_code_version
from tests.runners.test_durable_worker import _state, _wait_until, start_worker  # noqa: F401 - fixture

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def _processes_of(marker: str) -> list[str]:
    """The command lines (from /proc) that hold ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                line = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if marker in line:
                found.append(line)
    return found


def test_a_killed_workers_code_run_leaves_no_process_and_runs_again_with_a_new_token(
    start_worker,  # noqa: F811 - the fixture imported above
    client_for,
    team,
    scientist,
):
    code = make_code_version(
        team,
        scientist,
        {
            "MLproject": "entry_points: {main: {command: python slow.py}}",
            "slow.py": """
                import time
                print("started", flush=True)
                time.sleep(15)
                print("finished", flush=True)
            """,
        },
    )
    first = start_worker("w1")
    answer = client_for(scientist).post(
        "/api/jobs/", {"kind": "code", "code_version": code.pk, "entry_point": "main"}, format="json"
    )
    assert answer.status_code == 201, answer.json()
    job_id = answer.json()["id"]
    _wait_until("started", lambda: "started" in Job.objects.get(pk=job_id).log_tail)
    workdir = f"steward-job-{job_id}-"
    assert _processes_of(workdir), "the run's sandbox and API proxy name its folder"

    first.kill()  # the worker alone, as the OOM killer would: not the run's process group
    first.wait()

    # The sandbox dies with the worker (bwrap --die-with-parent); so does the worker's end of the
    # API proxy, which a killed worker used to leave listening for ever.
    _wait_until("gone", lambda: not _processes_of(workdir), timeout_s=30)
    assert Job.objects.get(pk=job_id).state == JobState.RUNNING
    start_worker("w2")
    _wait_until(
        "stale", lambda: Job.objects.get(pk=job_id).heartbeat_at < timezone.now() - timedelta(seconds=4)
    )
    assert tasks.fail_stale_jobs() == []  # attempts left: sent again, not failed
    _wait_until("finished", lambda: _state(job_id) in (JobState.SUCCEEDED, JobState.FAILED))

    job = Job.objects.get(pk=job_id)
    assert (job.state, job.error, job.attempt) == (JobState.SUCCEEDED, "", 2)
    tokens = ApiToken.objects.filter(scope=TokenScope.JOB, job_id=job_id)
    assert tokens.count() == 2  # one per attempt
    assert not tokens.filter(revoked_at__isnull=True).exists()
