"""The audit log's Merkle tree: leaves, the sequencer, the signing key and stored proofs (issue 3).
Erasure and the append-only triggers: test_audit_erasure.py, test_audit_append_only.py."""

from __future__ import annotations

import base64
import datetime
import hashlib
import threading
import time

import pytest
from celery.contrib.testing.worker import start_worker
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from django.db import connection, transaction

import config.celery
from governance import merkle
from governance.actions.datasets import do_create_dataset
from governance.audit import record_audit_event
from governance.audit.keys import signing_key, tag_stored_event
from governance.audit.leaf import (
    LEAF_FIELDS,
    PERSONAL_FIELDS,
    iso_timestamp,
    leaf_for,
)
from governance.audit.proofs import AuditTreeError, stored_consistency_proof, stored_inclusion_proof
from governance.audit.sequencer import sequence_audit_events
from governance.audit.verify import verify_audit_log
from governance.models import (
    AuditCheckpoint,
    AuditEvent,
    AuditLeaf,
    AuditPersonalData,
    AuditTreeNode,
)
from tests.governance.audit_helpers import grow_log, needs_postgres, raw_sql


def _leaf_hashes() -> list[bytes]:
    return [
        bytes.fromhex(value)
        for value in AuditLeaf.objects.order_by("leaf_index").values_list("leaf_hash", flat=True)
    ]


def _salt(event: AuditEvent) -> bytes:
    return bytes.fromhex(AuditPersonalData.objects.get(event=event).salt)


# Leaves ---------------------------------------------------------------------------------------


def test_a_leaf_holds_the_non_personal_fields_and_a_salted_commitment(dataset, scientist):
    event = AuditEvent.objects.get(action="dataset.create")
    salt = _salt(event)

    leaf = leaf_for(event, salt)

    assert leaf == {
        "id": event.pk,
        "timestamp": event.timestamp.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f+00:00"),
        "action": "dataset.create",
        "object_type": "dataset",
        "object_id": str(dataset.pk),
        "team_id": dataset.team_id,
        "actor_id": scientist.pk,
        "on_behalf_of_id": None,
        "request_id": "",
        "task_id": "",
        "personal_commitment": hashlib.sha256(
            salt
            + merkle.canonical_json(
                {
                    "actor_label": "dana",
                    "on_behalf_of_label": "",
                    "object_repr": "bike-sharing-hourly",
                    "before": None,
                    "after": event.after,
                }
            )
        ).hexdigest(),
    }
    assert b"dana" not in merkle.canonical_json(leaf)
    # A .values() row gives the same leaf as the model instance.
    row = AuditEvent.objects.values(*LEAF_FIELDS, *PERSONAL_FIELDS).get(pk=event.pk)
    assert leaf_for(row, salt) == leaf
    # Erased details: the stored commitment stands in for them.
    erased = leaf_for(event, None, commitment=leaf["personal_commitment"])
    assert erased == leaf
    with pytest.raises(ValueError, match=f"event {event.pk} has no salt"):
        leaf_for(event, None)


def test_every_event_gets_its_own_salt_in_the_same_transaction(dataset_version, scientist, dataset):
    salts = dict(AuditPersonalData.objects.values_list("event_id", "salt"))

    assert sorted(salts) == sorted(AuditEvent.objects.values_list("id", flat=True))
    assert len(salts) == 4
    assert {len(bytes.fromhex(salt)) for salt in salts.values()} == {32}
    assert len(set(salts.values())) == 4

    def record_then_give_up() -> None:
        with transaction.atomic():
            record_audit_event(actor=scientist, action="dataset.touch", obj=dataset)
            raise ValueError("caller gave up")

    with pytest.raises(ValueError, match="caller gave up"):
        record_then_give_up()
    assert AuditEvent.objects.count() == 4
    assert AuditPersonalData.objects.count() == 4


def test_values_a_leaf_cannot_hash_are_refused_with_the_change(dataset, scientist):
    with (
        pytest.raises(ValueError, match="Out of range float values are not JSON compliant"),
        transaction.atomic(),
    ):
        record_audit_event(actor=scientist, action="dataset.touch", obj=dataset, after={"rmse": float("nan")})

    assert not AuditEvent.objects.filter(action="dataset.touch").exists()


