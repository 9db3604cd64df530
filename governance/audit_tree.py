"""The audit log's Merkle tree in the database: leaves, the sequencer, signed checkpoints, proofs,
whole-log verification and the erasure of a person's details (issue 3).

``governance/merkle.py`` is the pure RFC 9162 engine (and the auditors' offline verifier); this
module stores its tree:

* ``AuditLeaf``: event -> contiguous leaf index, in the order the sequencer saw the events
  commit (event ids need not commit in order), with the leaf hash and the personal commitment;
* ``AuditTreeNode``: every complete subtree ``(level, index)``, level 0 being the leaf hashes,
  written once when ``CompactRange.append`` completes it; a proof reads O(log n) of them;
* ``AuditCheckpoint``: the signed ``(tree size, root hash, time)`` after each sequencer run;
* ``AuditPersonalData``: each event's salt. A leaf hashes the event's non-personal fields plus a
  salted commitment to the personal ones (``leaf_for``), so erasing a person (redacting those
  fields, deleting the salt) keeps every leaf, root and proof valid.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import functools
import gc
import hashlib
import hmac
import json
import logging
import multiprocessing
import os
import re
import secrets
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import connections, models, transaction
from django.db.models import Exists, OuterRef, Q, TextField
from django.db.models.functions import Cast
from django.utils import timezone

from governance import merkle
from governance.audit import record_audit_event
from governance.models import (
    AuditCheckpoint,
    AuditEvent,
    AuditLeaf,
    AuditPersonalData,
    AuditRejection,
    AuditTreeNode,
)
from governance.permissions import platform_roles

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

logger = logging.getLogger(__name__)

# The non-personal fields a leaf holds as they are, and the personal ones it only commits to.
LEAF_FIELDS = (
    "id",
    "timestamp",
    "action",
    "object_type",
    "object_id",
    "team_id",
    "actor_id",
    "on_behalf_of_id",
    "request_id",
    "task_id",
)
PERSONAL_FIELDS = ("actor_label", "on_behalf_of_label", "object_repr", "before", "after")
ERASED = "[erased]"
# pg_advisory_xact_lock key of the sequencer: the bytes "StwAudit" as a signed 64-bit integer.
SEQUENCER_LOCK_KEY = 0x5374774175646974
SEQUENCE_BATCH = 2_000
SEQUENCE_MAX_EVENTS = 50_000
VERIFY_CHUNK = 20_000
VERIFY_PARALLEL_MIN_LEAVES = 100_000
VERIFY_RANGE = 100_000


class AuditTreeError(RuntimeError):
    """The stored tree disagrees with itself or with its latest checkpoint; nothing was appended."""


def iso_timestamp(value: datetime.datetime | str) -> str:
    """``value`` in UTC as ISO 8601 with microseconds, e.g. ``2026-03-01T12:00:00.000000+00:00``:
    the form leaves and checkpoint bodies hash, identical on every database backend. A string
    is taken as already in that form (``IsoTimestamp`` has PostgreSQL write it)."""
    if isinstance(value, str):
        return value
    return value.astimezone(datetime.UTC).isoformat(timespec="microseconds")


class IsoTimestamp(models.Func):
    """PostgreSQL: a timestamptz as ``iso_timestamp`` writes it, formatted by the server, which
    saves ``audit_verify`` parsing a million datetimes. Years 1000-9999 only (like the app)."""

    template = "to_char(%(expressions)s AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"+00:00\"')"
    output_field = models.CharField()


# --- leaves -----------------------------------------------------------------------------------


def leaf_for(
    event: AuditEvent | Mapping[str, Any], salt: bytes | None, *, commitment: str | None = None
) -> dict[str, Any]:
    """The JSON object an event's Merkle leaf hashes (``merkle.leaf_hash(canonical_json(...))``).

    ``{"id", "timestamp" (``iso_timestamp``), "action", "object_type", "object_id", "team_id",
    "actor_id", "on_behalf_of_id", "request_id", "task_id", "personal_commitment"}`` where the
    commitment is ``merkle.personal_commitment`` of ``{"actor_label", "on_behalf_of_label",
    "object_repr", "before", "after"}`` under ``salt`` (32 bytes). ``event`` is an AuditEvent or
    a mapping with those attribute names (a ``.values()`` row). When the details are erased
    (``salt`` None) the stored ``commitment`` (hex) stands in for them.

    Raises ValueError for an erased event without ``commitment``, a salt of the wrong size, or
    personal details canonical JSON cannot encode.
    """
    if not isinstance(event, Mapping):
        event = {name: getattr(event, name) for name in (*LEAF_FIELDS, *PERSONAL_FIELDS)}
    leaf = {name: event[name] for name in LEAF_FIELDS}
    leaf["timestamp"] = iso_timestamp(leaf["timestamp"])
    if salt is not None:
        commitment = merkle.personal_commitment({name: event[name] for name in PERSONAL_FIELDS}, salt)
    elif commitment is None:
        raise ValueError(f"event {leaf['id']} has no salt: its stored personal commitment is needed")
    leaf[merkle.PERSONAL_COMMITMENT_KEY] = commitment
    return leaf


def personal_details(event: AuditEvent) -> dict[str, Any]:
    """The fields ``leaf_for`` commits to instead of hashing them, by name."""
    return {name: getattr(event, name) for name in PERSONAL_FIELDS}


def _hash_leaf(leaf: Mapping[str, Any]) -> bytes:
    return merkle.leaf_hash(merkle.canonical_json(leaf))


# --- the signing key --------------------------------------------------------------------------


@dataclass(frozen=True)
class SigningKey:
    """The Ed25519 key that signs checkpoints, its public half (SubjectPublicKeyInfo PEM) and its
    id: the hex SHA-256 of that PEM, stored on each checkpoint."""

    private_key: Any
    public_key_pem: str
    key_id: str


def signing_key() -> SigningKey:
    """The checkpoint key: ``STEWARD_AUDIT_SIGNING_KEY`` (an unencrypted PKCS#8 PEM) when set,
    else the file ``STEWARD_AUDIT_SIGNING_KEY_FILE``, generated with mode 0600 on first use.

    Raises ValueError when the PEM is not an Ed25519 private key, OSError when the file cannot
    be read or created.
    """
    return _load_signing_key(_signing_key_pem())


def _signing_key_pem() -> str:
    pem = settings.STEWARD_AUDIT_SIGNING_KEY or _key_file_pem(Path(settings.STEWARD_AUDIT_SIGNING_KEY_FILE))
    return pem.strip() + "\n"


@functools.lru_cache(maxsize=8)
def _load_signing_key(pem: str) -> SigningKey:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    private_key = load_pem_private_key(pem.encode("ascii"), password=None)
    if not isinstance(private_key, Ed25519PrivateKey):
        raise ValueError("the audit signing key must be an Ed25519 private key")
    public_pem = merkle.export_public_key_pem(private_key).decode("ascii")
    return SigningKey(private_key, public_pem, merkle.public_key_id(public_pem))


def _key_file_pem(path: Path) -> str:
    if not path.exists():
        _create_key_file(path)
    return _read_key_file(path, path.stat().st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _read_key_file(path: Path, modified_ns: int) -> str:
    # Every event's tag needs the key (the sequencer checks one per row): read the file once per
    # version of it, not once per event; a replaced file has a new mtime and is read again.
    return path.read_text()


def _create_key_file(path: Path) -> None:
    """Write a new key beside ``path`` with mode 0600, then link it into place: of several
    processes starting at once exactly one key wins, and nobody reads a half-written file."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

    pem = Ed25519PrivateKey.generate().private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.{secrets.token_hex(6)}")
    descriptor = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(pem)
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(staging, path)
    finally:
        staging.unlink(missing_ok=True)


# --- event tags: only events Steward wrote get leaves ----------------------------------------


@functools.lru_cache(maxsize=8)
def _tag_key(pem: str) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

    raw = _load_signing_key(pem).private_key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"steward audit event tag").derive(raw)


