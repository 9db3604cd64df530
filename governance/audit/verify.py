"""Verifying the audit log: one event as an auditor would (``verify_event``, the trail's
"verified" mark) and the whole log end to end (``verify_audit_log``, ``manage.py
audit_verify``), with forked workers hashing leaves inside one PostgreSQL snapshot (issue 3).
"""

from __future__ import annotations

import contextlib
import gc
import multiprocessing
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from django.db import connections, models, transaction
from django.db.models import Exists, OuterRef

from governance import merkle
from governance.audit.keys import TAGGED_COLUMNS, known_public_keys, row_tag_problem, signing_key
from governance.audit.leaf import (
    ERASED,
    PERSONAL_FIELDS,
    ROW_POSITION,
    event_rows,
    iso_timestamp,
    row_leaf_hash,
)
from governance.audit.proofs import AuditTreeError, EventProof, event_proof, is_checkpoint_signed
from governance.models import (
    AuditCheckpoint,
    AuditEvent,
    AuditLeaf,
    AuditPersonalData,
    AuditRejection,
    AuditTreeNode,
)

VERIFY_CHUNK = 20_000
VERIFY_PARALLEL_MIN_LEAVES = 100_000
VERIFY_RANGE = 100_000
# A leaf hash no event can have: the comparison names the leaf of a row that cannot be hashed.
UNHASHABLE = bytes(merkle.HASH_SIZE)
_LEAF_INDEX, _ID = ROW_POSITION["leaf__leaf_index"], ROW_POSITION["id"]
_PERSONAL_POSITIONS = tuple(ROW_POSITION[name] for name in PERSONAL_FIELDS)


@dataclass(frozen=True)
class EventVerification:
    """The "verified" mark of the audit trail: ``status`` is "verified", "unsequenced" (no leaf
    yet) or "failed"; ``detail`` says why it failed, or notes erased personal details."""

    status: Literal["verified", "unsequenced", "failed"]
    detail: str = ""
    proof: EventProof | None = None

    @property
    def is_verified(self) -> bool:
        return self.status == "verified"


def verify_event(event: AuditEvent) -> EventVerification:
    """Check ``event`` as an auditor would: recompute its leaf, check the latest checkpoint's
    Ed25519 signature with this server's public key, and its inclusion proof (RFC 9162 section
    2.1.3.2) against that signed root. Never raises for a tampered log: it reports "failed"."""
    try:
        proof = event_proof(event)
    except (AuditTreeError, ValueError) as exc:
        return EventVerification("failed", str(exc))
    if proof is None:
        rejection = AuditRejection.objects.filter(event=event).first()
        if rejection is not None:
            return EventVerification("failed", f"the sequencer refused this event: {rejection.reason}")
        return EventVerification("unsequenced", "the sequencer has not given this event a leaf yet")
    key = signing_key()
    checkpoint = proof.checkpoint
    if checkpoint.key_id != key.key_id:
        return EventVerification("failed", "the latest checkpoint is signed by another key", proof)
    if not is_checkpoint_signed(checkpoint, {key.key_id: key.public_key_pem}):
        return EventVerification("failed", "the latest checkpoint's signature is invalid", proof)
    root = bytes.fromhex(checkpoint.root_hash)
    if not merkle.verify_inclusion(
        proof.leaf_index, checkpoint.tree_size, proof.leaf_hash, proof.proof, root
    ):
        return EventVerification(
            "failed", "the event no longer matches its leaf: the proof does not reach the signed root", proof
        )
    detail = (
        "personal details erased; the rest of the event is verified" if proof.is_personal_data_erased else ""
    )
    return EventVerification("verified", detail, proof)


# --- verifying the whole log (manage.py audit_verify) ------------------------------------------