# The sequencer --------------------------------------------------------------------------------


def test_the_sequencer_gives_contiguous_leaves_and_signs_a_checkpoint(dataset_version, compliance_officer):
    events = list(AuditEvent.objects.order_by("id"))

    run = sequence_audit_events()

    assert (run.sequenced, run.tree_size) == (5, 5)
    leaves = list(AuditLeaf.objects.order_by("leaf_index"))
    assert [(leaf.leaf_index, leaf.event_id) for leaf in leaves] == [(i, e.pk) for i, e in enumerate(events)]
    hashes = []
    for leaf, event in zip(leaves, events, strict=True):
        expected = leaf_for(event, _salt(event))
        hashes.append(merkle.leaf_hash(merkle.canonical_json(expected)))
        assert (leaf.leaf_hash, leaf.personal_commitment) == (
            hashes[-1].hex(),
            expected["personal_commitment"],
        )
    nodes = {(n.level, n.index): bytes.fromhex(n.hash) for n in AuditTreeNode.objects.all()}
    assert nodes == {
        **{(0, i): hashes[i] for i in range(5)},
        (1, 0): merkle.node_hash(hashes[0], hashes[1]),
        (1, 1): merkle.node_hash(hashes[2], hashes[3]),
        (2, 0): merkle.node_hash(
            merkle.node_hash(hashes[0], hashes[1]), merkle.node_hash(hashes[2], hashes[3])
        ),
    }
    checkpoint = AuditCheckpoint.objects.get()
    assert run.checkpoint == checkpoint
    assert (checkpoint.tree_size, checkpoint.root_hash) == (5, merkle.root(hashes).hex())
    key = signing_key()
    assert checkpoint.key_id == key.key_id == hashlib.sha256(key.public_key_pem.encode()).hexdigest()
    body = merkle.checkpoint_body(5, checkpoint.root_hash, iso_timestamp(checkpoint.timestamp))
    assert merkle.verify_checkpoint(key.public_key_pem, body, base64.b64decode(checkpoint.signature))


def test_a_second_run_with_nothing_new_appends_nothing(dataset_version):
    sequence_audit_events()

    again = sequence_audit_events()

    assert (again.sequenced, again.tree_size, again.checkpoint) == (0, 4, None)
    assert list(AuditCheckpoint.objects.values_list("tree_size", flat=True)) == [4]
    assert AuditLeaf.objects.count() == 4


def test_later_runs_extend_the_tree_and_every_pair_of_checkpoints_is_consistent(team, admin):
    sizes = grow_log(team, admin, [1, 2, 5, 8, 13])

    assert sizes == [1, 2, 5, 8, 13]
    hashes = _leaf_hashes()
    roots = dict(AuditCheckpoint.objects.values_list("tree_size", "root_hash"))
    assert roots == {size: merkle.root(hashes[:size]).hex() for size in sizes}
    assert AuditTreeNode.objects.count() == 13 + 6 + 3 + 1
    for first in sizes:
        for second in sizes:
            if first <= second:
                proof = stored_consistency_proof(first, second)
                assert proof == merkle.consistency_proof(first, hashes[:second])
                assert merkle.verify_consistency(
                    first, second, bytes.fromhex(roots[first]), bytes.fromhex(roots[second]), proof
                )


def test_an_event_committed_after_a_higher_id_gets_the_next_leaf(dataset, admin):
    """Ids are handed out at INSERT, leaves at commit as the sequencer sees it: a lower id that
    shows up later is appended, never skipped."""
    sequence_audit_events()

    def event_with_id(pk: int) -> AuditEvent:
        event = AuditEvent.objects.create(
            id=pk, actor=admin, actor_label="admin", action="dataset.touch", object_type="dataset"
        )
        salt = merkle.new_salt().hex()
        AuditPersonalData.objects.create(event=event, salt=salt)
        tag_stored_event(event.pk, salt)
        return event

    later_id = event_with_id(10_000_000)
    first_run = sequence_audit_events()
    lower_id = event_with_id(9_000_000)
    second_run = sequence_audit_events()

    assert (first_run.sequenced, second_run.sequenced, second_run.tree_size) == (1, 1, 5)
    assert list(AuditLeaf.objects.filter(leaf_index__gte=3).values_list("leaf_index", "event_id")) == [
        (3, later_id.pk),
        (4, lower_id.pk),
    ]
    assert verify_audit_log().is_ok