def event_tag(leaf_hash: bytes) -> str:
    """An event's tag: hex HMAC-SHA256 of the hash of the leaf it will get (``leaf_for``: its
    id, every field, and through the salted commitment its personal details), keyed by
    HKDF-SHA256 (RFC 5869, info "steward audit event tag") of the raw Ed25519 signing key.

    ``record_audit_event`` computes it from the row as the database stored it and writes it
    beside the salt; the sequencer recomputes the leaf and refuses an event whose tag differs,
    so a row inserted, copied or altered in the database before it was sequenced never gets a
    leaf. Only a holder of the signing key can tag, as only they can sign a checkpoint.
    Rotating the key invalidates the tags of events not yet sequenced: run the sequencer first.
    Raises as ``signing_key`` does.
    """
    return hmac.new(_tag_key(_signing_key_pem()), leaf_hash, hashlib.sha256).hexdigest()


def stored_row_tag(stored: Mapping[str, Any], salt: bytes) -> str:
    """``event_tag`` of an event given as the database returned it: a mapping with the
    ``_EVENT_COLUMNS`` names, the timestamp as ``iso_timestamp`` text and before/after as the
    database's JSON text (or None). Raises ValueError if it cannot be hashed."""
    row = (None, None, *(stored[name] for name in _EVENT_COLUMNS))
    return event_tag(_row_leaf_hash(row, salt))