@dataclass
class LogVerification:
    """The outcome of ``verify_audit_log``; ``is_ok`` when nothing was found wrong."""

    leaf_count: int = 0
    checkpoint_count: int = 0
    latest: AuditCheckpoint | None = None
    node_count: int = 0
    erased_count: int = 0
    unsequenced_count: int = 0
    mismatch: merkle.Mismatch | None = None
    mismatch_event_id: int | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def is_ok(self) -> bool:
        return self.mismatch is None and not self.problems

    def lines(self) -> list[str]:
        """Human-readable lines; the last starts with "OK:" or "FAILED:"."""
        latest = (
            f"latest tree size {self.latest.tree_size}, root {self.latest.root_hash}, "
            f"{iso_timestamp(self.latest.timestamp) if self.latest.timestamp else 'no readable time'}"
            if self.latest is not None
            else "no checkpoint yet"
        )
        lines = [
            f"leaves: {self.leaf_count}; checkpoints: {self.checkpoint_count} ({latest}); "
            f"tree nodes: {self.node_count}",
            f"events with erased personal details: {self.erased_count}; "
            f"events not yet sequenced: {self.unsequenced_count}",
        ]
        if self.is_ok:
            lines.append(
                f"OK: {self.leaf_count} leaves recomputed from their events match the stored tree "
                f"and {self.checkpoint_count} signed checkpoints"
            )
            return lines
        failures = list(self.problems)
        if self.mismatch is not None:
            where = (
                f"; leaf {self.mismatch.leaf_index} now holds event {self.mismatch_event_id}"
                if self.mismatch_event_id is not None and self.mismatch.kind != "stored hash"
                else ""
            )
            failures.insert(0, f"{self.mismatch}{where}")
        lines.append("FAILED: " + "; ".join(failures))
        return lines


def verify_audit_log(
    *,
    public_keys: Iterable[str] = (),
    chunk_size: int = VERIFY_CHUNK,
    workers: int | None = None,
    parallel_min_leaves: int = VERIFY_PARALLEL_MIN_LEAVES,
) -> LogVerification:
    """Recompute every leaf from the events and check them, the stored tree and every checkpoint.

    1. Each checkpoint's Ed25519 signature, under this server's key or one of ``public_keys``
       (PEMs of earlier keys), matched by ``key_id``.
    2. The events' leaves, streamed, recomputed with ``leaf_for`` (the stored commitment for
       erased details) and put in leaf-index order, against the signed roots and the stored
       level-0 nodes (``merkle.find_first_mismatch``): names the first bad leaf index, or a
       missing tail.
    3. Every stored interior node against the hash of its children.

    On PostgreSQL, outside a transaction, everything reads one REPEATABLE READ snapshot, so a
    sequencer run meanwhile cannot look like tampering; logs of ``parallel_min_leaves`` leaves
    or more are hashed by ``workers`` forked processes (default: the CPU count, at most 8) that
    share that snapshot (``pg_export_snapshot``), while this process checks the stored tree.
    O(n) hashes; memory for about three hashes per leaf. Raises ValueError for a public key
    that is not an Ed25519 PEM.
    """
    keys = known_public_keys(public_keys)
    workers = _worker_count(workers, parallel_min_leaves)
    pool = None
    if workers > 1:
        # Fork before this process opens the snapshot's connection: children must not share it.
        connections.close_all()
        pool = multiprocessing.get_context("fork").Pool(workers)
    try:
        with _snapshot() as snapshot, _gc_paused():
            return _verify(keys, chunk_size, pool, snapshot)
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()


