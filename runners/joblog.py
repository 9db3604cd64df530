"""A job's whole log (issue 17): its code's stdout and stderr and Steward's own lines, stored in
order as ``JobLogChunk`` rows, bounded by ``STEWARD_JOB_LOG_MAX_BYTES``; ``Job.log_tail`` keeps
the last ``LOG_TAIL_LINES`` lines (each cut at ``LOG_TAIL_LINE_CHARS``) for the pages that show a
glance. Telemetry, not audited."""

from __future__ import annotations

import datetime
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Func, IntegerField, Max, Q, QuerySet, Sum
from django.db.models.functions import Length
from django.utils import timezone

from runners.actions import JOBS
from runners.lifecycle import ClaimLost
from runners.models import TERMINAL_STATES, Job, JobLogChunk

LOG_TAIL_LINES = 50
# Each line of the tail is cut to this many characters (the whole log keeps it whole): a code
# printing 64 KiB pieces of one long line made a 3 MB tail, sent with the job in every list.
LOG_TAIL_LINE_CHARS = 1000
STEWARD_STREAM = "steward"
TRUNCATED_NOTE = "log truncated at {limit} bytes; later output is not kept"
TRUNCATED_PREFIX = "log truncated at "
PAGE_CHUNKS = 1000
# What a LogBuffer holds at most before it writes, whatever its interval: the worker's memory
# (its estimate: a line's characters and ~100 bytes of Python objects). A code printing short
# lines fast (``yes``) held ~50 MB per second of interval in the worker.
BUFFER_MAX_BYTES = 4 * 2**20
LINE_OVERHEAD_BYTES = 100