def tag_stored_event(event_id: int, salt: str) -> None:
    """Write the tag of event ``event_id`` beside its salt (hex), from the event as the
    database now holds it: read back through ``audit_verify``'s own query, so that JSON and
    timestamps are hashed exactly as the sequencer and ``audit_verify`` will see them. Raises
    ValueError if the stored event cannot be hashed."""
    (row,) = _event_rows(event_id, event_id + 1, sequenced=False)
    tag = event_tag(_row_leaf_hash(row, bytes.fromhex(salt)))
    AuditPersonalData.objects.filter(event_id=event_id).update(salt=salt, tag=tag)


def _tag_problem(row: Mapping[str, Any], digest: bytes | None) -> str | None:
    """Why the sequencer must refuse this row (``personal_data__salt`` / ``__tag`` joined; its
    leaf hash ``digest``, None when it has no salt), or None."""
    if row["personal_data__salt"] is None or not row["personal_data__tag"]:
        return "no tag: not written by Steward"
    tag = str(row["personal_data__tag"]).encode("utf-8", "replace")
    if digest is None or not hmac.compare_digest(tag, event_tag(digest).encode("ascii")):
        return "wrong tag: inserted or altered in the database"
    return None


def _sequencer_leaf(row: Mapping[str, Any]) -> dict[str, Any] | None:
    """``leaf_for`` of a sequencer row (``personal_data__salt`` joined), or None when it has no
    salt or holds values no event written by Steward holds."""
    salt = row["personal_data__salt"]
    try:
        return None if salt is None else leaf_for(row, bytes.fromhex(salt))
    except (TypeError, ValueError, AttributeError):
        return None


def _row_tag_problem(row: Mapping[str, Any]) -> str | None:
    leaf = _sequencer_leaf(row)
    return _tag_problem(row, None if leaf is None else _hash_leaf(leaf))


# --- checkpoints and stored nodes ------------------------------------------------------------


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


# --- the sequencer ----------------------------------------------------------------------------


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
        _take_sequencer_lock()
        frontier, _ = _restore_frontier()
        sequenced, after_id = 0, 0
        sequenced_at = timezone.now()
        while sequenced < max_events:
            # The first batch scans for every unsequenced event; later ones continue after it.
            rows = list(
                AuditEvent.objects.filter(leaf__isnull=True, id__gt=after_id)
                .order_by("id")
                .filter(rejection__isnull=True)
                .values(*LEAF_FIELDS, *PERSONAL_FIELDS, "personal_data__salt", "personal_data__tag")[
                    : min(batch_size, max_events - sequenced)
                ]
            )
            if not rows:
                break
            sequenced += _append(frontier, rows, sequenced_at)
            after_id = rows[-1]["id"]
        if not sequenced:
            return SequencerRun(0, frontier.size, None)
        checkpoint = _sign_checkpoint(frontier)
    return SequencerRun(sequenced, frontier.size, checkpoint)


def _take_sequencer_lock() -> None:
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
        leaf = _sequencer_leaf(row)
        digest = None if leaf is None else _hash_leaf(leaf)
        problem = _tag_problem(row, digest)
        if problem is not None:
            rejections.append(AuditRejection(event_id=row["id"], reason=problem, rejected_at=sequenced_at))
            logger.error("audit event %s refused by the sequencer: %s", row["id"], problem)
            continue
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


