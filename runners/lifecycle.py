"""One lifecycle for every row a worker runs (a Job, a DriftCheck): NetBox's ``JobRunner`` idea.

The database row is the source of truth; Celery only delivers its id (issue 16: never lost, never
twice). A ``Lifecycle`` is parameterised by the model, its state values and the name of its task,
and gives every kind:

- ``enqueue``: send the task (called after commit) and record the send on the row
  (``dispatch_count``, ``dispatched_at``); a broker outage leaves the row queued with its
  ``dispatch_error``, and ``redispatch`` (beat) sends queued rows with no live delivery again;
- ``begin``: the start of a delivery: a missing or finished row is left alone; a row found
  ``running`` with a fresh heartbeat is another delivery's (left alone); one whose heartbeat is
  stale lost its worker and is claimed again, up to ``STEWARD_JOB_MAX_ATTEMPTS``, then failed;
  otherwise queued -> running with a conditional UPDATE, so one delivery runs it. Each claim bumps
  ``attempt``, the fencing token: ``fenced`` refuses the success of a run that lost its claim;
- ``run``: ``begin``, the body, and its end: cancelled, failed with the message of an input error,
  or failed with an internal error (logged with its traceback), each only under its own claim;
- ``finish`` / ``fail``: a non-terminal row moves to a terminal state once, with its audit event;
- ``record_progress``, ``heartbeat`` and ``fail_stale``: telemetry of a running row, and the sweep
  of rows whose worker went silent.

Lives in ``runners`` because jobs came first; ``monitoring`` imports it (issue 8: one lifecycle).
"""

from __future__ import annotations

import datetime
import logging
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from celery import current_app
from django.conf import settings
from django.db import DatabaseError, close_old_connections, models, transaction
from django.db.models import F, Q
from django.utils import timezone

from governance.audit import record_audit_event, snapshot

logger = logging.getLogger(__name__)

MISSING = "missing"
QUEUED, RUNNING, FAILED, CANCELLED = "queued", "running", "failed", "cancelled"

Row = TypeVar("Row", bound=models.Model)


class Cancelled(Exception):
    """A cancel was requested while the row was running: ``run`` records it as cancelled."""


class ClaimLost(Exception):
    """The row is no longer running under this run's claim (another delivery re-claimed it, or it
    finished): raised by ``fenced`` so the run's outcome is not written."""


