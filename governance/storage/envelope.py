"""Envelope encryption of stored artifacts (issue 12): plain Python, no Django.

Each artifact gets a fresh 256-bit data key. Its bytes are encrypted with AES-256-GCM in chunks
(``CHUNK_BYTES`` of plaintext each), so a 10 GB file streams through a fixed buffer. The chunk
nonces follow the STREAM construction (Hoang, Reyhanitabar, Rogaway and Vizár, "Online
authenticated-encryption and its nonce-reuse misuse-resistance", CRYPTO 2015): an 11-byte chunk
counter and a last-chunk flag, so reordering, dropping or truncating chunks fails authentication,
and a key used once needs no random nonce. Every chunk's associated data is the artifact's
storage key and sha256 (``associated_data``): a file swapped with another artifact's fails to
decrypt, because its data key and binding differ.

The data key is wrapped (AES-256-GCM, random nonce) by a key-encryption key of a ``Keyring``,
with the same binding plus the KEK's id as associated data. The wrapped key is kept beside the
artifact's record (``governance.models.StoredObject``), not in the object: rotating the KEK
re-wraps data keys without touching the data, and destroying the wrapped key (crypto-shredding)
makes every copy of the ciphertext unreadable.

Object layout: ``MAGIC`` (8 bytes), plaintext chunk size (4 bytes, big-endian), then each chunk's
ciphertext and 16-byte tag. An empty plaintext is one empty final chunk (its tag alone).
"""

from __future__ import annotations

import base64
import binascii
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

MAGIC = b"STWENC01"
CHUNK_BYTES = 1024 * 1024
TAG_BYTES = 16
KEY_BYTES = 32
_HEADER = struct.Struct(">8sI")


class EnvelopeError(Exception):
    """A ciphertext or wrapped key that does not authenticate, or a malformed object."""


class KeyringError(ValueError):
    """A keyring that cannot be read: the message names the entry and what is wrong."""


class KeyServiceError(Exception):
    """The key service (Vault) did not answer or refused: the message says which and why."""


@dataclass(frozen=True)
class Keyring:
    """Key-encryption keys by id; ``active`` wraps new data keys, the others only unwrap (kept
    until a rotation has re-wrapped every data key they wrapped)."""

    active: str
    keys: dict[str, bytes]

    @classmethod
    def parse(cls, text: str) -> Keyring:
        """A keyring from ``"id:base64key[,id:base64key...]"`` (whitespace or commas between
        entries); the first entry is active. Each key is 32 bytes (AES-256). KeyringError naming
        the bad entry otherwise."""
        keys: dict[str, bytes] = {}
        for number, entry in enumerate(text.replace(",", " ").split(), start=1):
            key_id, sep, encoded = entry.partition(":")
            if not sep or not key_id or not key_id.replace("-", "").replace("_", "").isalnum():
                # Named by position only: the entry's text may be key material (an id forgotten,
                # a key pasted alone), and this message reaches logs and error answers.
                raise KeyringError(f"entry {number} is not id:base64key (id of letters, digits, - or _)")
            if key_id in keys:
                raise KeyringError(f"key id {key_id!r} appears twice")
            try:
                raw = base64.b64decode(encoded, validate=True)
            except binascii.Error as exc:
                raise KeyringError(f"key {key_id!r} is not base64: {exc}") from None
            if len(raw) != KEY_BYTES:
                raise KeyringError(f"key {key_id!r} is {len(raw)} bytes; a key-encryption key is {KEY_BYTES}")
            keys[key_id] = raw
        if not keys:
            raise KeyringError("the keyring holds no key")
        return cls(active=next(iter(keys)), keys=keys)

    def wrap(self, data_key: bytes, binding: bytes) -> tuple[str, bytes]:
        """``(kek id, wrapped data key)`` under the active KEK (``wrap``)."""
        return wrap(self, data_key, binding)

    def unwrap(self, kek_id: str, wrapped: bytes, binding: bytes) -> bytes:
        """The data key (``unwrap``)."""
        return unwrap(self, kek_id, wrapped, binding)

    def needs_rewrap(self, kek_id: str, wrapped: bytes) -> bool:
        """Whether a data key wrapped by ``kek_id`` should move to the active KEK."""
        return kek_id != self.active

    def rewrap(self, kek_id: str, wrapped: bytes, binding: bytes) -> tuple[str, bytes]:
        """The data key wrapped again under the active KEK."""
        return self.wrap(self.unwrap(kek_id, wrapped, binding), binding)

    @staticmethod
    def new_entry(key_id: str) -> str:
        """A fresh ``id:base64key`` entry (32 random bytes) for a keyring file."""
        return f"{key_id}:{base64.b64encode(os.urandom(KEY_BYTES)).decode()}"