# --- one event's proof and its verification ---------------------------------------------------


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
        leaf_hash=_hash_leaf(leaf),
        proof=stored_inclusion_proof(leaf_row.leaf_index, checkpoint.tree_size),
        checkpoint=checkpoint,
        is_personal_data_erased=personal is None,
    )


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
    keys = _known_public_keys(public_keys)
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
    rows = pending.values(*LEAF_FIELDS, *PERSONAL_FIELDS, "personal_data__salt", "personal_data__tag")
    for row in rows.iterator(chunk_size=VERIFY_CHUNK):
        report.unsequenced_count += 1
        problem = _row_tag_problem(row)
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


_EVENT_COLUMNS = LEAF_FIELDS + PERSONAL_FIELDS
_LEAF_ROW = ("leaf__leaf_index", "leaf__personal_commitment", *_EVENT_COLUMNS)


# ``canonical_json(leaf_for(...))`` of an event row, spliced from per-field encodings instead of
# building, sorting and encoding two dicts per event: a third of audit_verify's time at a
# million events. Keys in code-point order; the strings are quoted by the function the
# canonical encoder itself uses, so the bytes are identical (tests compare both paths).
_PERSONAL_FORMAT = '{"actor_label":%s,"after":%s,"before":%s,"object_repr":%s,"on_behalf_of_label":%s}'
_LEAF_FORMAT = (
    '{"action":%s,"actor_id":%s,"id":%d,"object_id":%s,"object_type":%s,"on_behalf_of_id":%s,'
    '"personal_commitment":%s,"request_id":%s,"task_id":%s,"team_id":%s,"timestamp":"%s"}'
)
_encode_str = json.encoder.encode_basestring
# The database's own JSON output: one value without surrounding whitespace, which raw_decode
# reads at half the cost of json.loads (``_json_value`` still refuses anything after it).
_decode_json = json.JSONDecoder().raw_decode


def _leaf_hash_of_row(row: Sequence[Any], salt: bytes | None) -> bytes:
    """The leaf hash of one ``_hash_event_range`` row: ``(leaf index, stored commitment,
    *_EVENT_COLUMNS)`` with before/after as JSON text. Equal to
    ``_hash_leaf(leaf_for(...))``; raises TypeError on a value the splice does not expect (the
    caller then takes that general path) and ValueError as ``leaf_for`` does."""
    (
        _,
        commitment,
        event_id,
        timestamp,
        action,
        object_type,
        object_id,
        team_id,
        actor_id,
        on_behalf_of_id,
        request_id,
        task_id,
        actor_label,
        on_behalf_of_label,
        object_repr,
        before,
        after,
    ) = row
    if salt is not None:
        personal = _PERSONAL_FORMAT % (
            _encode_str(actor_label),
            "null" if after is None else merkle.canonical_json_text(_json_value(after)),
            "null" if before is None else merkle.canonical_json_text(_json_value(before)),
            _encode_str(object_repr),
            _encode_str(on_behalf_of_label),
        )
        commitment = merkle.personal_commitment_of_json(personal.encode("utf-8"), salt)
    elif commitment is None:
        raise ValueError(f"event {event_id} has no salt: its stored personal commitment is needed")
    if type(event_id) is not int:
        raise TypeError(f"event id {event_id!r} is not an integer")
    text = _LEAF_FORMAT % (
        _encode_str(action),
        "null" if actor_id is None else _int(actor_id),
        event_id,
        _encode_str(object_id),
        _encode_str(object_type),
        "null" if on_behalf_of_id is None else _int(on_behalf_of_id),
        _encode_str(commitment),
        _encode_str(request_id),
        _encode_str(task_id),
        "null" if team_id is None else _int(team_id),
        iso_timestamp(timestamp),
    )
    return merkle.leaf_hash(text.encode("utf-8"))


def _json_value(text: str) -> Any:
    value, end = _decode_json(text)
    if end != len(text):
        raise ValueError(f"extra data after the JSON value at character {end}")
    return value


