"""A job's compute killed from outside (issue 16): the kernel's OOM killer, an operator's kill -9.

The job's real child process is killed with SIGKILL by a thread of the test while the worker's
plain function runs it; the job is queued again for its next attempt, which resumes from the
checkpoint, until the attempts run out.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

from governance.models import AuditEvent, ModelVersion
from runners.execute import checkpoint_folder, execute_job
from runners.models import JobState
from tests.conftest import submit_training


def _child_pids(job_id: int) -> list[int]:
    """The pids of job ``job_id``'s ``runners.child`` processes (its task file lives in its
    ``steward-job-<id>-`` working folder)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"runners.child" in argv and any(f"steward-job-{job_id}-".encode() in arg for arg in argv):
            found.append(int(entry.name))
    return found


class ChildKiller:
    """Kills job ``job_id``'s child with SIGKILL once ``ready()`` is true, ``times`` times (each
    attempt starts a new child), from a thread; ``kills`` counts what it did."""

    def __init__(self, job_id: int, ready: Callable[[], bool], times: int):
        self.job_id, self.ready, self.times, self.kills = job_id, ready, times, 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        killed: set[int] = set()
        while not self.stop.is_set() and self.kills < self.times:
            pids = [pid for pid in _child_pids(self.job_id) if pid not in killed]
            if pids and self.ready():
                for pid in pids:
                    os.kill(pid, signal.SIGKILL)
                    killed.add(pid)
                self.kills += 1
            time.sleep(0.05)

    def __enter__(self) -> ChildKiller:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


def test_a_child_killed_mid_training_runs_again_from_its_checkpoint_and_registers_one_version(
    dataset_version, registered_model, scientist, training_spec
):
    # Few enough log lines that "resuming" stays in the 50-line tail; batches of 128 leave the
    # killer ~25 epochs (seconds) between the first checkpoint and the end.
    spec = training_spec | {"epochs": 30, "batch_size": 128, "checkpoint_every": 5}
    job = submit_training(dataset_version, registered_model, scientist, spec)
    has_checkpoint = lambda: any(checkpoint_folder(job.pk).glob("epoch-*.pt"))  # noqa: E731

    with ChildKiller(job.pk, has_checkpoint, times=1) as killer:
        first = execute_job(job.pk)
    assert (first, killer.kills) == (JobState.QUEUED, 1)
    retry = AuditEvent.objects.get(object_type="job", object_id=str(job.pk), action="job.retry")
    assert retry.after["reason"].startswith("the job's process was killed by signal 9 without a result")

    assert execute_job(job.pk) == JobState.SUCCEEDED  # the next delivery

    job.refresh_from_db()
    assert job.attempt == 2
    assert "resuming from epoch" in job.log_tail
    assert [record["epoch"] for record in job.history] == list(range(1, 31))  # each epoch once
    assert ModelVersion.objects.filter(model=registered_model).count() == 1
    assert job.output_model_version.source_job_id == job.pk


def test_a_child_killed_on_every_attempt_fails_after_the_last_one_with_the_reason(
    dataset_version, registered_model, scientist, training_spec, settings
):
    job = submit_training(dataset_version, registered_model, scientist, training_spec | {"epochs": 60})

    states = []
    with ChildKiller(job.pk, lambda: True, times=settings.STEWARD_JOB_MAX_ATTEMPTS):
        for _ in range(settings.STEWARD_JOB_MAX_ATTEMPTS):
            states.append(execute_job(job.pk))

    most = settings.STEWARD_JOB_MAX_ATTEMPTS
    assert states == [JobState.QUEUED] * (most - 1) + [JobState.FAILED]
    job.refresh_from_db()
    assert job.error.startswith("the job's process was killed by signal 9 without a result")
    assert job.error.endswith(f"(attempt {most} of {most}; not retried again)")
    assert ModelVersion.objects.count() == 0
    actions = list(
        AuditEvent.objects.filter(object_type="job", object_id=str(job.pk))
        .order_by("id")
        .values_list("action", flat=True)
    )
    assert actions.count("job.retry") == most - 1
    assert actions[-1] == "job.fail"
    assert execute_job(job.pk) == JobState.FAILED  # a late delivery changes nothing
