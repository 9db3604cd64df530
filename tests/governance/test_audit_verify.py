"""``manage.py audit_verify``: an intact log is OK with its counts; raw-SQL tampering of one event,
a deleted event, an inserted event and a truncated tail are each named at the right index."""

from __future__ import annotations

import io

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from django.core.management import CommandError, call_command
from django.db import IntegrityError, connection, transaction

from governance import merkle
from governance.actions.datasets import do_create_dataset
from governance.audit import record_audit_event
from governance.audit.erasure import do_erase_personal_data
from governance.audit.keys import signing_key
from governance.audit.leaf import iso_timestamp, leaf_for
from governance.audit.sequencer import sequence_audit_events
from governance.audit.verify import _worker_count, verify_audit_log, verify_event
from governance.models import AuditCheckpoint, AuditEvent, AuditLeaf, AuditPersonalData, AuditRejection
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
        f"{iso_timestamp(latest.timestamp)}); tree nodes: {12 + 6 + 3 + 1}",
        "events with erased personal details: 0; events not yet sequenced: 0",
    ]
    assert lines[2].startswith(
        "OK: 12 leaves recomputed from their events match the stored tree and 3 signed checkpoints ("
    )
    assert len(lines) == 3


def test_unsequenced_events_are_counted_not_failed(log, team, admin):
    do_create_dataset(team=team, name="not-yet", actor=admin)

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
        f"leaf 3 now holds event {log[4].pk}; "
        "leaf indexes do not run 0..10: position 3 holds leaf 4; "
        "11 leaves, but the latest checkpoint covers 12"
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
    leaf = leaf_for(AuditEvent.objects.get(pk=forged.pk), salt)
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
        "FAILED: missing tail: leaves from index 10 are gone (checkpoint at tree size 12 fails); "
        "10 leaves, but the latest checkpoint covers 12"
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
    old_public.write_text(signing_key().public_key_pem)
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

    report = verify_audit_log(chunk_size=4)

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
    assert _worker_count(2, 0) == (2 if connection.vendor == "postgresql" else 1)
    intact = verify_audit_log(workers=2, parallel_min_leaves=0, chunk_size=3)
    log = list(AuditEvent.objects.order_by("leaf__leaf_index"))
    with raw_sql() as cursor:
        cursor.execute("UPDATE governance_auditevent SET object_id = '999' WHERE id = %s", [log[6].pk])

    tampered = verify_audit_log(workers=2, parallel_min_leaves=0, chunk_size=3)

    assert (intact.is_ok, intact.leaf_count, intact.node_count) == (True, 12, 22)
    assert (tampered.mismatch.leaf_index, tampered.mismatch.checkpoint_size) == (6, 9)
    assert tampered.mismatch_event_id == log[6].pk


AWKWARD_PAYLOADS = [
    {"name": 'quote " backslash \\ slash /', "note": "tab\tnewline\ncontrol\x01"},
    {"ünïcode": "☃ snowman", "emoji": "🚀", "z": [1, 2.5, 1e-07, 10**30, True, False, None]},
    {"nested": {"b": {"d": [], "c": {}}, "a": ""}, "\u00e9": 1, "e\u0301": 2, "\U0001f600": 3},
    {"float": 0.1, "neg": -0.0, "big": 1.7976931348623157e308, "int": -(2**63)},
]


@pytest.mark.django_db(transaction=True)
def test_awkward_payloads_and_erased_events_verify_in_process_and_in_workers(team, admin, scientist):
    """audit_verify re-encodes each event on its fast path (workers) and in process; both must
    give the bytes the sequencer hashed for any JSON a payload may hold, or an intact log would
    look tampered."""
    # Each payload twice: by the scientist (erased below: the leaf keeps the stored
    # commitment) and by the system for the admin (details kept: recommitted from the event).
    for index, payload in enumerate(AWKWARD_PAYLOADS * 2):
        erased = index < len(AWKWARD_PAYLOADS)
        with transaction.atomic():
            record_audit_event(
                actor=scientist if erased else None,
                on_behalf_of=None if erased else admin,
                action="awkward.payload",
                object_type="note",
                object_id=f"id-\u2603-{index}",
                object_repr=f'repr "{index}" \u2028',
                team_id=None if index % 4 == 3 else team.pk,
                before=None if index % 4 == 0 else payload,
                after=payload,
            )
    sequence_audit_events()
    do_erase_personal_data(scientist, actor=admin)
    sequence_audit_events()

    in_process = verify_audit_log(workers=1)
    in_workers = verify_audit_log(workers=2, parallel_min_leaves=0, chunk_size=3)
    awkward = list(AuditEvent.objects.filter(action="awkward.payload").order_by("leaf__leaf_index"))
    with raw_sql() as cursor:
        cursor.execute(
            "UPDATE governance_auditevent SET object_repr = 'forged' WHERE id = %s", [awkward[4].pk]
        )
    tampered = verify_audit_log(workers=2, parallel_min_leaves=0, chunk_size=3)

    erased = AuditEvent.objects.filter(action="awkward.payload", personal_data__isnull=True).count()
    assert erased == len(AWKWARD_PAYLOADS)
    assert in_process.is_ok
    assert in_process.erased_count >= erased
    assert (in_workers.is_ok, in_workers.leaf_count) == (True, in_process.leaf_count)
    assert (tampered.mismatch.leaf_index, tampered.mismatch.is_exact) == (awkward[4].leaf.leaf_index, True)