def _verify(keys: Mapping[str, str], chunk_size: int, pool: Any, snapshot: str | None) -> LogVerification:
    report = LogVerification()
    checkpoints = list(AuditCheckpoint.objects.order_by("tree_size"))
    report.checkpoint_count = len(checkpoints)
    report.latest = checkpoints[-1] if checkpoints else None
    signed = []
    for checkpoint in checkpoints:
        if is_checkpoint_signed(checkpoint, keys):
            signed.append((checkpoint.tree_size, checkpoint.root_hash))
        else:
            report.problems.append(f"checkpoint at tree size {checkpoint.tree_size} has an invalid signature")

    ranges = _event_id_ranges()
    pending = None
    if pool is not None:
        jobs = [(snapshot, low, high, chunk_size) for low, high in ranges]
        pending = pool.map_async(_hash_event_range_job, jobs)
    # While the workers hash: the stored tree on its own, and the events waiting for a leaf.
    stored = _stored_leaf_hashes(report)
    _check_interior_nodes(report, stored)
    stored_vouched = merkle.vouched_prefix(stored, signed)
    _check_unsequenced(report)
    # Each leaf row against the stored node of its own index: the two copies the sequencer wrote.
    copies_differ = _first_leaf_copy_differing()
    if copies_differ is not None:
        report.problems.insert(
            0, f"the leaf table and the node table disagree on the hash of leaf {copies_differ}"
        )
    if pending is not None:
        rows = [row for part in pending.get() for row in part]
    else:
        rows = [row for low, high in ranges for row in _hash_event_range(low, high, chunk_size)]

    rows.sort()
    _check_leaf_table(report, [row[0] for row in rows])
    recomputed = [row[1] for row in rows]
    event_ids = [row[2] for row in rows]
    report.erased_count = sum(1 for row in rows if row[3] == "erased")
    saltless = [row[2] for row in rows if row[3] == "salt missing"]
    if saltless:
        report.problems.append(
            f"{len(saltless)} events lost their salt without an erasure (their details show no "
            f"{ERASED} mark): events {', '.join(map(str, saltless[:5]))}"
            + (f" and {len(saltless) - 5} more" if len(saltless) > 5 else "")
        )
    del rows
    report.leaf_count = len(recomputed)
    report.mismatch = merkle.find_first_mismatch(recomputed, signed, stored, stored_vouched=stored_vouched)
    if report.mismatch is not None and report.mismatch.leaf_index < len(event_ids):
        report.mismatch_event_id = event_ids[report.mismatch.leaf_index]
    return report


def _check_leaf_table(report: LogVerification, indexes: list[int]) -> None:
    """The leaves joined to their events must be numbered 0..n-1, be every row of the leaf
    table, and end where the latest checkpoint does."""
    if indexes != list(range(len(indexes))):
        gap = next(position for position, index in enumerate(indexes) if index != position)
        report.problems.append(
            f"leaf indexes do not run 0..{len(indexes) - 1}: position {gap} holds leaf {indexes[gap]}"
        )
    stray = AuditLeaf.objects.count() - len(indexes)
    if stray:
        report.problems.append(f"{stray} leaf rows point at no event")
    if report.latest is not None and report.latest.tree_size != len(indexes):
        report.problems.append(
            f"{len(indexes)} leaves, but the latest checkpoint covers {report.latest.tree_size}"
        )


def _check_unsequenced(report: LogVerification) -> None:
    """Count the events without a leaf, and report those the sequencer refused or will refuse
    (no valid ``event_tag``): rows written into the database, not by Steward."""
    refused = [
        f"event {event_id} ({reason})"
        for event_id, reason in AuditRejection.objects.order_by("event_id").values_list("event_id", "reason")
    ]
    report.unsequenced_count = 0
    pending = AuditEvent.objects.filter(leaf__isnull=True, rejection__isnull=True).order_by("id")
    rows = pending.values(*TAGGED_COLUMNS)
    for row in rows.iterator(chunk_size=VERIFY_CHUNK):
        report.unsequenced_count += 1
        problem = row_tag_problem(row)
        if problem is not None:
            refused.append(f"event {row['id']} ({problem})")
    if refused:
        shown = ", ".join(refused[:5]) + (f" and {len(refused) - 5} more" if len(refused) > 5 else "")
        report.problems.append(f"{len(refused)} events have no valid tag and get no leaf: {shown}")


def _worker_count(workers: int | None, parallel_min_leaves: int) -> int:
    connection = transaction.get_connection()
    if (
        connection.vendor != "postgresql"
        or connection.in_atomic_block  # a test's transaction: children would not see its rows
        or "fork" not in multiprocessing.get_all_start_methods()
    ):
        return 1
    workers = min(os.cpu_count() or 1, 8) if workers is None else workers
    last_leaf = AuditLeaf.objects.aggregate(last=models.Max("leaf_index"))["last"]
    if workers > 1 and (last_leaf is None or last_leaf + 1 < parallel_min_leaves):
        return 1
    return max(workers, 1)


