"""The audit tables are append-only on PostgreSQL: triggers refuse UPDATE, DELETE and TRUNCATE, the
erasure setting opens only the personal columns, the maintenance setting stays off outside the
tests' flush, and the database writes timestamps exactly as leaves hash them (issue 3)."""

from __future__ import annotations

import datetime

import pytest
from django.db import DatabaseError, connection, transaction

from governance.audit.leaf import IsoTimestamp, iso_timestamp
from governance.models import AuditCheckpoint, AuditEvent, AuditLeaf
from tests.governance.audit_helpers import grow_log, needs_postgres

PROTECTED = {
    "governance_auditevent": "action = action",
    "governance_auditleaf": "leaf_hash = leaf_hash",
    "governance_audittreenode": "hash = hash",
    "governance_auditcheckpoint": "root_hash = root_hash",
}


@needs_postgres
@pytest.mark.parametrize("table", list(PROTECTED))
def test_postgres_refuses_update_delete_and_truncate_of_audit_rows(table, team, admin):
    grow_log(team, admin, [2])
    # Table names are this module's constants, not input.
    statements = {
        "UPDATE": f"UPDATE {table} SET {PROTECTED[table]}",  # noqa: S608
        "DELETE": f"DELETE FROM {table}",  # noqa: S608
        "TRUNCATE": f"TRUNCATE {table} CASCADE",
    }
    counts = (AuditEvent.objects.count(), AuditLeaf.objects.count(), AuditCheckpoint.objects.count())
    with connection.cursor() as cursor:
        # Check this test's deferred foreign keys now: TRUNCATE refuses tables with pending ones.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")

    for operation, statement in statements.items():
        with (
            pytest.raises(DatabaseError, match=f"the audit log is append-only: {operation} on "),
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            cursor.execute(statement)

    assert (AuditEvent.objects.count(), AuditLeaf.objects.count(), AuditCheckpoint.objects.count()) == counts


@needs_postgres
def test_the_erasure_setting_opens_only_the_personal_columns(dataset):
    event = AuditEvent.objects.get(action="dataset.create")
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT set_config('steward.audit_erasure', 'on', true)")
        cursor.execute("UPDATE governance_auditevent SET actor_label = 'x' WHERE id = %s", [event.pk])
        for statement in (
            "UPDATE governance_auditevent SET action = 'forged' WHERE id = %s",
            "UPDATE governance_auditevent SET team_id = NULL WHERE id = %s",
        ):
            with (
                pytest.raises(DatabaseError, match="an erasure may change only the personal columns"),
                transaction.atomic(),
            ):
                cursor.execute(statement, [event.pk])
        with pytest.raises(DatabaseError, match="append-only: DELETE"), transaction.atomic():
            cursor.execute("DELETE FROM governance_auditevent WHERE id = %s", [event.pk])
        cursor.execute("SELECT set_config('steward.audit_erasure', 'off', true)")

    assert AuditEvent.objects.filter(pk=event.pk).values_list("actor_label", "action").get() == (
        "x",
        "dataset.create",
    )


@needs_postgres
def test_the_maintenance_setting_is_off_in_tests_and_app_code(dataset):
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('steward.audit_maintenance', true)")
        assert cursor.fetchone()[0] in (None, "", "off")
    with (
        pytest.raises(DatabaseError, match="append-only: DELETE"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute("DELETE FROM governance_auditevent")


def test_deleting_a_user_with_events_is_refused(scientist, dataset):
    from django.db.models import ProtectedError

    with pytest.raises(ProtectedError, match="protected foreign keys"):
        scientist.delete()

    assert AuditEvent.objects.get(action="dataset.create").actor_id == scientist.pk


@needs_postgres
def test_postgres_writes_timestamps_exactly_as_leaves_do(admin):
    """``audit_verify`` lets PostgreSQL format timestamps (``IsoTimestamp``); the text must be
    what ``iso_timestamp`` writes, microseconds and all."""
    moments = [
        datetime.datetime(2026, 3, 1, 12, 0, 0, 0, tzinfo=datetime.UTC),
        datetime.datetime(2026, 3, 1, 12, 0, 0, 7, tzinfo=datetime.UTC),
        datetime.datetime(
            1999, 12, 31, 23, 59, 59, 999999, tzinfo=datetime.timezone(datetime.timedelta(hours=5))
        ),
    ]
    for moment in moments:
        AuditEvent.objects.create(timestamp=moment, actor_label="admin", action="clock.tick")

    formatted = AuditEvent.objects.filter(action="clock.tick").annotate(iso=IsoTimestamp("timestamp"))

    assert sorted(formatted.values_list("iso", flat=True)) == sorted(iso_timestamp(m) for m in moments)
    assert iso_timestamp(moments[2]) == "1999-12-31T18:59:59.999999+00:00"