def test_the_sequencer_works_in_batches_up_to_a_limit(dataset_version, compliance_officer):
    first = sequence_audit_events(max_events=3, batch_size=2)
    second = sequence_audit_events(max_events=3, batch_size=2)

    assert [(run.sequenced, run.tree_size) for run in (first, second)] == [(3, 3), (2, 5)]
    assert list(AuditLeaf.objects.values_list("event_id", flat=True)) == list(
        AuditEvent.objects.order_by("id").values_list("id", flat=True)
    )
    assert list(AuditCheckpoint.objects.order_by("tree_size").values_list("tree_size", flat=True)) == [3, 5]


def test_the_sequencer_refuses_a_tree_that_differs_from_its_checkpoint(team, admin):
    grow_log(team, admin, [3])
    with raw_sql() as cursor:
        cursor.execute(
            'UPDATE governance_audittreenode SET hash = %s WHERE level = 1 AND "index" = 0', ["00" * 32]
        )
    do_create_dataset(team=team, name="after-tampering", actor=admin)

    with pytest.raises(
        AuditTreeError, match="the stored tree's root differs from the checkpoint at tree size 3"
    ):
        sequence_audit_events()

    assert AuditLeaf.objects.count() == 3
    with raw_sql() as cursor:
        cursor.execute("DELETE FROM governance_auditleaf WHERE leaf_index = 2")
    with pytest.raises(AuditTreeError, match="the leaf table ends at 2 leaves, the latest checkpoint at 3"):
        sequence_audit_events()


def _hold_open(ready: threading.Event, release: threading.Event, team, admin, result: dict) -> None:
    try:
        with transaction.atomic():
            result["dataset"] = do_create_dataset(team=team, name="slow-commit", actor=admin)
            ready.set()
            release.wait(30)
    finally:
        connection.close()


@needs_postgres
@pytest.mark.django_db(transaction=True)
def test_an_uncommitted_lower_id_is_sequenced_after_its_commit(team, admin):
    sequence_audit_events()
    ready, release, result = threading.Event(), threading.Event(), {}
    slow = threading.Thread(target=_hold_open, args=(ready, release, team, admin, result))
    slow.start()
    assert ready.wait(30)
    fast = do_create_dataset(team=team, name="fast-commit", actor=admin)

    while_open = sequence_audit_events()
    release.set()
    slow.join(30)
    after_commit = sequence_audit_events()

    slow_event = AuditEvent.objects.get(action="dataset.create", object_id=str(result["dataset"].pk))
    fast_event = AuditEvent.objects.get(action="dataset.create", object_id=str(fast.pk))
    assert slow_event.pk < fast_event.pk
    assert (while_open.sequenced, after_commit.sequenced) == (1, 1)
    assert AuditLeaf.objects.get(event=fast_event).leaf_index == 1
    assert AuditLeaf.objects.get(event=slow_event).leaf_index == 2
    assert verify_audit_log().is_ok


@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_and_sequencers_leave_one_contiguous_tree(team, admin):
    """PostgreSQL: the advisory lock orders the sequencers; SQLite: BEGIN IMMEDIATE does."""
    errors: list[BaseException] = []
    writing = threading.Event()

    def write(worker: int) -> None:
        try:
            for number in range(8):
                do_create_dataset(team=team, name=f"w{worker}-{number}", actor=admin)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    def sequence() -> None:
        try:
            while not writing.is_set():
                sequence_audit_events(batch_size=3)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    sequencers = [threading.Thread(target=sequence) for _ in range(2)]
    writers = [threading.Thread(target=write, args=(i,)) for i in range(4)]
    for thread in sequencers + writers:
        thread.start()
    for thread in writers:
        thread.join(60)
    writing.set()
    for thread in sequencers:
        thread.join(60)
    sequence_audit_events()

    assert errors == []
    count = AuditEvent.objects.count()
    assert count == 1 + 32
    assert list(AuditLeaf.objects.order_by("leaf_index").values_list("leaf_index", flat=True)) == list(
        range(count)
    )
    assert AuditLeaf.objects.values("event").distinct().count() == count
    assert verify_audit_log().is_ok