def _event_id_ranges() -> list[tuple[int, int]]:
    """``[low, high)`` event id ranges of ``VERIFY_RANGE`` ids covering every sequenced event."""
    bounds = AuditLeaf.objects.aggregate(low=models.Min("event_id"), high=models.Max("event_id"))
    if bounds["low"] is None:
        return []
    low, high = bounds["low"], bounds["high"] + 1
    return [(start, min(start + VERIFY_RANGE, high)) for start in range(low, high, VERIFY_RANGE)]


_SNAPSHOT_ID = re.compile(r"[0-9A-Fa-f-]+")


@contextlib.contextmanager
def _snapshot() -> Iterator[str | None]:
    """A read-only REPEATABLE READ transaction on PostgreSQL, yielding its exported snapshot id;
    nothing (None) on SQLite or inside a caller's transaction."""
    connection = transaction.get_connection()
    if connection.vendor != "postgresql" or connection.in_atomic_block:
        yield None
        return
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            cursor.execute("SELECT pg_export_snapshot()")
            snapshot = cursor.fetchone()[0]
        yield snapshot


def _hash_event_range_job(job: tuple[str | None, int, int, int]) -> list[tuple[int, bytes, int, str]]:
    """In a forked worker: ``_hash_event_range`` inside the parent's exported snapshot, on a
    connection of its own."""
    snapshot, low, high, chunk_size = job
    connection = transaction.get_connection()
    try:
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                if snapshot is not None:
                    if not _SNAPSHOT_ID.fullmatch(snapshot):
                        raise ValueError(f"not a snapshot id: {snapshot!r}")
                    # A utility statement takes no bind parameters; the id is checked above.
                    cursor.execute(f"SET TRANSACTION SNAPSHOT '{snapshot}'")
            with _gc_paused():
                return _hash_event_range(low, high, chunk_size)
    finally:
        connection.close()


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector: millions of row tuples would make each of its full
    collections scan them all again, and verifying creates no reference cycles."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _hash_event_range(low: int, high: int, chunk_size: int) -> list[tuple[int, bytes, int, str]]:
    """``(leaf index, hash recomputed from the event, event id, "" | "erased" | "salt missing")``
    for each sequenced event with ``low <= id < high``.

    Events, their leaves and their salts are each read in id order over one index range (merge
    joins, no sort, no scan of the whole log per range); the caller sorts by leaf index, and the
    rows arrive nearly in that order, which Timsort handles in about one pass.
    """
    salts = dict(
        AuditPersonalData.objects.filter(event_id__gte=low, event_id__lt=high).values_list("event_id", "salt")
    )
    hashed = []
    for row in event_rows(low, high).iterator(chunk_size=chunk_size):
        event_id = row[_ID]
        salt_hex = salts.get(event_id)
        try:
            # Only a missing salt row means erased details; an empty or short salt is refused.
            digest = row_leaf_hash(row, None if salt_hex is None else bytes.fromhex(salt_hex))
        except (TypeError, ValueError, AttributeError):
            # A salt, JSON text or column altered in the database to something no event holds:
            # no leaf hash can match, so the comparison names this leaf.
            digest = UNHASHABLE
        hashed.append((row[_LEAF_INDEX], digest, event_id, _salt_status(row) if salt_hex is None else ""))
    return hashed


def _salt_status(row: Sequence[Any]) -> str:
    """For an event without a salt: "erased" when its details show the erasure's mark, else
    "salt missing" (its salt row was removed in the database, not by an erasure)."""
    personal = [row[position] for position in _PERSONAL_POSITIONS]
    marked = any(isinstance(value, str) and ERASED in value for value in personal)
    return "erased" if marked else "salt missing"