# Rows written into the database, not by Steward --------------------------------------------------


def _insert_event(cursor, **fields) -> int:
    """An event row as someone with database access alone would add it (a backdated one)."""
    values = {
        "timestamp": "2026-01-01T09:00:00+00:00",
        "actor_label": "olivia",
        "on_behalf_of_label": "",
        "action": "dataset.delete",
        "object_type": "dataset",
        "object_id": "1",
        "object_repr": "bike-sharing",
        "request_id": "",
        "task_id": "",
        **fields,
    }
    columns = ", ".join(values)
    cursor.execute(
        f"INSERT INTO governance_auditevent ({columns}) VALUES ({', '.join(['%s'] * len(values))})",  # noqa: S608
        list(values.values()),
    )
    return AuditEvent.objects.order_by("-id").values_list("id", flat=True).first()


def test_an_event_inserted_in_the_database_is_refused_and_reported(log, team, admin):
    with raw_sql() as cursor:
        untagged = _insert_event(cursor)
        cursor.execute(
            "INSERT INTO governance_auditpersonaldata (event_id, salt, tag) VALUES (%s, %s, %s)",
            [untagged, merkle.new_salt().hex(), ""],
        )
        saltless = _insert_event(cursor, action="alias.move")
        forged_tag = _insert_event(cursor, action="promotion.approve")
        cursor.execute(
            "INSERT INTO governance_auditpersonaldata (event_id, salt, tag) VALUES (%s, %s, %s)",
            [forged_tag, merkle.new_salt().hex(), "0" * 64],
        )
    before_sequencing = verify_audit_log()
    do_create_dataset(team=team, name="honest-after-forgery", actor=admin)

    run = sequence_audit_events()

    assert before_sequencing.is_ok is False
    assert "3 events have no valid tag" in before_sequencing.problems[0]
    assert (run.sequenced, run.tree_size) == (1, 13)  # only the honest event got a leaf
    assert not AuditLeaf.objects.filter(event_id__in=[untagged, saltless, forged_tag]).exists()
    refused = dict(AuditRejection.objects.values_list("event_id", "reason"))
    assert refused == {
        untagged: "no tag: not written by Steward",
        saltless: "no tag: not written by Steward",
        forged_tag: "wrong tag: inserted or altered in the database",
    }
    failure = _failure()
    assert failure.startswith("FAILED: 3 events have no valid tag and get no leaf: ")
    assert f"event {forged_tag} (wrong tag: inserted or altered in the database)" in failure
    verification = verify_event(AuditEvent.objects.get(pk=saltless))
    assert (verification.status, verification.detail) == (
        "failed",
        "the sequencer refused this event: no tag: not written by Steward",
    )
    assert sequence_audit_events().sequenced == 0  # refused once, not retried


@pytest.mark.parametrize(
    ("column", "value"),
    [("action", "'dataset.delete'"), ("after", """'{"name": "altered"}'"""), ("object_repr", "'altered'")],
)
def test_an_event_altered_before_it_is_sequenced_is_refused(log, team, admin, column, value):
    do_create_dataset(team=team, name="pending", actor=admin)
    pending = AuditEvent.objects.filter(leaf__isnull=True).get()
    with raw_sql() as cursor:
        cursor.execute(f"UPDATE governance_auditevent SET {column} = {value} WHERE id = %s", [pending.pk])  # noqa: S608

    run = sequence_audit_events()

    assert run.sequenced == 0
    assert AuditRejection.objects.get().reason == "wrong tag: inserted or altered in the database"


