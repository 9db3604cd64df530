"""Helpers shared by the audit tree tests: raw SQL as an attacker with database access."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from django.db import connection, transaction
from django.db.backends.utils import CursorWrapper

from governance import audit_tree
from governance.actions.registry import do_create_dataset


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
        checkpoints.append(audit_tree.sequence_audit_events().tree_size)
    return checkpoints
