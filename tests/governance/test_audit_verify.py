"""``manage.py audit_verify``: an intact log is OK with its counts; raw-SQL tampering of one event,
a deleted event, an inserted event and a truncated tail are each named at the right index."""

from __future__ import annotations

import io

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from django.core.management import CommandError, call_command
from django.db import connection

from governance import actions, audit_tree, merkle
from governance.models import AuditCheckpoint, AuditEvent, AuditLeaf, AuditPersonalData
from tests.governance.audit_helpers import grow_log, raw_sql

SIZES = [5, 9, 12]


@pytest.fixture
def log(team, admin) -> list[AuditEvent]:
    """Twelve events in three checkpoints (tree sizes 5, 9, 12), in leaf order."""
    assert grow_log(team, admin, SIZES) == SIZES
    return list(AuditEvent.objects.order_by("leaf__leaf_index"))


def _verify() -> list[str]:
    out = io.StringIO()
    call_command("audit_verify", stdout=out)
    return out.getvalue().splitlines()


def _failure() -> str:
    with pytest.raises(CommandError) as raised:
        _verify()
    return str(raised.value)


def _delete_event(cursor, event: AuditEvent) -> None:
    cursor.execute("DELETE FROM governance_auditleaf WHERE event_id = %s", [event.pk])
    cursor.execute("DELETE FROM governance_auditpersonaldata WHERE event_id = %s", [event.pk])
    cursor.execute("DELETE FROM governance_auditevent WHERE id = %s", [event.pk])


def test_an_intact_log_is_ok_with_its_counts(log):
    latest = AuditCheckpoint.objects.get(tree_size=12)

    lines = _verify()

    assert lines[:2] == [
        f"leaves: 12; checkpoints: 3 (latest tree size 12, root {latest.root_hash}, "
        f"{audit_tree.iso_timestamp(latest.timestamp)}); tree nodes: {12 + 6 + 3 + 1}",
        "events with erased personal details: 0; events not yet sequenced: 0",
    ]
    assert lines[2].startswith(
        "OK: 12 leaves recomputed from their events match the stored tree and 3 signed checkpoints ("
    )
    assert len(lines) == 3


def test_unsequenced_events_are_counted_not_failed(log, team, admin):
    actions.do_create_dataset(team=team, name="not-yet", actor=admin)

    assert _verify()[1] == "events with erased personal details: 0; events not yet sequenced: 1"


def test_raw_sql_tampering_of_one_event_is_named_at_its_leaf_index(log):
    with raw_sql() as cursor:
        cursor.execute("UPDATE governance_auditevent SET object_id = '999' WHERE id = %s", [log[6].pk])

    assert _failure() == (
        "FAILED: first bad leaf index 6 (checkpoint at tree size 9 fails); "
        f"leaf 6 now holds event {log[6].pk}"
    )


def test_tampering_with_a_personal_detail_breaks_the_commitment_at_its_leaf(log):
    with raw_sql() as cursor:
        cursor.execute("UPDATE governance_auditevent SET actor_label = 'mallory' WHERE id = %s", [log[10].pk])

    assert _failure().startswith("FAILED: first bad leaf index 10 (checkpoint at tree size 12 fails)")


def test_a_deleted_event_is_named_at_its_leaf_index(log):
    with raw_sql() as cursor:
        _delete_event(cursor, log[3])

    assert _failure() == (
        "FAILED: first bad leaf index 3 (checkpoint at tree size 5 fails); "
        f"leaf 3 now holds event {log[4].pk}"
    )


def test_an_inserted_event_is_named_at_its_leaf_index(log, admin):
    with raw_sql() as cursor:
        # Make room at leaf 7 (in two steps: the primary key must stay unique at every row).
        cursor.execute("UPDATE governance_auditleaf SET leaf_index = leaf_index + 1000 WHERE leaf_index >= 7")
        cursor.execute(
            "UPDATE governance_auditleaf SET leaf_index = leaf_index - 999 WHERE leaf_index >= 1000"
        )
    forged = AuditEvent.objects.create(
        actor=admin, actor_label="admin", action="dataset.create", object_type="dataset", object_id="77"
    )
    salt = merkle.new_salt()
    AuditPersonalData.objects.create(event=forged, salt=salt.hex())
    leaf = audit_tree.leaf_for(AuditEvent.objects.get(pk=forged.pk), salt)
    AuditLeaf.objects.create(
        leaf_index=7,
        event=forged,
        leaf_hash=merkle.leaf_hash(merkle.canonical_json(leaf)).hex(),
        personal_commitment=leaf["personal_commitment"],
    )

    assert _failure().startswith(
        "FAILED: first bad leaf index 7 (checkpoint at tree size 9 fails); "
        f"leaf 7 now holds event {forged.pk}"
    )