class OctetLength(Func):
    """Bytes of a text column in UTF-8 (PostgreSQL's ``OCTET_LENGTH``; SQLite counts a blob)."""

    function = "OCTET_LENGTH"
    output_field = IntegerField()

    def as_sqlite(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        return self.as_sql(compiler, connection, template="LENGTH(CAST(%(expressions)s AS BLOB))", **extra)


@dataclass(frozen=True)
class LogState:
    """Where a job's stored log stands: its last ``seq`` (0: none), its size in bytes, and
    whether it was cut at the bound."""

    last_seq: int
    size_bytes: int
    is_truncated: bool


def log_state(job_id: int) -> LogState:
    """The job's ``LogState``, in one query."""
    found = JobLogChunk.objects.filter(job_id=job_id).aggregate(
        last=Max("seq"),
        size=Sum(OctetLength("text")),
        notes=Count("pk", filter=Q(stream=STEWARD_STREAM, text__startswith=TRUNCATED_PREFIX)),
    )
    return LogState(found["last"] or 0, found["size"] or 0, bool(found["notes"]))


# The state each (job, attempt) this process writes left its log in: the attempt is the only
# writer while it holds its claim (a lost claim raises before anything is written), so the sum
# over every chunk is read once per attempt, not on every poll of a growing log.
_written: dict[tuple[int, int], LogState] = {}
_WRITTEN_MAX = 256


def _state_for(job_id: int, attempt: int) -> LogState:
    """The job's ``LogState``: what this process last wrote for the attempt when the log still
    ends at that chunk (one indexed look at the last ``seq``), else summed again."""
    known = _written.get((job_id, attempt))
    if known is not None:
        last = JobLogChunk.objects.filter(job_id=job_id).aggregate(last=Max("seq"))["last"] or 0
        if last == known.last_seq:
            return known
    if len(_written) >= _WRITTEN_MAX:
        _written.clear()
    return log_state(job_id)


def _grouped(lines: Sequence[tuple[str, str]]) -> list[tuple[str, list[str]]]:
    """Consecutive lines of one stream together: one chunk each."""
    groups: list[tuple[str, list[str]]] = []
    for stream, text in lines:
        if groups and groups[-1][0] == stream:
            groups[-1][1].append(text)
        else:
            groups.append((stream, [text]))
    return groups


def write_log(job_id: int, attempt: int, lines: Sequence[tuple[str, str]], **fields: Any) -> None:
    """Append ``lines`` ([(stream, text)], text without its newline) to the job's log as
    attempt ``attempt``: one insert (consecutive lines of a stream make one chunk, each line
    ending in a newline), ``log_tail`` and ``heartbeat_at`` updated with ``fields`` (progress,
    history: telemetry). Past ``STEWARD_JOB_LOG_MAX_BYTES`` the lines that do not fit are dropped
    and one ``steward`` chunk says so; nothing is stored after it (the tail still moves).

    Raises ClaimLost when the job no longer runs under ``attempt``: nothing is written.
    """
    limit = settings.STEWARD_JOB_LOG_MAX_BYTES
    # Inside a caller's transaction this write may still be rolled back: nothing is remembered.
    remember = not transaction.get_connection().in_atomic_block
    written: LogState | None = None
    with transaction.atomic():
        job = Job.objects.only("log_tail").get(pk=job_id)
        tail = [*job.log_tail.splitlines(), *(text for _, text in lines)][-LOG_TAIL_LINES:]
        tail = [text[:LOG_TAIL_LINE_CHARS] for text in tail]
        fields |= {"log_tail": "\n".join(tail), "heartbeat_at": timezone.now()}
        if not JOBS.record_progress(job_id, attempt, **fields):
            raise ClaimLost(f"job {job_id} no longer runs as attempt {attempt}")
        if not lines:
            return
        state = _state_for(job_id, attempt) if remember else log_state(job_id)
        if state.is_truncated:
            return
        seq, size, now = state.last_seq, state.size_bytes, timezone.now()
        chunks = []
        for stream, texts in _grouped(lines):
            kept = []
            for text in texts:
                size += len(text.encode("utf-8")) + 1
                if size > limit:
                    break
                kept.append(text + "\n")
            if kept:
                seq += 1
                chunks.append(
                    JobLogChunk(
                        job_id=job_id,
                        seq=seq,
                        attempt=attempt,
                        stream=stream,
                        text="".join(kept),
                        created_at=now,
                    )
                )
            if size > limit:
                seq += 1
                note = TRUNCATED_NOTE.format(limit=limit) + "\n"
                chunks.append(
                    JobLogChunk(
                        job_id=job_id,
                        seq=seq,
                        attempt=attempt,
                        stream=STEWARD_STREAM,
                        text=note,
                        created_at=now,
                    )
                )
                break
        JobLogChunk.objects.bulk_create(chunks)
        written = LogState(seq, size, size > limit)
    if remember and written is not None:
        _written[(job_id, attempt)] = written


def chunks_after(job_id: int, after: int, limit: int = PAGE_CHUNKS) -> list[JobLogChunk]:
    """At most ``limit`` chunks of the job with ``seq > after``, in order."""
    return list(JobLogChunk.objects.filter(job_id=job_id, seq__gt=after).order_by("seq")[:limit])


def whole_log(job_id: int) -> Iterator[str]:
    """The job's whole stored log as text, read a page of chunks at a time."""
    after = 0
    while page := chunks_after(job_id, after):
        for chunk in page:
            yield chunk.text
        after = page[-1].seq


class LogBuffer:
    """Lines of a running code run gathered between writes: ``flush`` writes them in one insert
    (``write_log``) when ``interval_s`` has passed since the last write (the job page reads the
    log every 1.5 s; a write per 0.5 s poll cost the worker CPU the training needs, issue 17's
    runner overhead: the worker passes ``STEWARD_LIVE_FLUSH_S``); ``flush(force=True)`` writes
    whatever is pending (the run's end). ``add`` writes at once when the pending lines reach
    ``BUFFER_MAX_BYTES``: the interval paces the writes, it does not size the worker's memory."""

    def __init__(self, job_id: int, attempt: int, interval_s: float):
        self.job_id = job_id
        self.attempt = attempt
        self.interval_s = interval_s
        self.lines: list[tuple[str, str]] = []
        self.pending_bytes = 0
        self.written = 0.0

    def add(self, stream: str, text: str) -> None:
        self.lines.append((stream, text))
        self.pending_bytes += len(text) + LINE_OVERHEAD_BYTES
        if self.pending_bytes >= BUFFER_MAX_BYTES:
            self.flush(force=True)

    def flush(self, *, force: bool = False) -> None:
        if not self.lines or (not force and time.monotonic() - self.written < self.interval_s):
            return
        lines, self.lines = self.lines, []
        self.pending_bytes = 0
        write_log(self.job_id, self.attempt, lines)
        self.written = time.monotonic()


def live_log_keys(team_id: int) -> QuerySet:
    """No storage keys: job logs are rows, not stored objects, so nothing of them moves to the
    cold tier (the retention lifecycle asks every kind)."""
    return JobLogChunk.objects.none().values("text")


def do_expire_job_logs(team_id: int, registered_before: datetime.datetime, reason: str) -> dict[str, int]:
    """Delete the output logs of team ``team_id``'s jobs that ended before ``registered_before``
    (a job still running or queued keeps its log, whatever its age), as the system: one
    ``job_log.delete`` audit event per job, naming how many chunks and characters went and why.
    The job, its state, error and metrics stay. Returns ``{"deleted": jobs, "held": 0,
    "skipped": 0}`` (logs have no legal hold)."""
    from governance.audit import record_audit_event

    ended = Job.objects.filter(
        team_id=team_id, finished_at__lte=registered_before, state__in=TERMINAL_STATES
    ).filter(log_chunks__isnull=False)
    deleted = 0
    for job_id in ended.order_by("pk").values_list("pk", flat=True).distinct():
        with transaction.atomic():
            job = Job.objects.select_for_update().get(pk=job_id)
            totals = JobLogChunk.objects.filter(job=job).aggregate(
                chunks=Count("pk"), characters=Sum(Length("text"))
            )
            if not totals["chunks"]:
                continue  # another run deleted it meanwhile
            JobLogChunk.objects.filter(job=job).delete()
            record_audit_event(
                actor=None,
                action="job_log.delete",
                obj=job,
                before={"log_chunks": totals["chunks"], "log_characters": totals["characters"] or 0},
                after={"log_chunks": 0, "reason": reason},
            )
            deleted += 1
    return {"deleted": deleted, "held": 0, "skipped": 0}