def associated_data(storage_key: str, sha256: str) -> bytes:
    """What every chunk of an artifact is bound to: its storage key and its content's sha256."""
    return b"steward-artifact\0" + storage_key.encode() + b"\0" + sha256.encode()


def new_data_key() -> bytes:
    """A fresh 256-bit data key (one per artifact)."""
    return AESGCM.generate_key(bit_length=256)


def wrap(keyring: Keyring, data_key: bytes, binding: bytes) -> tuple[str, bytes]:
    """``(kek id, nonce + ciphertext)`` of ``data_key`` under the active KEK, bound to ``binding``
    and the KEK's id."""
    nonce = os.urandom(12)
    aad = binding + b"\0" + keyring.active.encode()
    return keyring.active, nonce + AESGCM(keyring.keys[keyring.active]).encrypt(nonce, data_key, aad)


def unwrap(keyring: Keyring, kek_id: str, wrapped: bytes, binding: bytes) -> bytes:
    """The data key ``wrap`` wrapped. KeyringError when the keyring lacks ``kek_id``;
    EnvelopeError when the wrapped key does not authenticate (edited, or bound elsewhere)."""
    if kek_id not in keyring.keys:
        raise KeyringError(f"the keyring has no key {kek_id!r}, which wrapped this artifact's data key")
    aad = binding + b"\0" + kek_id.encode()
    try:
        return AESGCM(keyring.keys[kek_id]).decrypt(wrapped[:12], wrapped[12:], aad)
    except InvalidTag:
        raise EnvelopeError("its wrapped data key does not authenticate") from None


def _nonce(index: int, last: bool) -> bytes:
    return index.to_bytes(11, "big") + (b"\x01" if last else b"\x00")


def encrypt_stream(
    source: BinaryIO, target: BinaryIO, data_key: bytes, aad: bytes, chunk_bytes: int = CHUNK_BYTES
) -> int:
    """Encrypt ``source`` into ``target`` chunk by chunk; returns the plaintext's size in bytes."""
    cipher = AESGCM(data_key)
    target.write(_HEADER.pack(MAGIC, chunk_bytes))
    index, size = 0, 0
    chunk = source.read(chunk_bytes)
    while True:
        following = source.read(chunk_bytes) if len(chunk) == chunk_bytes else b""
        last = not following
        target.write(cipher.encrypt(_nonce(index, last), chunk, aad))
        size += len(chunk)
        if last:
            return size
        chunk, index = following, index + 1


def decrypt_stream(
    source: BinaryIO,
    target: BinaryIO,
    data_key: bytes,
    aad: bytes,
    on_chunk: Callable[[bytes], None] | None = None,
) -> int:
    """Decrypt what ``encrypt_stream`` wrote from ``source`` into ``target``; ``on_chunk`` sees
    each plaintext chunk (to hash it). Returns the plaintext's size. EnvelopeError naming the
    chunk that fails: a flipped byte, a chunk from elsewhere, a truncated or extended object."""
    header = source.read(_HEADER.size)
    if len(header) != _HEADER.size:
        raise EnvelopeError("it is shorter than its header (truncated)")
    magic, chunk_bytes = _HEADER.unpack(header)
    # The header is not authenticated: a chunk size above what Steward writes is refused before
    # a buffer of that size is read (a crafted 64 MiB one cost that much memory per read).
    if magic != MAGIC or not 0 < chunk_bytes <= CHUNK_BYTES:
        raise EnvelopeError("it is not an encrypted Steward artifact (bad header)")
    cipher = AESGCM(data_key)
    record_bytes = chunk_bytes + TAG_BYTES
    index, size = 0, 0
    record = _read_full(source, record_bytes)
    while True:
        following = _read_full(source, record_bytes) if len(record) == record_bytes else b""
        last = not following
        if len(record) < TAG_BYTES:
            raise EnvelopeError(f"chunk {index} is cut short (truncated)")
        try:
            plain = cipher.decrypt(_nonce(index, last), record, aad)
        except InvalidTag:
            where = (
                "the object ends early (truncated)"
                if last and len(record) == record_bytes
                else "it was altered"
            )
            raise EnvelopeError(
                f"chunk {index} does not authenticate: {where}, or it belongs to another artifact"
            ) from None
        target.write(plain)
        if on_chunk is not None:
            on_chunk(plain)
        size += len(plain)
        if last:
            return size
        record, index = following, index + 1


def _read_full(source: BinaryIO, count: int) -> bytes:
    """``count`` bytes, or fewer only at the end (a network stream may return short reads)."""
    parts, got = [], 0
    while got < count:
        part = source.read(count - got)
        if not part:
            break
        parts.append(part)
        got += len(part)
    return b"".join(parts)