@pytest.fixture
def sequencer_worker():
    """A real Celery worker (thread, solo pool) on the configured broker, on a queue of its own."""
    app = config.celery.app
    queue = "steward-tests-audit"
    saved = app.conf.task_routes
    app.conf.update(task_routes={"*": {"queue": queue}})
    try:
        with app.connection_for_write() as conn:
            conn.default_channel.queue_declare(queue)
            conn.default_channel.queue_purge(queue)
        with start_worker(app, pool="solo", perform_ping_check=False, queues=[queue], shutdown_timeout=30):
            yield app
    finally:
        app.conf.update(task_routes=saved)


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_the_sequencer_task_runs_on_a_real_worker(sequencer_worker, dataset_version):
    from governance.tasks import sequence_audit_events

    sequence_audit_events.delay()
    deadline = time.monotonic() + 60
    while not AuditCheckpoint.objects.exists() and time.monotonic() < deadline:
        time.sleep(0.2)

    assert list(AuditCheckpoint.objects.values_list("tree_size", flat=True)) == [4]
    assert AuditLeaf.objects.count() == AuditEvent.objects.count() == 4


def test_beat_runs_the_sequencer_every_ten_seconds(settings):
    assert settings.CELERY_BEAT_SCHEDULE["sequence-audit-events"] == {
        "task": "governance.tasks.sequence_audit_events",
        "schedule": 10.0,
        "options": {"expires": 10.0},
    }


# The signing key ------------------------------------------------------------------------------


def test_the_key_file_is_generated_once_with_mode_0600(settings, tmp_path):
    path = tmp_path / "keys" / "audit.pem"
    settings.STEWARD_AUDIT_SIGNING_KEY_FILE = str(path)

    first = signing_key()
    again = signing_key()

    assert path.stat().st_mode & 0o777 == 0o600
    assert path.read_text().startswith("-----BEGIN PRIVATE KEY-----\n")
    assert again.key_id == first.key_id == hashlib.sha256(first.public_key_pem.encode()).hexdigest()
    assert first.public_key_pem.startswith("-----BEGIN PUBLIC KEY-----\n")
    assert [p.name for p in path.parent.iterdir()] == ["audit.pem"]


def test_a_key_in_the_environment_wins_over_the_file(settings, tmp_path):
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()
    settings.STEWARD_AUDIT_SIGNING_KEY = pem
    settings.STEWARD_AUDIT_SIGNING_KEY_FILE = str(tmp_path / "unused.pem")

    loaded = signing_key()

    assert loaded.public_key_pem == merkle.export_public_key_pem(key).decode()
    assert not (tmp_path / "unused.pem").exists()


def test_a_key_that_is_not_ed25519_is_refused(settings):
    other = ec.generate_private_key(ec.SECP256R1())
    settings.STEWARD_AUDIT_SIGNING_KEY = other.private_bytes(
        Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()
    ).decode()

    with pytest.raises(ValueError, match="the audit signing key must be an Ed25519 private key"):
        signing_key()


# Stored proofs --------------------------------------------------------------------------------


def test_stored_inclusion_proofs_equal_the_rfc_proofs_for_every_leaf_and_checkpoint(team, admin):
    sizes = grow_log(team, admin, [3, 6, 13])
    hashes = _leaf_hashes()

    for size in sizes:
        for index in range(size):
            assert stored_inclusion_proof(index, size) == merkle.inclusion_proof(index, hashes[:size])


def test_a_proof_reads_its_nodes_in_one_query(team, admin, django_assert_num_queries):
    grow_log(team, admin, [13])

    with django_assert_num_queries(1):
        proof = stored_inclusion_proof(5, 13)
    with django_assert_num_queries(1):
        consistency = stored_consistency_proof(5, 13)

    assert (len(proof), len(consistency)) == (4, 5)


def test_a_missing_node_is_an_audit_tree_error(team, admin):
    grow_log(team, admin, [4])
    with raw_sql() as cursor:
        cursor.execute('DELETE FROM governance_audittreenode WHERE level = 1 AND "index" = 1')

    with pytest.raises(AuditTreeError, match=r"tree nodes \[\(1, 1\)\] are missing"):
        stored_inclusion_proof(0, 4)
