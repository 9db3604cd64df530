"""Helpers shared by the audit tree tests: raw SQL as an attacker with database access, a log grown
to given checkpoint sizes, hostile filter values and a response's body."""

from __future__ import annotations

import contextlib
import datetime
from collections.abc import Iterator

import pytest
from django.db import connection, transaction
from django.db.backends.utils import CursorWrapper
from django.utils import timezone

from governance.actions.datasets import do_create_dataset
from governance.audit.sequencer import sequence_audit_events
from governance.models import AuditEvent

# Hostile values for the audit trail's filters and paths, and the answers they get (issue 3).
EARLIEST_WITH_OFFSET = "0001-01-01T00:00:00+05:00"  # 0000-12-31T19:00Z: before year 1
LATEST_WITH_OFFSET = "9999-12-31T23:59:59-05:00"  # 10000-01-01T04:59Z: after year 9999
BEYOND_BIGINT = "9223372036854775808"  # 2**63
OUT_OF_UTC = "Enter a date/time between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z once converted to UTC."
TOO_BIG = "Ensure this value is less than or equal to 9223372036854775807."
INVALID_CURSOR = (400, {"cursor": ["Invalid cursor"]})

needs_postgres = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="PostgreSQL behaviour (triggers, concurrent writers)"
)


@contextlib.contextmanager
def raw_sql() -> Iterator[CursorWrapper]:
    """A cursor for tampering. On PostgreSQL the statements pass the append-only trigger through
    the test-only ``steward.audit_maintenance`` setting, switched off again afterwards."""
    is_postgres = connection.vendor == "postgresql"
    with transaction.atomic(), connection.cursor() as cursor:
        if is_postgres:
            cursor.execute("SELECT set_config('steward.audit_maintenance', 'on', true)")
        yield cursor
        if is_postgres:
            cursor.execute("SELECT set_config('steward.audit_maintenance', 'off', true)")


def grow_log(team, actor, sizes: list[int]) -> list[int]:
    """Create datasets until the log holds each of ``sizes`` events, sequencing at each size;
    return the checkpoint sizes (equal to ``sizes``)."""
    from governance.models import AuditEvent

    checkpoints = []
    for size in sizes:
        while (count := AuditEvent.objects.count()) < size:
            do_create_dataset(team=team, name=f"log-{count:04}", actor=actor)
        checkpoints.append(sequence_audit_events().tree_size)
    return checkpoints


def body(response) -> bytes:
    """A response's bytes, streamed (exports) or not."""
    return b"".join(response.streaming_content) if response.streaming else response.content


def streamed_text(response) -> str:
    """A streamed response's text (fails on a response that is not streamed)."""
    return b"".join(response.streaming_content).decode()


def answer(response) -> tuple[int, dict]:
    return response.status_code, response.json()


def create_events_sharing_a_timestamp() -> datetime.datetime:
    """Seven ``dataset.touch`` events written straight to the table: the odd ones share one
    timestamp (returned), the even ones are 1 to 7 s older, so a page boundary falls among equal
    times."""
    shared = timezone.now()
    for number in range(7):
        AuditEvent.objects.create(
            timestamp=shared if number % 2 else shared - datetime.timedelta(seconds=number + 1),
            actor_label="admin",
            action="dataset.touch",
            object_repr=f"d{number}",
        )
    return shared