def test_a_tag_cannot_be_replayed_onto_a_copied_event(log, team, admin):
    """The tag hashes the event's id and every field: copied onto a forged copy of an event (with
    a fresh salt; the salt itself is unique), it does not fit."""
    do_create_dataset(team=team, name="original", actor=admin)
    original = AuditEvent.objects.select_related("personal_data").get(leaf__isnull=True)
    with raw_sql() as cursor:
        copy = _insert_event(
            cursor,
            timestamp=original.timestamp,
            action=original.action,
            object_type=original.object_type,
            object_id=original.object_id,
            object_repr="mallory's copy",
            team_id=original.team_id,
            actor_id=original.actor_id,
        )
    with pytest.raises(IntegrityError), transaction.atomic():
        AuditPersonalData.objects.create(event_id=copy, salt=original.personal_data.salt, tag="")
    AuditPersonalData.objects.create(
        event_id=copy, salt=merkle.new_salt().hex(), tag=original.personal_data.tag
    )

    sequence_audit_events()

    assert AuditRejection.objects.get().event_id == copy
    assert AuditLeaf.objects.filter(event=original).exists()


def test_a_salt_moved_to_a_forged_event_is_refused_and_its_loss_reported(log, admin):
    """Moving a sequenced event's salt and tag onto a forged event: the tag names the first
    event, and the first one now looks erased without any erasure mark."""
    with raw_sql() as cursor:
        forged = _insert_event(cursor, actor_label="admin", object_repr="mallory made admin")
        cursor.execute(
            "UPDATE governance_auditpersonaldata SET event_id = %s WHERE event_id = %s", [forged, log[2].pk]
        )

    sequence_audit_events()

    assert AuditRejection.objects.get().event_id == forged
    failure = _failure()
    assert "1 events lost their salt without an erasure (their details show no [erased] mark): " in failure
    assert failure.endswith(f"events {log[2].pk}")


def test_an_unreadable_salt_is_named_at_its_leaf_not_a_crash(log):
    with raw_sql() as cursor:
        cursor.execute(
            "UPDATE governance_auditpersonaldata SET salt = 'not hex at all' WHERE event_id = %s", [log[3].pk]
        )

    assert _failure() == (
        "FAILED: first bad leaf index 3 (checkpoint at tree size 5 fails); "
        f"leaf 3 now holds event {log[3].pk}"
    )


def test_an_emptied_salt_does_not_pass_as_an_erasure(log):
    """An empty salt is not a missing one: the event is still committed to by its salt, so
    rewriting its details is named at its leaf."""
    with raw_sql() as cursor:
        cursor.execute("UPDATE governance_auditpersonaldata SET salt = '' WHERE event_id = %s", [log[4].pk])
        cursor.execute("UPDATE governance_auditevent SET actor_label = 'mallory' WHERE id = %s", [log[4].pk])

    assert _failure().startswith("FAILED: first bad leaf index 4 ")


def test_renumbered_leaf_rows_are_reported(log):
    with raw_sql() as cursor:
        cursor.execute("UPDATE governance_auditleaf SET leaf_index = leaf_index + 100 WHERE leaf_index >= 10")

    assert "leaf indexes do not run 0..11: position 10 holds leaf 110" in _failure()


@pytest.mark.parametrize(
    ("column", "value"), [("request_id", "X'41'"), ("timestamp", "'garbage'"), ("actor_label", "X'41'")]
)
def test_columns_no_event_holds_are_named_at_their_leaf_not_a_crash(log, column, value):
    if connection.vendor == "postgresql":
        pytest.skip("PostgreSQL's column types refuse these values")
    with raw_sql() as cursor:
        cursor.execute(f"UPDATE governance_auditevent SET {column} = {value} WHERE id = %s", [log[7].pk])  # noqa: S608

    assert _failure().startswith("FAILED: first bad leaf index 7 ")


def test_a_tag_no_server_writes_is_refused_not_a_crash(log, team, admin):
    do_create_dataset(team=team, name="waiting", actor=admin)
    pending = AuditEvent.objects.get(leaf__isnull=True)
    with raw_sql() as cursor:
        cursor.execute("UPDATE governance_auditpersonaldata SET tag = 'é' WHERE event_id = %s", [pending.pk])

    run = sequence_audit_events()

    assert run.sequenced == 0
    assert AuditRejection.objects.get().reason == "wrong tag: inserted or altered in the database"
