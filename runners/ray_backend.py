"""Running a job's compute on a Ray cluster through the Ray Jobs API (issue 16). No Django import.

The same shape as ``runners.launcher.Launch``: the worker (``runners.execute``) keeps every
database write and the job row; this class hands ``python -m runners.child <task.json>`` (the
same child and JSON-lines protocol as a local run, see ``runners.child``) to the cluster with
``JobSubmissionClient.submit_job`` and follows it: every ``poll_s`` it reads the Ray job's
status and its new log lines (the child's stdout and stderr, merged by Ray), turns the JSON
lines into events and keeps the others as log lines, calls ``check()`` (cancel, lost claim) and
enforces the hard wall-time limit. Stopping is ``stop_job`` (Ray sends SIGTERM, then SIGKILL),
then waiting for the Ray job to be STOPPED.

Where the code and the files are: Steward's own packages travel with each submission as the
runtime environment's ``py_modules`` (the nodes run exactly the worker's version of the child;
Ray caches them by content hash), while their third-party dependencies (torch, pandas, pyarrow)
must be installed in the nodes' ``python``. The task file, the dataset, the checkpoints and the
artifact are paths: on several nodes, they must be on a filesystem every node mounts.

Ray only schedules by memory (``entrypoint_memory``): it does not kill a run that goes over it,
unlike the local launcher; and it cannot deliver the soft wall-time limit's SIGUSR1, so a Ray
run has only the hard one.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runners.launcher import ComputeError, ComputeLost, LimitExceeded, Limits, Usage

if TYPE_CHECKING:
    from ray.job_submission import JobInfo, JobSubmissionClient

logger = logging.getLogger(__name__)

# Steward's packages the child imports (runners.child -> runners.*, governance.datafiles).
PY_MODULES = ("runners", "governance")
PROJECT_ROOT = Path(__file__).resolve().parent.parent
TERMINAL = frozenset({"STOPPED", "SUCCEEDED", "FAILED"})
LOG_TAIL_LINES = 20
# How long to wait for a stopped Ray job to reach STOPPED: Ray kills it 3 s after its SIGTERM
# (RAY_JOB_STOP_WAIT_TIME_S); past this the worker gives up waiting, not stopping.
STOP_WAIT_S = 30.0


def submission_id(job_id: int, attempt: int, created: str) -> str:
    """The Ray submission id of a job's attempt: ``steward-job-<id>-<created>-<attempt>``.

    Stable for one attempt, so a redelivery finds the submission instead of making a second;
    ``created`` (the job's creation time, e.g. ``20261206T131400123456``) keeps ids apart when
    two Steward databases (or a reset one) share a cluster and reuse job ids.
    """
    return f"steward-job-{job_id}-{created}-{attempt}"


def parse_log_lines(text: str) -> tuple[list[dict[str, Any]], int]:
    """Split the complete lines of ``text`` (a chunk of a Ray job's log) into events.

    A line holding a JSON object with an ``event`` key is one of the child's events; any other
    non-blank line becomes ``{"event": "log", "message": line}``. Returns the events and how
    many characters were consumed (a last line without its newline waits for the next read).
    """
    end = text.rfind("\n") + 1
    events: list[dict[str, Any]] = []
    for line in text[:end].splitlines():
        event: Any = None
        with contextlib.suppress(ValueError):
            event = json.loads(line)
        if isinstance(event, dict) and "event" in event:
            events.append(event)
        elif line.strip():
            events.append({"event": "log", "message": line.rstrip()})
    return events, end


class RayLaunch:
    """One run of ``task`` (a JSON-able dict for ``runners.child``) as a Ray job.

    ``address``: the cluster's Jobs API (its dashboard, e.g. ``http://127.0.0.1:8265``);
    ``submission``: this attempt's id (``submission_id``); ``earlier_submissions``: the ids of
    the job's earlier attempts, stopped first (their worker died and left them running);
    ``gpus``: GPUs to reserve for the child (Ray sets its ``CUDA_VISIBLE_DEVICES``).
    ``workdir`` must be on a filesystem the Ray nodes share: the task file is written there.

    ``run`` returns the child's result event; ``usage`` holds what it used afterwards, whether
    ``run`` returned or raised: wall seconds from the Ray job's start and end times, CPU seconds
    and peak resident MB as the child measured them (``usage`` event).
    """

    def __init__(
        self,
        task: dict[str, Any],
        limits: Limits,
        workdir: Path,
        *,
        address: str,
        submission: str,
        gpus: int = 0,
        earlier_submissions: Iterable[str] = (),
    ):
        self.task = {**task, "threads": limits.threads}
        self.limits = limits
        self.workdir = workdir
        self.address = address
        self.submission = submission
        self.gpus = gpus
        self.earlier_submissions = list(earlier_submissions)
        self.usage = Usage()
        self.log_tail: list[str] = []

    def run(
        self,
        on_event: Callable[[dict[str, Any]], None],
        check: Callable[[], None],
        *,
        poll_s: float = 0.5,
        grace_s: float = 2.0,
    ) -> dict[str, Any]:
        """Submit the child (unless this attempt's submission exists) and follow it to its end.

        ``on_event(event)`` gets each progress event (``log``, ``data``, ``epoch``, ``resumed``,
        ``checkpoint``) in the order written, non-JSON lines as ``log`` events; ``check()`` runs
        every ``poll_s`` seconds. Whatever either raises stops the Ray job and propagates.
        Raises ComputeError with the child's own message when it reports an error, when the Ray
        job ends without a result, or when the cluster cannot be reached; LimitExceeded past the
        wall-time limit. ``grace_s`` is unused: Ray's own stop escalates (SIGTERM, then SIGKILL).
        """
        client = self._connect()
        for earlier in self.earlier_submissions:
            self._stop(client, earlier, wait=True)
        if self._info(client) is None:
            self._submit(client)
        else:
            logger.info("Ray job %s exists (a redelivery): following it", self.submission)
        return self._follow(client, on_event, check, poll_s)

    def _connect(self) -> JobSubmissionClient:
        from ray.job_submission import JobSubmissionClient

        try:
            return JobSubmissionClient(self.address)
        except Exception as exc:  # ConnectionError, or a cluster of another Ray version
            raise ComputeError(
                f"could not reach the Ray cluster at {self.address}: {exc}", is_user_error=False
            ) from exc

    def _info(self, client: JobSubmissionClient) -> JobInfo | None:
        """This attempt's Ray job, or None when it was never submitted."""
        try:
            return client.get_job_info(self.submission)
        except RuntimeError as exc:
            if "does not exist" in str(exc):
                return None
            raise ComputeError(f"the Ray cluster at {self.address}: {exc}", is_user_error=False) from exc

    def _submit(self, client: JobSubmissionClient) -> None:
        task_file = self.workdir / "task.json"
        task_file.write_text(json.dumps(self.task))
        threads = str(self.limits.threads)
        runtime_env = {
            "py_modules": [str(PROJECT_ROOT / name) for name in PY_MODULES],
            # The thread pools of torch's backends; CUDA_VISIBLE_DEVICES is Ray's to set.
            "env_vars": {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads},
        }
        memory = self.limits.memory_mb * 2**20 if self.limits.memory_mb else None
        try:
            client.submit_job(
                entrypoint=f"python -m runners.child {task_file}",
                submission_id=self.submission,
                runtime_env=runtime_env,
                entrypoint_num_cpus=self.limits.threads,
                entrypoint_num_gpus=self.gpus or None,
                entrypoint_memory=memory,
                metadata={"steward_submission": self.submission},
            )
        except RuntimeError as exc:
            raise ComputeError(
                f"the Ray cluster at {self.address} refused job {self.submission}: {exc}",
                is_user_error=False,
            ) from exc

    def _follow(
        self,
        client: JobSubmissionClient,
        on_event: Callable[[dict[str, Any]], None],
        check: Callable[[], None],
        poll_s: float,
    ) -> dict[str, Any]:
        ended: dict[str, Any] = {}
        read = 0  # characters of the log consumed so far
        running_since: float | None = None
        started = time.monotonic()
        status = "PENDING"
        try:
            while True:
                status = str(client.get_job_status(self.submission))
                if status == "RUNNING" and running_since is None:
                    running_since = time.monotonic()
                # Read after the status: a terminal status means the log is complete.
                events, used = parse_log_lines(client.get_job_logs(self.submission)[read:])
                read += used
                for event in events:
                    self._take(event, ended, on_event)
                if status in TERMINAL:
                    break
                check()
                wall = self.limits.wall_time_s
                if wall is not None and running_since and time.monotonic() - running_since > wall:
                    raise LimitExceeded(f"exceeded the wall time limit of {wall:g} s; killed")
                time.sleep(poll_s)
        except BaseException:
            self._stop(client, self.submission, wait=True)
            self._record_wall_time(client, started)
            raise
        self._record_wall_time(client, started)
        return self._outcome(client, status, ended)

    def _take(
        self, event: dict[str, Any], ended: dict[str, Any], on_event: Callable[[dict[str, Any]], None]
    ) -> None:
        kind = event.get("event")
        if kind in ("result", "error", "stopped", "usage"):
            ended[kind] = event
            if kind == "usage":
                self.usage.cpu_time_s = float(event.get("cpu_time_s") or 0.0)
                self.usage.peak_rss_mb = float(event.get("peak_rss_mb") or 0.0)
                self.usage.gpu_time_s = event.get("gpu_time_s")
                self.usage.peak_gpu_mem_mb = event.get("peak_gpu_mem_mb")
            return
        if kind == "data":
            self.usage.rows_read = int(event["rows_read"])
            self.usage.bytes_read = int(event["bytes_read"])
        elif kind == "log":
            self.log_tail = [*self.log_tail, str(event.get("message"))][-LOG_TAIL_LINES:]
        on_event(event)

    def _stop(self, client: JobSubmissionClient, submission: str, *, wait: bool) -> None:
        """Ask Ray to stop ``submission`` (if it exists and runs); with ``wait``, until it has."""
        try:
            client.stop_job(submission)
        except Exception as exc:  # never submitted, or the cluster is gone: nothing runs there
            logger.info("Ray job %s not stopped: %s", submission, exc)
            return
        deadline = time.monotonic() + STOP_WAIT_S
        while wait and time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                if str(client.get_job_status(submission)) in TERMINAL:
                    return
            time.sleep(0.2)
        if wait:
            logger.warning("Ray job %s not stopped after %.0f s", submission, STOP_WAIT_S)

    def _record_wall_time(self, client: JobSubmissionClient, started: float) -> None:
        """Wall seconds from the Ray job's start to its end (ms timestamps), else as watched here."""
        info = None
        with contextlib.suppress(Exception):
            info = client.get_job_info(self.submission)
        if info is not None and info.start_time and info.end_time:
            self.usage.wall_time_s = (info.end_time - info.start_time) / 1000.0
        else:
            self.usage.wall_time_s = time.monotonic() - started

    def _outcome(self, client: JobSubmissionClient, status: str, ended: dict[str, Any]) -> dict[str, Any]:
        if "result" in ended and status == "SUCCEEDED":
            return dict(ended["result"])
        if "stopped" in ended:
            raise LimitExceeded(f"stopped after epoch {ended['stopped']['epoch']}; checkpoint saved")
        if "error" in ended:
            error = ended["error"]
            raise ComputeError(str(error["message"]), is_user_error=bool(error.get("is_user_error")))
        message = ""
        with contextlib.suppress(Exception):
            message = client.get_job_info(self.submission).message or ""
        tail = "\n".join(self.log_tail[-5:])
        raise ComputeLost(
            f"Ray job {self.submission} ended {status} without a result"
            + (f" ({message})" if message else "")
            + (f"; its last output: {tail}" if tail else "")
        )