def _int(value: Any) -> int:
    if type(value) is not int:
        raise TypeError(f"{value!r} is not an integer")
    return value


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
    for row in _event_rows(low, high).iterator(chunk_size=chunk_size):
        event_id = row[2]
        salt_hex = salts.get(event_id)
        try:
            # Only a missing salt row means erased details; an empty or short salt is refused.
            digest = _row_leaf_hash(row, None if salt_hex is None else bytes.fromhex(salt_hex))
        except (TypeError, ValueError, AttributeError):
            # A salt, JSON text or column altered in the database to something no event holds:
            # no leaf hash can match, so the comparison names this leaf.
            digest = UNHASHABLE
        hashed.append((row[0], digest, event_id, _salt_status(row) if salt_hex is None else ""))
    return hashed


def _salt_status(row: Sequence[Any]) -> str:
    """For an event without a salt: "erased" when its details show the erasure's mark, else
    "salt missing" (its salt row was removed in the database, not by an erasure)."""
    personal = row[-5:]
    marked = any(isinstance(value, str) and ERASED in value for value in personal)
    return "erased" if marked else "salt missing"


def _event_rows(low: int, high: int, *, sequenced: bool = True) -> models.QuerySet:
    """Events with ``low <= id < high`` (only those with a leaf when ``sequenced``) as
    ``(leaf index, stored commitment, *_EVENT_COLUMNS)`` tuples, before/after as JSON text."""
    events = AuditEvent.objects.filter(id__gte=low, id__lt=high).order_by()
    if sequenced:
        # The range on the leaf's own event_id column lets its index scan start at ``low`` too.
        events = events.filter(leaf__event_id__gte=low, leaf__event_id__lt=high)
    # JSON as text, decoded here: cheaper than the ORM's per-row converters at a million rows.
    events = events.annotate(before_text=Cast("before", TextField()), after_text=Cast("after", TextField()))
    columns = [*_LEAF_ROW[:-2], "before_text", "after_text"]
    if transaction.get_connection().vendor == "postgresql":
        events = events.annotate(timestamp_iso=IsoTimestamp("timestamp"))
        columns[columns.index("timestamp")] = "timestamp_iso"
    return events.values_list(*columns)


UNHASHABLE = bytes(merkle.HASH_SIZE)


def _row_leaf_hash(row: Sequence[Any], salt: bytes | None) -> bytes:
    try:
        return _leaf_hash_of_row(row, salt)
    except TypeError:
        event = dict(zip(_EVENT_COLUMNS, row[2:], strict=True))
        event["before"] = None if row[-2] is None else json.loads(row[-2])
        event["after"] = None if row[-1] is None else json.loads(row[-1])
        return _hash_leaf(leaf_for(event, salt, commitment=row[1]))


def _known_public_keys(extra: Iterable[str]) -> dict[str, str]:
    key = signing_key()
    keys = {key.key_id: key.public_key_pem}
    for pem in extra:
        pem = pem.strip() + "\n"
        merkle.verify_checkpoint(pem, b"", bytes(64))  # ValueError unless an Ed25519 public key
        keys[merkle.public_key_id(pem)] = pem
    return keys


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


# --- erasing a person's details ------------------------------------------------------------------


def may_audit(user: AbstractBaseUser | AnonymousUser) -> bool:
    """Whether ``user`` may read the tree itself (proofs, checkpoints, bundles): platform admins
    and compliance officers. Tree sizes and leaf indexes count every team's events, so team
    members see their events but not the tree."""
    return bool(platform_roles(user) & {"admin", "compliance_officer"})


def do_erase_personal_data(user: AbstractBaseUser, *, actor: AbstractBaseUser) -> int:
    """Erase ``user``'s personal details from the audit log without breaking it (issue 3).

    Under the sequencer's lock: every event naming ``user`` (as actor, on behalf of, as the
    object, or by username or e-mail in its description or before/after values) has those
    labels and strings replaced by "[erased]"; a sequenced event also loses its salt, so its
    leaf keeps the stored commitment and stays provable, and ``audit_verify`` counts it as
    erased. An event not sequenced yet keeps its salt, is tagged again as redacted and later
    committed to as redacted.
    On PostgreSQL the UPDATEs pass the append-only trigger through the transaction-local
    ``steward.audit_erasure`` setting, which allows changes to the personal columns only.
    Records a ``user.erase_personal_data`` event. Platform admins only: raises PermissionDenied.
    Returns the number of events changed.
    """
    with transaction.atomic():
        if "admin" not in platform_roles(actor, fresh=True):
            raise PermissionDenied("only a platform admin may erase personal data")
        _take_sequencer_lock()
        changed, sequenced = [], []
        with _erasure_allowed():
            for event in _events_naming(user):
                changes = _redactions(event, user)
                if not changes:
                    continue
                # The one sanctioned UPDATE of audit events; AuditEventQuerySet.update refuses.
                models.QuerySet.update(AuditEvent.objects.filter(pk=event.pk), **changes)
                changed.append(event.pk)
                if event.is_sequenced:
                    sequenced.append(event.pk)
        AuditPersonalData.objects.filter(event_id__in=sequenced).delete()
        # The others are not sequenced yet: their tags must vouch for the redacted rows.
        pending = AuditPersonalData.objects.filter(event_id__in=set(changed) - set(sequenced))
        for event_id, salt in pending.values_list("event_id", "salt"):
            tag_stored_event(event_id, salt)
        record_audit_event(
            actor=actor,
            action="user.erase_personal_data",
            object_type="user",
            object_id=user.pk,
            object_repr=f"user #{user.pk}",
            after={"events": len(changed), "sequenced_events": len(sequenced)},
        )
    return len(changed)


