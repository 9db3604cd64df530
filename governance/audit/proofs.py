"""Proofs from the stored tree: checkpoints, the stored nodes a proof reads, one event's
inclusion proof, and who may see them (issue 3).

``AuditTreeNode`` holds every complete subtree ``(level, index)``, level 0 being the leaf
hashes; a proof is planned as node coordinates (``merkle.inclusion_plan`` /
``consistency_plan``) and filled with O(log n) of them read in one query.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.db import transaction

from governance import merkle
from governance.audit.leaf import hash_leaf, iso_timestamp, leaf_for
from governance.models import AuditCheckpoint, AuditEvent
from governance.permissions import platform_roles

if TYPE_CHECKING:
    from django.contrib.auth.models import AnonymousUser, User


class AuditTreeError(RuntimeError):
    """The stored tree disagrees with itself or with its latest checkpoint; nothing was appended."""


def checkpoint_json(checkpoint: AuditCheckpoint) -> dict[str, Any]:
    """``{"tree_size", "root_hash" (hex), "timestamp" (the signed ISO string), "signature"
    (base64 Ed25519 over ``merkle.checkpoint_body``), "key_id"}``, as bundles carry it."""
    return {
        "tree_size": checkpoint.tree_size,
        "root_hash": checkpoint.root_hash,
        "timestamp": iso_timestamp(checkpoint.timestamp),
        "signature": checkpoint.signature,
        "key_id": checkpoint.key_id,
    }


def is_checkpoint_signed(checkpoint: AuditCheckpoint, public_keys: Mapping[str, str]) -> bool:
    """Whether the checkpoint's Ed25519 signature (RFC 8032) over ``merkle.checkpoint_body`` is
    valid under the key its ``key_id`` names in ``public_keys`` (``{key_id: PEM}``); False for an
    unknown key or a malformed signature."""
    pem = public_keys.get(checkpoint.key_id)
    if pem is None:
        return False
    try:
        signature = base64.b64decode(checkpoint.signature, validate=True)
        body = merkle.checkpoint_body(
            checkpoint.tree_size, checkpoint.root_hash, iso_timestamp(checkpoint.timestamp)
        )
    except (ValueError, TypeError, AttributeError):  # columns altered to what no checkpoint holds
        return False
    return merkle.verify_checkpoint(pem, body, signature)


def latest_checkpoint() -> AuditCheckpoint | None:
    """The checkpoint of the largest tree, or None before the first sequencer run."""
    return AuditCheckpoint.objects.order_by("-tree_size").first()


def read_nodes(nodes: Iterable[merkle.NodeId]) -> dict[merkle.NodeId, bytes]:
    """The stored hashes of ``nodes`` (``(level, index)`` pairs) in one query.

    Raises AuditTreeError if any of them is missing from ``AuditTreeNode``.
    """
    wanted = {(int(level), int(index)) for level, index in nodes}
    if not wanted:
        return {}
    # Plain SQL with a row-value IN list: the ORM needs longer to compile an OR of ~2 log n
    # conditions than the database to answer it (half of the 5 ms proof budget).
    pairs = ", ".join(["(%s, %s)"] * len(wanted))
    with transaction.get_connection().cursor() as cursor:
        cursor.execute(
            f'SELECT level, "index", hash FROM governance_audittreenode WHERE (level, "index") IN ({pairs})',  # noqa: S608
            [number for node in sorted(wanted) for number in node],
        )
        found = {(level, index): bytes.fromhex(value) for level, index, value in cursor.fetchall()}
    missing = wanted - found.keys()
    if missing:
        raise AuditTreeError(f"tree nodes {sorted(missing)[:5]} are missing from the node table")
    return found


def stored_inclusion_proof(leaf_index: int, tree_size: int) -> list[bytes]:
    """RFC 9162 section 2.1.3.1 inclusion proof of ``leaf_index`` in the tree of ``tree_size``
    leaves, from O(log n) stored nodes read in one query. Raises ValueError for an index outside
    the tree, AuditTreeError for a missing node."""
    plan = merkle.inclusion_plan(leaf_index, tree_size)
    return merkle.proof_from_plan(plan, _getter(read_nodes(merkle.plan_nodes(plan))))


def stored_consistency_proof(first_size: int, second_size: int) -> list[bytes]:
    """RFC 9162 section 2.1.4.1 consistency proof from the tree of ``first_size`` leaves to the
    tree of ``second_size``, from stored nodes read in one query. Raises ValueError unless
    ``0 <= first_size <= second_size``, AuditTreeError for a missing node."""
    plan = merkle.consistency_plan(first_size, second_size)
    return merkle.proof_from_plan(plan, _getter(read_nodes(merkle.plan_nodes(plan))))


def _getter(nodes: Mapping[merkle.NodeId, bytes]) -> merkle.NodeGetter:
    return lambda level, index: nodes[(level, index)]


@dataclass(frozen=True)
class EventProof:
    """An event's leaf (recomputed from the event as it is now), its RFC 9162 inclusion proof
    against ``checkpoint``, and whether its personal details were erased (the leaf then carries
    the stored commitment)."""

    leaf_index: int
    leaf: dict[str, Any]
    leaf_hash: bytes
    proof: list[bytes]
    checkpoint: AuditCheckpoint
    is_personal_data_erased: bool

    def as_json(self) -> dict[str, Any]:
        """``{"leaf_index", "leaf", "leaf_hash" (hex), "proof" ([hex, ...], leaf level first),
        "checkpoint" (``checkpoint_json``), "personal_data_erased"}``."""
        return {
            "leaf_index": self.leaf_index,
            "leaf": self.leaf,
            "leaf_hash": self.leaf_hash.hex(),
            "proof": [step.hex() for step in self.proof],
            "checkpoint": checkpoint_json(self.checkpoint),
            "personal_data_erased": self.is_personal_data_erased,
        }


def event_proof(event: AuditEvent, checkpoint: AuditCheckpoint | None = None) -> EventProof | None:
    """The inclusion proof of ``event`` against ``checkpoint`` (default: the latest), or None
    when the event has no leaf yet.

    Select the event with ``select_related("leaf", "personal_data")``; then this costs two
    queries (the latest checkpoint, the proof's nodes). Raises AuditTreeError when no given or
    stored checkpoint covers the event's leaf, or a node is missing.
    """
    leaf_row = getattr(event, "leaf", None)
    if leaf_row is None:
        return None
    checkpoint = checkpoint or latest_checkpoint()
    if checkpoint is None or checkpoint.tree_size <= leaf_row.leaf_index:
        raise AuditTreeError(f"no checkpoint covers leaf {leaf_row.leaf_index}")
    personal = getattr(event, "personal_data", None)
    salt = bytes.fromhex(personal.salt) if personal is not None else None
    leaf = leaf_for(event, salt, commitment=leaf_row.personal_commitment)
    return EventProof(
        leaf_index=leaf_row.leaf_index,
        leaf=leaf,
        leaf_hash=hash_leaf(leaf),
        proof=stored_inclusion_proof(leaf_row.leaf_index, checkpoint.tree_size),
        checkpoint=checkpoint,
        is_personal_data_erased=personal is None,
    )


def may_audit(user: User | AnonymousUser) -> bool:
    """Whether ``user`` may read the tree itself (proofs, checkpoints, bundles): platform admins
    and compliance officers. Tree sizes and leaf indexes count every team's events, so team
    members see their events but not the tree."""
    return bool(platform_roles(user) & {"admin", "compliance_officer"})