@dataclass(frozen=True)
class Lifecycle(Generic[Row]):
    """The lifecycle of ``model`` rows (fields ``state``, ``started_at``, ``finished_at``, ``error``,
    ``created_by``, ``celery_task_id``, ``heartbeat_at``, ``attempt``, ``dispatch_count``,
    ``dispatched_at``, ``dispatch_error``) run by the Celery task named ``task_name``.

    ``noun`` prefixes the audit actions (``<noun>.start``, ``<noun>.retry``, ``<noun>.fail``);
    ``terminal`` are the final states; ``on_claim`` / ``on_fail`` are extra fields set when claimed
    / failed. ``audit_start``: whether the first claim writes an audit event (jobs do; a drift
    check's start is telemetry; a retry is always audited). ``broker_error``: the row's
    ``dispatch_error`` when the broker is unreachable (``{exc}`` is filled in); ``orphan_error``:
    why a row whose worker died on every attempt failed (``{attempts}``); ``undelivered_error``:
    why a row sent ``{count}`` times that no worker started failed.
    """

    model: type[Row]
    noun: str
    task_name: str
    terminal: frozenset[str]
    broker_error: str
    orphan_error: str
    undelivered_error: str
    audit_start: bool = False
    # The row's "a person asked to cancel" flag, if its kind can be cancelled: a row whose worker
    # died after the request ends cancelled instead of running again.
    cancel_flag: str | None = None
    on_claim: Callable[[datetime.datetime], dict[str, Any]] = field(default=lambda now: {})
    on_fail: dict[str, Any] = field(default_factory=dict)
    # Rows of the model this lifecycle does not run (tracked MLflow runs run outside Steward: no
    # delivery, no stale sweep; their client ends them), as ``exclude()`` lookups.
    not_run: dict[str, Any] = field(default_factory=dict)
    # Rows that may be sent to the broker at ``now`` (issue 16: a job waiting for its start
    # window, or one a Kubernetes submitter runs, is not), as a ``filter()`` condition; None: all.
    deliverable: Callable[[datetime.datetime], Q] | None = None
    # Routing: the queue of a row's task is ``queue_for(<the row's queue_field>)``, read at each
    # send (a job's resource class -> its queue). None: Celery's default routing. ``queue_for``
    # raises LookupError (its message: the reason) for a row no queue takes: the row fails.
    queue_field: str | None = None
    queue_for: Callable[[Any], str] | None = None
    # Told ``(row id, state)`` inside the transaction of each start (running, every attempt) and
    # end (a terminal state): the kind's OpenLineage emission (issue 10) hangs here.
    on_transition: Callable[[int, str], None] | None = None

    @property
    def rows(self) -> models.QuerySet[Row]:
        return (
            self.model._default_manager.exclude(**self.not_run)
            if self.not_run
            else self.model._default_manager.all()
        )

    def enqueue(self, row_id: int) -> bool:
        """Send the row's task to the broker (under its ``celery_task_id``); True if it was sent,
        False if the broker could not be reached or the row is not ``deliverable`` yet.

        Sent by name, so this layer does not import the task modules above it, to the row's queue
        (``queue_field`` / ``queue_for``; a row no queue takes is failed instead). The send is
        recorded on the row (delivery telemetry, not audited); a failed send only records its
        error: the row stays queued and ``redispatch`` sends it later (issue 16).
        """
        rows = self.rows.filter(pk=row_id)
        if self.deliverable is not None:
            rows = rows.filter(self.deliverable(timezone.now()))
        fields = ["celery_task_id", "dispatch_count", *([self.queue_field] if self.queue_field else [])]
        found = rows.values_list(*fields).first()
        if found is None:
            # Not due yet (its window has not opened): ``redispatch`` sends it once it is.
            logger.info("%s %s is not due for delivery; not sent", self.noun, row_id)
            return False
        task_id, sends, *route = found
        queue = None
        if self.queue_for is not None and route:
            try:
                queue = self.queue_for(route[0])
            except LookupError as exc:
                self.fail(row_id, str(exc.args[0] if exc.args else exc))
                return False
        if sends:
            # A re-send gets its own task id: Celery keeps results by id, and a delivery of the
            # earlier message that returned while the row ran elsewhere stored SUCCESS under it,
            # after which Celery treats a worker lost under that id as done and stops re-queuing.
            task_id = str(uuid.uuid4())
            self.rows.filter(pk=row_id).update(celery_task_id=task_id)
        try:
            routing = {"queue": queue} if queue else {}
            current_app.send_task(self.task_name, args=[row_id], task_id=task_id, retry=True, **routing)
        except Exception as exc:
            logger.warning("could not enqueue %s %s: %s", self.noun, row_id, exc)
            self.rows.filter(pk=row_id).update(dispatch_error=self.broker_error.format(exc=exc)[:4000])
            return False
        self.rows.filter(pk=row_id).update(
            dispatch_count=F("dispatch_count") + 1, dispatched_at=timezone.now(), dispatch_error=""
        )
        return True

    def redispatch(self, after_s: int, max_dispatches: int) -> list[int]:
        """Send again the queued rows with no live delivery; returns the ids sent.

        A row has none when its task never reached the broker, or reached it long enough ago that
        it may have been lost (a broker restart) or no worker takes its queue: ``after_s`` seconds
        after the first send, then twice as long after each further one, so a row merely waiting
        behind long jobs gets a duplicate message every doubling of its wait, not every
        ``after_s`` (with the defaults, 12 sends cover about two weeks). A row already sent
        ``max_dispatches`` times is failed instead. Stops at the first failed send: the broker is
        down, the next run retries. A duplicate message is harmless: the claim runs a row once.
        """
        now = timezone.now()
        queued = self.rows.filter(state=QUEUED)
        if self.deliverable is not None:
            queued = queued.filter(self.deliverable(now))
        candidates = (
            queued.filter(
                Q(dispatched_at__isnull=True) | Q(dispatched_at__lt=now - datetime.timedelta(seconds=after_s))
            )
            .order_by("pk")
            .values_list("pk", "dispatch_count", "dispatched_at")
        )
        due = [
            (row_id, count)
            for row_id, count, dispatched_at in candidates
            if dispatched_at is None
            or now - dispatched_at >= datetime.timedelta(seconds=after_s * 2 ** min(max(count - 1, 0), 30))
        ]
        sent = []
        for row_id, count in due:
            if count >= max_dispatches:
                self.fail(row_id, self.undelivered_error.format(count=count), expect={"state": QUEUED})
            elif self.enqueue(row_id):
                sent.append(row_id)
            elif self.rows.filter(pk=row_id, state=QUEUED).exists():
                break
            # else: the row could not be routed and was failed; the broker may well be up.
        return sent

    def claim(self, row_id: int) -> bool:
        """queued -> running with a conditional UPDATE; False if another delivery claimed it."""
        return self._claim(row_id) is not None

    def _claim(self, row_id: int) -> int | None:
        """queued -> running, bumping ``attempt``: the attempt claimed, or None."""
        with transaction.atomic():
            now = timezone.now()
            claimed = self.rows.filter(pk=row_id, state=QUEUED).update(
                state=RUNNING,
                started_at=now,
                heartbeat_at=now,
                attempt=F("attempt") + 1,
                **self.on_claim(now),
            )
            if not claimed:
                return None
            row = self.rows.get(pk=row_id)
            self.announce(row_id, RUNNING)
            if self.audit_start:
                record_audit_event(
                    actor=None,
                    on_behalf_of=getattr(row, "created_by", None),
                    action=f"{self.noun}.start",
                    obj=row,
                    before={"state": QUEUED},
                    after={"state": RUNNING},
                )
        return int(getattr(row, "attempt"))  # noqa: B009 - the model is generic here

    def _reclaim(self, row_id: int, attempt: int, heartbeat_at: datetime.datetime | None) -> int | None:
        """Claim a running row whose worker died (its heartbeat as read is stale): attempt + 1,
        audited as ``<noun>.retry``; None if another delivery or the run itself moved it first."""
        with transaction.atomic():
            now = timezone.now()
            claimed = self.rows.filter(
                pk=row_id, state=RUNNING, attempt=attempt, heartbeat_at=heartbeat_at
            ).update(started_at=now, heartbeat_at=now, attempt=attempt + 1, **self.on_claim(now))
            if not claimed:
                return None
            self.announce(row_id, RUNNING)
            row = self.rows.get(pk=row_id)
            record_audit_event(
                actor=None,
                on_behalf_of=getattr(row, "created_by", None),
                action=f"{self.noun}.retry",
                obj=row,
                before={"state": RUNNING, "attempt": attempt},
                after={"state": RUNNING, "attempt": attempt + 1},
            )
        return attempt + 1

    def begin(self, row_id: int) -> int | str:
        """Start a delivery of the row: the attempt this delivery claimed (run it now), otherwise
        the state to report (``missing``, its terminal state, ``running`` on a live worker, or
        ``failed`` when its worker died on the last allowed attempt)."""
        found = self.rows.filter(pk=row_id).values_list("state", "attempt", "heartbeat_at").first()
        if found is None:
            logger.warning("%s %s does not exist; nothing to run", self.noun, row_id)
            return MISSING
        state, attempt, heartbeat_at = found
        if state in self.terminal:
            return state
        if state == RUNNING:
            timeout = datetime.timedelta(seconds=settings.STEWARD_JOB_HEARTBEAT_TIMEOUT_S)
            if heartbeat_at is not None and heartbeat_at >= timezone.now() - timeout:
                return RUNNING  # a duplicate delivery: its worker is alive
            if self._cancel_orphan(row_id, attempt):
                return CANCELLED
            if attempt >= settings.STEWARD_JOB_MAX_ATTEMPTS:
                reason = self.orphan_error.format(attempts=attempt)
                self.fail(row_id, reason, expect={"state": RUNNING, "attempt": attempt})
                return self.rows.values_list("state", flat=True).get(pk=row_id)
            claimed = self._reclaim(row_id, attempt, heartbeat_at)
        else:
            claimed = self._claim(row_id)
        if claimed is None:
            return self.rows.values_list("state", flat=True).get(pk=row_id)
        return claimed

    @contextmanager
    def fenced(self, row_id: int, attempt: int) -> Iterator[None]:
        """A transaction that writes a run's outcome only while the row is still running under
        ``attempt`` (the fencing token of its claim): the row is locked and compared first, and
        ``ClaimLost`` is raised before anything is written otherwise."""
        with transaction.atomic():
            found = self.rows.select_for_update().filter(pk=row_id).values_list("state", "attempt").first()
            if found != (RUNNING, attempt):
                raise ClaimLost(f"{self.noun} {row_id} is {found}, no longer running as attempt {attempt}")
            yield

    def run(
        self,
        row_id: int,
        body: Callable[[int], None],
        *,
        user_errors: tuple[type[Exception], ...],
        retry_errors: tuple[type[Exception], ...] = (),
    ) -> str:
        """Run ``body(attempt)`` once for this delivery (see ``begin``); returns the row's state after.

        ``body`` records success itself, inside ``fenced(row_id, attempt)`` with its outputs.
        ``Cancelled`` marks the row cancelled; one of ``retry_errors`` (the compute died without
        an answer: killed by a signal, crashed) queues the row again for its next attempt while
        attempts remain (``retry``), else fails it; one of ``user_errors`` fails it with its
        message; anything else fails it as an internal error, logged with its traceback. Each
        outcome is written only under this run's claim: a run that lost it (``ClaimLost``) writes
        nothing.
        """
        attempt = self.begin(row_id)
        if isinstance(attempt, str):
            return attempt
        own = {"state": RUNNING, "attempt": attempt}
        try:
            body(attempt)
        except ClaimLost as exc:
            logger.warning("%s; its outcome is dropped", exc)
        except retry_errors as exc:
            self.retry(row_id, attempt, str(exc))
        except Cancelled:
            with transaction.atomic():
                self.finish(
                    row_id, CANCELLED, f"{self.noun}.cancelled", expect=own, error="cancelled while running"
                )
        except user_errors as exc:
            self.fail(row_id, str(exc), expect=own)
        except Exception as exc:
            logger.exception("%s %s failed", self.noun, row_id)
            self.fail(row_id, f"internal error: {type(exc).__name__}: {exc}", expect=own)
        return self.rows.values_list("state", flat=True).get(pk=row_id)

    def retry(self, row_id: int, attempt: int, reason: str) -> bool:
        """Queue a running row again after its compute died under ``attempt`` (``reason``): the
        next delivery claims it as attempt + 1 (a training job resumes from its checkpoint).
        Audited as ``<noun>.retry`` with the reason; sent to the broker after commit. On the last
        allowed attempt (``STEWARD_JOB_MAX_ATTEMPTS``) the row fails instead, naming the reason and
        the attempts; a row someone asked to cancel is cancelled. False if the row no longer ran
        under ``attempt`` (nothing written)."""
        most = settings.STEWARD_JOB_MAX_ATTEMPTS
        if self._cancel_orphan(row_id, attempt):
            return True
        if attempt >= most:
            return self.fail(
                row_id,
                f"{reason} (attempt {attempt} of {most}; not retried again)",
                expect={"state": RUNNING, "attempt": attempt},
            )
        with transaction.atomic():
            requeued = self.rows.filter(pk=row_id, state=RUNNING, attempt=attempt).update(
                state=QUEUED, heartbeat_at=None, dispatched_at=None
            )
            if not requeued:
                return False
            row = self.rows.get(pk=row_id)
            record_audit_event(
                actor=None,
                on_behalf_of=getattr(row, "created_by", None),
                action=f"{self.noun}.retry",
                obj=row,
                before={"state": RUNNING, "attempt": attempt},
                after={"state": QUEUED, "attempt": attempt, "reason": reason[:2000]},
            )
            transaction.on_commit(lambda: self.enqueue(row_id))
        return True

    def finish(
        self,
        row_id: int,
        state: str,
        action: str,
        *,
        now: datetime.datetime | None = None,
        expect: dict[str, Any] | None = None,
        **fields: Any,
    ) -> tuple[Row, bool]:
        """Move a non-terminal row to ``state`` with ``fields`` and audit it (caller's transaction).

        Returns the (locked) row and whether it changed: a finished row is final, so a redelivery
        or a late second outcome changes nothing; nor does a row whose fields differ from
        ``expect`` (e.g. ``{"state": "running", "attempt": 2}``: another claim owns it now).
        """
        row = self.rows.select_for_update().get(pk=row_id)
        if getattr(row, "state") in self.terminal:  # noqa: B009 - the model is generic here
            return row, False
        if any(getattr(row, name) != value for name, value in (expect or {}).items()):
            return row, False
        before = snapshot(row)
        setattr(row, "state", state)  # noqa: B010
        setattr(row, "finished_at", now or timezone.now())  # noqa: B010
        for name, value in fields.items():
            setattr(row, name, value)
        row.save()
        record_audit_event(
            actor=None,
            on_behalf_of=getattr(row, "created_by", None),
            action=action,
            obj=row,
            before=before,
            after=snapshot(row),
        )
        self.announce(row_id, state)
        return row, True

    def announce(self, row_id: int, state: str) -> None:
        """Tell ``on_transition`` that the row reached ``state`` (call it in the transaction that
        moved it; what it sends waits for the commit)."""
        if self.on_transition is not None:
            self.on_transition(row_id, state)

    def fail(
        self,
        row_id: int,
        reason: str,
        *,
        now: datetime.datetime | None = None,
        expect: dict[str, Any] | None = None,
    ) -> bool:
        """Fail the row with ``reason`` (``<noun>.fail``); False if it had already finished (or
        differs from ``expect``, see ``finish``)."""
        with transaction.atomic():
            _, changed = self.finish(
                row_id,
                FAILED,
                f"{self.noun}.fail",
                now=now,
                expect=expect,
                error=reason[:4000],
                **self.on_fail,
            )
        return changed

    def record_progress(self, row_id: int, attempt: int | None = None, **fields: Any) -> int:
        """Telemetry of a running row (progress, stage, heartbeat): not an audited change. With
        ``attempt``, only while the row still runs under it: a run that lost its claim neither
        keeps the row looking alive nor mixes its progress into the next attempt's. Returns the
        number of rows written (0 or 1)."""
        rows = self.rows.filter(pk=row_id, state=RUNNING)
        if attempt is not None:
            rows = rows.filter(attempt=attempt)
        return rows.update(**fields)

    @contextmanager
    def heartbeat(self, row_id: int, interval_s: float, attempt: int) -> Iterator[None]:
        """Touch the row's ``heartbeat_at`` every ``interval_s`` from a thread while the body runs.

        A worker killed outright (kill -9 of the whole worker: no redelivery on every broker) stops
        the heartbeat, so ``fail_stale`` fails the row within its timeout, however long one step
        of the body takes.
        """
        if transaction.get_connection().in_atomic_block:
            # Called inside a caller's transaction (tests drive the worker that way): the row is
            # locked by it, so a second connection's heartbeat would wait on it forever.
            yield
            return
        stop = threading.Event()

        def beat() -> None:
            try:
                while not stop.wait(interval_s):
                    self.record_progress(row_id, attempt, heartbeat_at=timezone.now())
            except DatabaseError:
                logger.exception("%s %s: heartbeat stopped", self.noun, row_id)
            finally:
                close_old_connections()

        thread = threading.Thread(target=beat, name=f"{self.noun}-{row_id}-heartbeat", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def fail_stale(self, timeout_s: int) -> list[int]:
        """Recover running rows whose heartbeat is older than ``timeout_s`` seconds (their worker
        died); returns the ids failed.

        A row with attempts left (``STEWARD_JOB_MAX_ATTEMPTS``) is sent again: the delivery finds
        its heartbeat stale and claims it as the next attempt (``begin``), so a killed worker's job
        runs again elsewhere (issue 16) even when the broker redelivered its task too early, while
        the heartbeat still looked alive. A send that fails is tried again on the next sweep. A row
        someone asked to cancel is cancelled; one on its last attempt is failed with the reason.
        """
        cutoff = timezone.now() - datetime.timedelta(seconds=timeout_s)
        stale = self.rows.filter(state=RUNNING, heartbeat_at__lt=cutoff).values_list("pk", "attempt")
        most = settings.STEWARD_JOB_MAX_ATTEMPTS
        failed = []
        for row_id, attempt in list(stale):
            if self._cancel_orphan(row_id, attempt):
                continue
            if attempt < most:
                self.enqueue(row_id)
                continue
            reason = (
                f"no heartbeat from the worker for over {timeout_s} s on its last attempt "
                f"({attempt} of {most}); the worker was lost"
            )
            if self.fail(row_id, reason, expect={"state": RUNNING, "attempt": attempt}):
                failed.append(row_id)
        return failed

    def _cancel_orphan(self, row_id: int, attempt: int) -> bool:
        """Cancel a running row whose worker died after someone asked to cancel it (rather than
        run it again); True if it was cancelled."""
        if self.cancel_flag is None or not self.rows.filter(pk=row_id, **{self.cancel_flag: True}).exists():
            return False
        with transaction.atomic():
            _, changed = self.finish(
                row_id,
                CANCELLED,
                f"{self.noun}.cancelled",
                expect={"state": RUNNING, "attempt": attempt},
                error="cancelled; its worker was lost before it stopped",
            )
        return changed
