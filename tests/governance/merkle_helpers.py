"""Shared by the Merkle tests: a naive RFC 6962 tree, written straight from the section 2.1
recursions, to check ``governance.merkle`` against; leaf hashes to build trees from; the verifier's
source file and a checkpoint time."""

from __future__ import annotations

import hashlib
from pathlib import Path

from governance import merkle

MERKLE_SOURCE = Path(merkle.__file__)
TIMESTAMP = "2026-03-01T12:00:00Z"


def naive_mth(hashes: list[bytes]) -> bytes:
    if not hashes:
        return hashlib.sha256(b"").digest()
    if len(hashes) == 1:
        return hashes[0]
    k = 1
    while k * 2 < len(hashes):
        k *= 2
    return hashlib.sha256(b"\x01" + naive_mth(hashes[:k]) + naive_mth(hashes[k:])).digest()


def naive_path(m: int, hashes: list[bytes]) -> list[bytes]:
    if len(hashes) == 1:
        return []
    k = 1
    while k * 2 < len(hashes):
        k *= 2
    if m < k:
        return [*naive_path(m, hashes[:k]), naive_mth(hashes[k:])]
    return [*naive_path(m - k, hashes[k:]), naive_mth(hashes[:k])]


def naive_subproof(m: int, hashes: list[bytes], whole_old_tree: bool) -> list[bytes]:
    n = len(hashes)
    if m == n:
        return [] if whole_old_tree else [naive_mth(hashes)]
    k = 1
    while k * 2 < n:
        k *= 2
    if m <= k:
        return [*naive_subproof(m, hashes[:k], whole_old_tree), naive_mth(hashes[k:])]
    return [*naive_subproof(m - k, hashes[k:], False), naive_mth(hashes[:k])]


def naive_consistency(m: int, hashes: list[bytes]) -> list[bytes]:
    return naive_subproof(m, hashes, True)


def flipped(data: bytes, position: int) -> bytes:
    return data[:position] + bytes([data[position] ^ 0x01]) + data[position + 1 :]


def leaf_hashes(count: int, tag: str = "event") -> list[bytes]:
    return [merkle.leaf_hash(merkle.canonical_json({"n": i, "tag": tag})) for i in range(count)]
