"""The sequencer: gives committed audit events contiguous leaf indexes, stores every node the
append completes and signs a checkpoint (issue 3).

* ``AuditLeaf``: event -> contiguous leaf index, in the order the sequencer saw the events
  commit (event ids need not commit in order), with the leaf hash and the personal commitment;
* ``AuditTreeNode``: every complete subtree ``(level, index)``, written once when
  ``CompactRange.append`` completes it;
* ``AuditCheckpoint``: the signed ``(tree size, root hash, time)`` after each run.
"""

from __future__ import annotations

import base64
import datetime
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from governance import merkle
from governance.audit.keys import TAGGED_COLUMNS, checked_row_leaf, signing_key
from governance.audit.leaf import iso_timestamp
from governance.audit.proofs import AuditTreeError, latest_checkpoint, read_nodes
from governance.models import AuditCheckpoint, AuditEvent, AuditLeaf, AuditRejection, AuditTreeNode

logger = logging.getLogger(__name__)

# pg_advisory_xact_lock key of the sequencer: the bytes "StwAudit" as a signed 64-bit integer.
SEQUENCER_LOCK_KEY = 0x5374774175646974
SEQUENCE_BATCH = 2_000
SEQUENCE_MAX_EVENTS = 50_000


@dataclass(frozen=True)
class SequencerRun:
    """What one ``sequence_audit_events`` call appended: the number of new leaves, the tree size
    after it, and the checkpoint it signed (None when there was nothing to append)."""

    sequenced: int
    tree_size: int
    checkpoint: AuditCheckpoint | None


def sequence_audit_events(
    *, max_events: int = SEQUENCE_MAX_EVENTS, batch_size: int = SEQUENCE_BATCH
) -> SequencerRun:
    """Give committed, unsequenced audit events the next leaf indexes and sign a checkpoint.

    In one transaction: take the sequencer's lock (``pg_advisory_xact_lock`` on PostgreSQL;
    SQLite's ``BEGIN IMMEDIATE`` already serialises writers), restore the tree's right edge from
    the stored nodes and check it against the latest checkpoint, then read events without a
    leaf in id order, ``batch_size`` at a time, up to ``max_events``. An event whose id is lower
    than ones sequenced before (its transaction committed later) simply gets the next index.
    Writes each event's ``AuditLeaf``, every node the append completes (level 0 included) and
    one checkpoint signed with ``signing_key()``. An event without a valid ``event_tag`` (a row
    written straight into the database) gets an ``AuditRejection`` instead of a leaf, which
    ``audit_verify`` reports. Idempotent: a second run finds nothing to do.

    Raises AuditTreeError when the stored tree does not match its latest checkpoint (then
    nothing is appended until ``audit_verify`` has been looked at).
    """
    with transaction.atomic():
        take_sequencer_lock()
        frontier, _ = _restore_frontier()
        sequenced, after_id = 0, 0
        sequenced_at = timezone.now()
        while sequenced < max_events:
            # The first batch scans for every unsequenced event; later ones continue after it.
            rows = list(
                AuditEvent.objects.filter(leaf__isnull=True, id__gt=after_id)
                .order_by("id")
                .filter(rejection__isnull=True)
                .values(*TAGGED_COLUMNS)[: min(batch_size, max_events - sequenced)]
            )
            if not rows:
                break
            sequenced += _append(frontier, rows, sequenced_at)
            after_id = rows[-1]["id"]
        if not sequenced:
            return SequencerRun(0, frontier.size, None)
        checkpoint = _sign_checkpoint(frontier)
    return SequencerRun(sequenced, frontier.size, checkpoint)


def take_sequencer_lock() -> None:
    """Serialise with other sequencer runs and erasures until this transaction ends."""
    connection = transaction.get_connection()
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [SEQUENCER_LOCK_KEY])


def _restore_frontier() -> tuple[merkle.CompactRange, AuditCheckpoint | None]:
    latest = latest_checkpoint()
    size = latest.tree_size if latest is not None else 0
    last_index = AuditLeaf.objects.order_by("-leaf_index").values_list("leaf_index", flat=True).first()
    leaf_count = 0 if last_index is None else last_index + 1
    if leaf_count != size:
        raise AuditTreeError(f"the leaf table ends at {leaf_count} leaves, the latest checkpoint at {size}")
    if latest is None:
        return merkle.CompactRange(), None
    peaks = merkle.subtree_nodes(0, size)
    stored = read_nodes(peaks)
    frontier = merkle.CompactRange(size, [stored[peak] for peak in peaks])
    if frontier.root().hex() != latest.root_hash:
        raise AuditTreeError(f"the stored tree's root differs from the checkpoint at tree size {size}")
    return frontier, latest


def _append(frontier: merkle.CompactRange, rows: Sequence[dict], sequenced_at: datetime.datetime) -> int:
    """Append the rows whose tag checks out; each other one gets an ``AuditRejection`` and a log
    error, never a leaf. Returns the number appended."""
    leaves, nodes, rejections = [], [], []
    for row in rows:
        checked = checked_row_leaf(row)
        if isinstance(checked, str):
            problem = checked
            rejections.append(AuditRejection(event_id=row["id"], reason=problem, rejected_at=sequenced_at))
            logger.error("audit event %s refused by the sequencer: %s", row["id"], problem)
            continue
        leaf, digest = checked
        leaves.append(
            AuditLeaf(
                leaf_index=frontier.size,
                event_id=row["id"],
                leaf_hash=digest.hex(),
                personal_commitment=leaf[merkle.PERSONAL_COMMITMENT_KEY],
                sequenced_at=sequenced_at,
            )
        )
        nodes += [
            AuditTreeNode(level=level, index=index, hash=value.hex())
            for level, index, value in frontier.append(digest)
        ]
    AuditRejection.objects.bulk_create(rejections)
    AuditLeaf.objects.bulk_create(leaves)
    AuditTreeNode.objects.bulk_create(nodes, batch_size=5_000)
    return len(leaves)


def _sign_checkpoint(frontier: merkle.CompactRange) -> AuditCheckpoint:
    key = signing_key()
    root = frontier.root()
    timestamp = timezone.now()
    body = merkle.checkpoint_body(frontier.size, root, iso_timestamp(timestamp))
    return AuditCheckpoint.objects.create(
        tree_size=frontier.size,
        root_hash=root.hex(),
        timestamp=timestamp,
        signature=base64.b64encode(key.private_key.sign(body)).decode("ascii"),
        key_id=key.key_id,
    )
