"""The checkpoint signing key (environment or file), the HKDF key that tags events, and the
checks of a tag: only events Steward wrote get leaves (issue 3)."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import hmac
import os
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings

from governance import merkle
from governance.audit.leaf import EVENT_COLUMNS, event_rows, hash_leaf, leaf_for, row_leaf_hash, row_of
from governance.models import AuditPersonalData

# What the sequencer (and audit_verify, for events still waiting) reads of an event to check
# its tag: the event's columns and its salt and tag.
TAGGED_COLUMNS = (*EVENT_COLUMNS, "personal_data__salt", "personal_data__tag")
WRONG_TAG = "wrong tag: inserted or altered in the database"


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


def known_public_keys(extra: Iterable[str]) -> dict[str, str]:
    """``{key_id: PEM}`` of this server's key and the earlier public keys ``extra`` (PEMs).
    Raises ValueError for one that is not an Ed25519 public key."""
    key = signing_key()
    keys = {key.key_id: key.public_key_pem}
    for pem in extra:
        pem = pem.strip() + "\n"
        merkle.verify_checkpoint(pem, b"", bytes(64))  # ValueError unless an Ed25519 public key
        keys[merkle.public_key_id(pem)] = pem
    return keys


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
    ``EVENT_COLUMNS`` names, the timestamp as ``iso_timestamp`` text and before/after as the
    database's JSON text (or None). Raises ValueError if it cannot be hashed."""
    return event_tag(row_leaf_hash(row_of(stored), salt))


def tag_stored_event(event_id: int, salt: str) -> None:
    """Write the tag of event ``event_id`` beside its salt (hex), from the event as the
    database now holds it: read back through ``audit_verify``'s own query, so that JSON and
    timestamps are hashed exactly as the sequencer and ``audit_verify`` will see them. Raises
    ValueError if the stored event cannot be hashed."""
    (row,) = event_rows(event_id, event_id + 1, sequenced=False)
    tag = event_tag(row_leaf_hash(row, bytes.fromhex(salt)))
    AuditPersonalData.objects.filter(event_id=event_id).update(salt=salt, tag=tag)


def checked_row_leaf(row: Mapping[str, Any]) -> tuple[dict[str, Any], bytes] | str:
    """The leaf (``leaf_for``) of a ``TAGGED_COLUMNS`` row and its hash when the row's tag
    vouches for it, else why the sequencer must refuse the row."""
    salt, tag = row["personal_data__salt"], row["personal_data__tag"]
    if salt is None or not tag:
        return "no tag: not written by Steward"
    try:
        leaf = leaf_for(row, bytes.fromhex(salt))
    except (TypeError, ValueError, AttributeError):
        # Values no event written by Steward holds: no tag can vouch for them.
        return WRONG_TAG
    digest = hash_leaf(leaf)
    if not hmac.compare_digest(str(tag).encode("utf-8", "replace"), event_tag(digest).encode("ascii")):
        return WRONG_TAG
    return leaf, digest


def row_tag_problem(row: Mapping[str, Any]) -> str | None:
    """Why the sequencer refuses (or would refuse) a ``TAGGED_COLUMNS`` row, or None."""
    checked = checked_row_leaf(row)
    return checked if isinstance(checked, str) else None