@contextlib.contextmanager
def _erasure_allowed() -> Iterator[None]:
    """Open the trigger's erasure door for the statements inside, and close it again after."""
    connection = transaction.get_connection()
    if connection.vendor != "postgresql":
        yield
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config('steward.audit_erasure', 'on', true)")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT set_config('steward.audit_erasure', 'off', true)")


def _events_naming(user: AbstractBaseUser) -> list[AuditEvent]:
    needles = [user.get_username(), *([user.email] if getattr(user, "email", "") else [])]
    mentions = Q()
    for needle in needles:
        mentions |= (
            Q(actor_label=needle)
            | Q(on_behalf_of_label=needle)
            | Q(object_repr__contains=needle)
            | Q(before_text__contains=needle)
            | Q(after_text__contains=needle)
        )
    # Read them all before the first UPDATE rather than update under an open cursor.
    return list(
        AuditEvent.objects.annotate(
            before_text=Cast("before", TextField()),
            after_text=Cast("after", TextField()),
            is_sequenced=Exists(AuditLeaf.objects.filter(event_id=OuterRef("pk"))),
        )
        .filter(
            Q(actor_id=user.pk)
            | Q(on_behalf_of_id=user.pk)
            | Q(object_type="user", object_id=str(user.pk))
            | mentions
        )
        .order_by("id")
    )


def _redactions(event: AuditEvent, user: AbstractBaseUser) -> dict[str, Any]:
    """The personal columns of ``event`` to rewrite, with their redacted values."""
    pattern = _mention_pattern(user)
    changes: dict[str, Any] = {}
    if event.actor_id == user.pk or event.actor_label == user.get_username():
        changes["actor_label"] = ERASED
    if event.on_behalf_of_id == user.pk or event.on_behalf_of_label == user.get_username():
        changes["on_behalf_of_label"] = ERASED
    for name in ("object_repr", "before", "after"):
        value = _redact(getattr(event, name), pattern)
        if value != getattr(event, name):
            changes[name] = value
    return {name: value for name, value in changes.items() if getattr(event, name) != value}


def _mention_pattern(user: AbstractBaseUser) -> re.Pattern[str]:
    """The username or e-mail as a whole token: "dana" matches "dana in Mobility", not "danae"."""
    needles = sorted({user.get_username(), getattr(user, "email", "") or user.get_username()}, key=len)
    alternatives = "|".join(re.escape(needle) for needle in reversed(needles))
    return re.compile(rf"(?<![\w.@+-])(?:{alternatives})(?![\w@+-]|\.\w)")


# Keys whose values are the platform's vocabulary (role, alias, state names...), never a person:
# erasing a user called "viewer" or "production" must not rewrite what was granted or moved.
VOCABULARY_KEYS = frozenset(
    {"action", "alias", "kind", "role", "roles", "severity", "stage", "state", "status", "team"}
)


def _redact(value: Any, pattern: re.Pattern[str]) -> Any:
    if isinstance(value, str):
        return pattern.sub(ERASED, value)
    if isinstance(value, list):
        return [_redact(item, pattern) for item in value]
    if isinstance(value, dict):
        return {
            key: item if key in VOCABULARY_KEYS else _redact(item, pattern) for key, item in value.items()
        }
    return value
