"""One beat at a time (issue 13): django-celery-beat's scheduler, sending tasks only while it holds
the beat lock.

Beat must be exactly one process: two would send every periodic task twice (two drift checks of
each monitor, two escalations, two budget alerts). Nothing in Celery enforces that, and a cluster
restarting a beat pod can briefly run two. So every beat process takes a lock before it sends:

- PostgreSQL: a session advisory lock (``pg_try_advisory_lock``) on a connection of its own, held
  as long as that connection lives. A beat that dies, or loses its connection, loses the lock
  with it, and a standby takes it at its next try (every ``STANDBY_INTERVAL_S`` seconds).
- SQLite (one machine by nature): an exclusive ``flock`` on ``var/beat.lock``, released by the
  kernel when the process ends.

A standby runs the scheduler's start-up like the leader and then only tries the lock. The leader
saves each entry's last run after every task it sends (``CELERY_BEAT_SYNC_EVERY`` = 1), and a
beat that takes the lock reads the schedule again from the database before sending, so it carries
on where the other stopped instead of sending again what was just sent.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import zlib
from typing import Any

from django.conf import settings
from django.db import connections
from django_celery_beat.schedulers import DatabaseScheduler

logger = logging.getLogger(__name__)

# The advisory lock's key: the same for every beat of this database (advisory locks are per
# database, so two Steward installations on one server do not meet).
LOCK_KEY = zlib.crc32(b"steward-celery-beat")


class BeatLock:
    """The beat lock of the configured database; ``held()`` takes it when free and tells whether
    this process holds it now."""

    def __init__(self) -> None:
        self.vendor = connections["default"].vendor
        self._connection: Any = None  # PostgreSQL: the raw connection holding the lock
        self._file: Any = None  # SQLite: the open lock file

    def held(self) -> bool:
        """True while this process holds the lock (taking it if nobody does). Never raises: a
        database it cannot reach means not holding it."""
        try:
            return self._held_postgresql() if self.vendor == "postgresql" else self._held_file()
        except Exception:  # a database error of any driver: not the leader now, try again later
            logger.warning("beat lock: the database could not be asked; standing by", exc_info=True)
            self.release()
            return False

    def _held_postgresql(self) -> bool:
        if self._connection is not None:
            # Still ours while the session lives: a cheap round trip proves it does.
            with self._connection.cursor() as cursor:
                cursor.execute("SELECT 1")
            return True
        wrapper = connections["default"]
        connection = wrapper.get_new_connection(wrapper.get_connection_params())
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_lock(%s)", [LOCK_KEY])
            (taken,) = cursor.fetchone()
        if not taken:
            connection.close()
            return False
        self._connection = connection
        return True

    def _held_file(self) -> bool:
        if self._file is not None:
            return True
        lock_file = open(settings.VAR_DIR / "beat.lock", "a+")  # noqa: SIM115 - held for the process's life
        try:
            fcntl.flock(lock_file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock_file.close()
            return False
        self._file = lock_file
        return True

    def release(self) -> None:
        """Give the lock up (a lost connection has given it up already)."""
        for held in (self._connection, self._file):
            if held is not None:
                with contextlib.suppress(Exception):
                    held.close()
        self._connection = self._file = None


class LeaderScheduler(DatabaseScheduler):
    """``CELERY_BEAT_SCHEDULER``: django-celery-beat's ``DatabaseScheduler`` that sends nothing
    unless this process holds the ``BeatLock``; a standby asks again every ``STANDBY_INTERVAL_S``."""

    STANDBY_INTERVAL_S = 5.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.beat_lock = BeatLock()
        self.is_leader: bool | None = None  # None: not asked yet (the first answer is logged)
        super().__init__(*args, **kwargs)

    def tick(self, *args: Any, **kwargs: Any) -> float:
        leader = self.beat_lock.held()
        if leader != self.is_leader:
            self.is_leader = leader
            if leader:
                logger.warning("beat lock taken: this beat sends the scheduled tasks")
                # Read every entry's last run again: the one it held since start-up is stale
                # (the previous leader sent tasks since, and saved each send: beat_sync_every).
                self._initial_read = True
                self._heap = None
            else:
                logger.warning("beat lock held elsewhere: this beat stands by")
        if not leader:
            return self.STANDBY_INTERVAL_S
        return float(super().tick(*args, **kwargs))

    def close(self) -> None:
        super().close()
        self.beat_lock.release()