def _first_leaf_copy_differing() -> int | None:
    """The first leaf index whose hash in the leaf table differs from its level-0 node: the two
    copies the sequencer wrote (a missing node is reported on its own)."""
    same_node = AuditTreeNode.objects.filter(
        level=0, index=OuterRef("leaf_index"), hash=OuterRef("leaf_hash")
    )
    present_node = AuditTreeNode.objects.filter(level=0, index=OuterRef("leaf_index"))
    differing = AuditLeaf.objects.filter(Exists(present_node), ~Exists(same_node))
    return differing.aggregate(first=models.Min("leaf_index"))["first"]


def _stored_level(level: int) -> tuple[str, int, int]:
    """The stored hashes of one tree level as one hex string in index order, their count, and
    the highest index + 1 (0 when none). PostgreSQL concatenates them itself: at a million
    nodes that is an order of magnitude cheaper than a row per node through the driver."""
    with transaction.get_connection().cursor() as cursor:
        if cursor.db.vendor == "postgresql":
            cursor.execute(
                "SELECT coalesce(string_agg(hash, '' ORDER BY \"index\"), ''), count(*), "
                'coalesce(max("index") + 1, 0) FROM governance_audittreenode WHERE level = %s',
                [level],
            )
            return cursor.fetchone()
    rows = list(AuditTreeNode.objects.filter(level=level).order_by("index").values_list("index", "hash"))
    return "".join(value for _, value in rows), len(rows), rows[-1][0] + 1 if rows else 0


def _first_missing_index(level: int) -> int:
    indexes = AuditTreeNode.objects.filter(level=level).order_by("index").values_list("index", flat=True)
    return next((expected for expected, index in enumerate(indexes.iterator()) if index != expected), 0)


def _first_differing_hash(expected_hex: str, stored_hex: str) -> int:
    """The index of the first 32-byte hash (64 hex digits) that differs between two levels."""
    step = 2 * merkle.HASH_SIZE
    return next(
        index
        for index in range(0, max(len(expected_hex), len(stored_hex)) // step + 1)
        if expected_hex[index * step : (index + 1) * step] != stored_hex[index * step : (index + 1) * step]
    )


def _stored_leaf_hashes(report: LogVerification) -> list[bytes]:
    """The level-0 nodes: the leaf hashes the sequencer stored, in index order."""
    hex_hashes, count, end = _stored_level(0)
    if count != end:
        report.problems.append(f"stored leaf hash node {_first_missing_index(0)} is missing")
    raw = bytes.fromhex(hex_hashes)
    size = merkle.HASH_SIZE
    report.node_count = count
    return [raw[start : start + size] for start in range(0, len(raw), size)]


def _check_interior_nodes(report: LogVerification, level_hashes: list[bytes]) -> None:
    """Compare the stored nodes of each level >= 1 with the hashes of their two children, level
    by level from the stored leaf hashes; report the first wrong, missing or extra node."""
    size = len(level_hashes)
    level, current = 0, level_hashes
    first_bad = None
    while len(current) > 1:
        # Pairs (0, 1), (2, 3), ...; an odd last node has no complete parent yet.
        pairs = zip(current[0::2], current[1::2], strict=False)
        current = [merkle.node_hash(left, right) for left, right in pairs]
        level += 1
        stored_hex, count, end = _stored_level(level)
        report.node_count += count
        if first_bad is not None:
            continue
        if end > len(current):
            first_bad = f"stored node ({level}, {end - 1}) lies outside a tree of {size} leaves"
        elif count < len(current):
            first_bad = f"{len(current) - count} stored nodes of level {level} are missing"
        else:
            expected_hex = b"".join(current).hex()
            if stored_hex != expected_hex:
                index = _first_differing_hash(expected_hex, stored_hex)
                first_bad = f"stored node ({level}, {index}) is not the hash of its children"
    above = AuditTreeNode.objects.filter(level__gt=level).order_by("level", "index")
    report.node_count += above.count()
    extra = above.values_list("level", "index").first()
    if first_bad is None and extra is not None:
        first_bad = f"stored node ({extra[0]}, {extra[1]}) lies outside a tree of {size} leaves"
    if first_bad is not None:
        report.problems.append(first_bad)
