"""One lifecycle for every row a worker runs (a Job, a DriftCheck): NetBox's ``JobRunner`` idea.

The database row is the source of truth; Celery only delivers its id. A ``Lifecycle`` is
parameterised by the model, its state values and the name of its task, and gives every kind:

- ``enqueue``: send the task (called after commit); a broker outage fails the row with the reason;
- ``begin``: the start of a delivery: a missing or finished row is left alone, a row found
  ``running`` was orphaned by a worker that died mid-run (tasks are acked late) and is failed,
  not re-run; otherwise queued -> running with a conditional UPDATE, so one delivery runs it;
- ``run``: ``begin``, the body, and its end: cancelled, failed with the message of an input error,
  or failed with an internal error (logged with its traceback);
- ``finish`` / ``fail``: a non-terminal row moves to a terminal state once, with its audit event;
- ``record_progress``, ``heartbeat`` and ``fail_stale``: telemetry of a running row, and the sweep
  of rows whose worker went silent.

Lives in ``runners`` because jobs came first; ``monitoring`` imports it (issue 8: one lifecycle).
"""

from __future__ import annotations

import datetime
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from celery import current_app
from django.db import DatabaseError, close_old_connections, models, transaction
from django.utils import timezone

from governance.audit import record_audit_event, snapshot

logger = logging.getLogger(__name__)

MISSING = "missing"
QUEUED, RUNNING, FAILED, CANCELLED = "queued", "running", "failed", "cancelled"

Row = TypeVar("Row", bound=models.Model)


class Cancelled(Exception):
    """A cancel was requested while the row was running: ``run`` records it as cancelled."""


@dataclass(frozen=True)
class Lifecycle(Generic[Row]):
    """The lifecycle of ``model`` rows (fields ``state``, ``started_at``, ``finished_at``, ``error``,
    ``created_by``, ``celery_task_id``) run by the Celery task named ``task_name``.

    ``noun`` prefixes the audit actions (``<noun>.start``, ``<noun>.fail``); ``terminal`` are the
    final states; ``on_claim`` / ``on_fail`` are extra fields set when claimed / failed.
    ``audit_start``: whether the claim writes an audit event (jobs do; a drift check's start is
    telemetry). ``broker_error`` / ``orphan_error`` say why a row failed (the broker was
    unreachable: ``{exc}`` is filled in; the worker running it died).
    """

    model: type[Row]
    noun: str
    task_name: str
    terminal: frozenset[str]
    broker_error: str
    orphan_error: str
    audit_start: bool = False
    on_claim: Callable[[datetime.datetime], dict[str, Any]] = field(default=lambda now: {})
    on_fail: dict[str, Any] = field(default_factory=dict)

    @property
    def rows(self) -> models.QuerySet[Row]:
        return self.model._default_manager.all()

    def enqueue(self, row_id: int) -> None:
        """Send the row's task to the broker (under its ``celery_task_id``); fail the row if it can't.

        Sent by name, so this layer does not import the task modules above it.
        """
        task_id = self.rows.values_list("celery_task_id", flat=True).get(pk=row_id)
        try:
            current_app.send_task(self.task_name, args=[row_id], task_id=task_id, retry=True)
        except Exception as exc:
            logger.exception("could not enqueue %s %s", self.noun, row_id)
            self.fail(row_id, self.broker_error.format(exc=exc))

    def claim(self, row_id: int) -> bool:
        """queued -> running with a conditional UPDATE; False if another delivery claimed it."""
        with transaction.atomic():
            now = timezone.now()
            claimed = self.rows.filter(pk=row_id, state=QUEUED).update(
                state=RUNNING, started_at=now, **self.on_claim(now)
            )
            if claimed and self.audit_start:
                row = self.rows.get(pk=row_id)
                record_audit_event(
                    actor=None,
                    on_behalf_of=getattr(row, "created_by", None),
                    action=f"{self.noun}.start",
                    obj=row,
                    before={"state": QUEUED},
                    after={"state": RUNNING},
                )
        return bool(claimed)

    def begin(self, row_id: int) -> str | None:
        """Start a delivery of the row: None when this delivery claimed it (run it now), otherwise
        the state to report (``missing``, its terminal state, ``failed`` for an orphan)."""
        state = self.rows.filter(pk=row_id).values_list("state", flat=True).first()
        if state is None:
            logger.warning("%s %s does not exist; nothing to run", self.noun, row_id)
            return MISSING
        if state in self.terminal:
            return state
        if state == RUNNING:
            self.fail(row_id, self.orphan_error)
            return FAILED
        if not self.claim(row_id):
            return self.rows.values_list("state", flat=True).get(pk=row_id)
        return None

    def run(self, row_id: int, body: Callable[[], None], *, user_errors: tuple[type[Exception], ...]) -> str:
        """Run ``body`` once for this delivery (see ``begin``); returns the row's state afterwards.

        ``body`` records success itself (with its outputs, in its own transaction). ``Cancelled``
        marks the row cancelled; one of ``user_errors`` fails it with its message; anything else
        fails it as an internal error, logged with its traceback.
        """
        state = self.begin(row_id)
        if state is not None:
            return state
        try:
            body()
        except Cancelled:
            with transaction.atomic():
                self.finish(row_id, CANCELLED, f"{self.noun}.cancelled", error="cancelled while running")
        except user_errors as exc:
            self.fail(row_id, str(exc))
        except Exception as exc:
            logger.exception("%s %s failed", self.noun, row_id)
            self.fail(row_id, f"internal error: {type(exc).__name__}: {exc}")
        return self.rows.values_list("state", flat=True).get(pk=row_id)

    def finish(
        self, row_id: int, state: str, action: str, *, now: datetime.datetime | None = None, **fields: Any
    ) -> tuple[Row, bool]:
        """Move a non-terminal row to ``state`` with ``fields`` and audit it (caller's transaction).

        Returns the (locked) row and whether it changed: a finished row is final, so a redelivery
        or a late second outcome changes nothing.
        """
        row = self.rows.select_for_update().get(pk=row_id)
        if getattr(row, "state") in self.terminal:  # noqa: B009 - the model is generic here
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
        return row, True

    def fail(self, row_id: int, reason: str, *, now: datetime.datetime | None = None) -> bool:
        """Fail the row with ``reason`` (``<noun>.fail``); False if it had already finished."""
        with transaction.atomic():
            _, changed = self.finish(
                row_id, FAILED, f"{self.noun}.fail", now=now, error=reason[:4000], **self.on_fail
            )
        return changed

    def record_progress(self, row_id: int, **fields: Any) -> int:
        """Telemetry of a running row (progress, stage, heartbeat): not an audited change."""
        return self.rows.filter(pk=row_id, state=RUNNING).update(**fields)

    @contextmanager
    def heartbeat(self, row_id: int, interval_s: float) -> Iterator[None]:
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
                    self.record_progress(row_id, heartbeat_at=timezone.now())
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
        """Fail running rows whose heartbeat is older than ``timeout_s`` seconds (their worker died)."""
        cutoff = timezone.now() - datetime.timedelta(seconds=timeout_s)
        stale = list(self.rows.filter(state=RUNNING, heartbeat_at__lt=cutoff).values_list("pk", flat=True))
        reason = f"no heartbeat from the worker for over {timeout_s} s; the worker was lost"
        return [row_id for row_id in stale if self.fail(row_id, reason)]