def test_a_truncated_tail_is_named(log):
    with raw_sql() as cursor:
        for event in log[10:]:
            _delete_event(cursor, event)

    assert _failure() == (
        "FAILED: missing tail: leaves from index 10 are gone (checkpoint at tree size 12 fails)"
    )


def test_a_tampered_tree_node_is_reported(log):
    with raw_sql() as cursor:
        cursor.execute(
            'UPDATE governance_audittreenode SET hash = %s WHERE level = 1 AND "index" = 2', ["ab" * 32]
        )

    assert _failure() == "FAILED: stored node (1, 2) is not the hash of its children"


def test_a_stored_leaf_hash_that_disagrees_with_the_events_is_reported(log):
    with raw_sql() as cursor:
        cursor.execute(
            'UPDATE governance_audittreenode SET hash = %s WHERE level = 0 AND "index" = 4', ["cd" * 32]
        )

    assert _failure() == (
        "FAILED: stored leaf hash 4 was altered; the events match every checkpoint; "
        "the leaf table and the node table disagree on the hash of leaf 4; "
        "stored node (1, 2) is not the hash of its children"
    )


def test_a_forged_checkpoint_is_reported(log):
    with raw_sql() as cursor:
        cursor.execute(
            "UPDATE governance_auditcheckpoint SET root_hash = %s WHERE tree_size = 9", ["ef" * 32]
        )

    assert _failure() == "FAILED: checkpoint at tree size 9 has an invalid signature"


def test_checkpoints_of_an_earlier_key_verify_with_its_public_key(settings, tmp_path, team, admin):
    grow_log(team, admin, [3])
    old_public = tmp_path / "old.pem"
    old_public.write_text(audit_tree.signing_key().public_key_pem)
    new_key = Ed25519PrivateKey.generate()
    settings.STEWARD_AUDIT_SIGNING_KEY = new_key.private_bytes(
        Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()
    ).decode()
    grow_log(team, admin, [4])

    assert _failure() == "FAILED: checkpoint at tree size 3 has an invalid signature"
    out = io.StringIO()
    call_command("audit_verify", "--public-key", str(old_public), stdout=out)
    assert "OK: 4 leaves recomputed" in out.getvalue()


def test_verify_audit_log_reports_the_mismatch_as_data(log):
    with raw_sql() as cursor:
        cursor.execute("UPDATE governance_auditevent SET action = 'forged' WHERE id = %s", [log[0].pk])

    report = audit_tree.verify_audit_log(chunk_size=4)

    assert report.is_ok is False
    assert (report.mismatch.kind, report.mismatch.leaf_index, report.mismatch.is_exact) == ("leaf", 0, True)
    assert (report.leaf_count, report.checkpoint_count, report.node_count) == (12, 3, 22)
    assert report.problems == []


def test_an_empty_log_is_ok(db):
    assert _verify()[-1].startswith("OK: 0 leaves recomputed")


@pytest.mark.django_db(transaction=True)
def test_forked_workers_verify_the_log_in_one_snapshot(team, admin):
    """On PostgreSQL the leaves are hashed by forked workers sharing an exported snapshot (on
    SQLite the same call runs in this process)."""
    grow_log(team, admin, SIZES)
    assert audit_tree._worker_count(2, 0) == (2 if connection.vendor == "postgresql" else 1)
    intact = audit_tree.verify_audit_log(workers=2, parallel_min_leaves=0, chunk_size=3)
    log = list(AuditEvent.objects.order_by("leaf__leaf_index"))
    with raw_sql() as cursor:
        cursor.execute("UPDATE governance_auditevent SET object_id = '999' WHERE id = %s", [log[6].pk])

    tampered = audit_tree.verify_audit_log(workers=2, parallel_min_leaves=0, chunk_size=3)

    assert (intact.is_ok, intact.leaf_count, intact.node_count) == (True, 12, 22)
    assert (tampered.mismatch.leaf_index, tampered.mismatch.checkpoint_size) == (6, 9)
    assert tampered.mismatch_event_id == log[6].pk
