#!/usr/bin/env python3
"""Merkle tree of Steward's audit log (RFC 6962 / RFC 9162), and the auditors' offline verifier.

This one file is both the app's tree engine and the script that outside auditors run offline, so
it uses the standard library only; Ed25519 signing and verification import ``cryptography``
lazily, inside the functions that need it. Python 3.10 or later.

    python merkle.py verify BUNDLE.json      (an audit bundle, or a model version's evidence pack)

Hashes (RFC 9162 section 2.1.1; identical to RFC 6962 section 2.1)::

    leaf hash   = SHA-256(0x00 || leaf bytes)          leaf bytes = canonical_json(leaf object)
    node hash   = SHA-256(0x01 || left || right)
    MTH({})     = SHA-256("")
    MTH(D[n])   = node hash(MTH(D[0:k]), MTH(D[k:n])),  k = the largest power of two smaller than n

Node coordinates. The node ``(level, index)`` is the root of the *complete* subtree over leaves
``[index * 2**level, (index + 1) * 2**level)``; level 0 holds the leaf hashes. Such nodes never
change once their last leaf is appended, so they can be cached for good. Every subtree the RFC
recursion touches is the right-to-left fold of at most log2(n) of them (``subtree_nodes``), so
proofs are planned as lists of node coordinates (``inclusion_plan``, ``consistency_plan``) and
then filled from whatever holds the nodes:

* ``MerkleTree`` keeps every complete node in memory (about 2n hashes);
* the app's sequencer appends through ``CompactRange.append``, which returns each node it
  completes, and stores them in a table; a proof then needs O(log n) node reads
  (``plan_nodes`` lists them for a single query) and at most about 2 * log2(n) hashes;
* ``inclusion_proof`` / ``consistency_proof`` take a bare list of leaf hashes and rehash the
  subtrees they need, O(n): fine for small trees and tests, not for serving proofs at 1M leaves.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import hmac
import json
import secrets
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()
PERSONAL_COMMITMENT_KEY = "personal_commitment"
SALT_SIZE = 32

NodeId = tuple[int, int]
"""``(level, index)`` of a complete subtree; see the module docstring."""

NodeGetter = Callable[[int, int], bytes]
"""``get_node(level, index) -> 32-byte hash`` of a complete subtree."""

_sha256 = hashlib.sha256

# Configured once: json.dumps() would build a new encoder object on every call.
_CANONICAL_ENCODER = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, sort_keys=True, separators=(",", ":")
)


# --- hashing (RFC 9162 section 2.1.1) -------------------------------------------------------


def leaf_hash(data: bytes) -> bytes:
    """``SHA-256(0x00 || data)``: the hash of one leaf (RFC 9162 section 2.1.1)."""
    return _sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """``SHA-256(0x01 || left || right)``: an interior node (RFC 9162 section 2.1.1)."""
    return _sha256(b"\x01" + left + right).digest()


def canonical_json(obj: Any) -> bytes:
    """The one byte string a leaf object hashes as: sorted keys, no whitespace, UTF-8.

    ``json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
    allow_nan=False)`` encoded as UTF-8. Non-ASCII text is written as itself, not ``\\u``
    escapes; keys sort by code point. Leaf objects must be JSON-native (dict with str keys, list,
    str, int, bool, None): json would turn an int key into a string and a tuple into a list, so
    such objects would not survive the round trip through a bundle. Floats are written in
    Python's shortest round-trip form, which other languages do not always share; store
    decimals and times as strings. This is close to, but not, RFC 8785 (JCS).

    Raises ValueError for NaN or infinities and for unpaired surrogates in strings, and
    TypeError for values JSON cannot represent.
    """
    return _CANONICAL_ENCODER.encode(obj).encode("utf-8")


def _acyclic_canonical_encoder() -> Callable[[Any], str]:
    # JSONEncoder.encode builds a new C iterator on every call, most of the cost of encoding a
    # small object; build it once. Without the circular-reference check (markers None).
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return _CANONICAL_ENCODER.encode
    encoder = _CANONICAL_ENCODER
    iterate = make(
        None,
        encoder.default,
        json.encoder.encode_basestring,
        None,
        encoder.key_separator,
        encoder.item_separator,
        True,
        False,
        False,
    )
    return lambda obj: "".join(iterate(obj, 0))


_encode_acyclic = _acyclic_canonical_encoder()


def canonical_json_text(obj: Any) -> str:
    """``canonical_json(obj)`` before its UTF-8 encoding, for callers that splice canonical
    parts into a larger canonical document, many times (``audit_verify``). ``obj`` must hold no
    reference cycle, as anything fresh from ``json.loads`` does: the check is skipped (a cycle
    raises RecursionError). Raises as ``canonical_json`` does otherwise, except that an unpaired
    surrogate only fails when the whole text is encoded."""
    return _encode_acyclic(obj)


def _split(size: int) -> int:
    """The largest power of two smaller than ``size`` (``size >= 2``), RFC 9162 section 2.1.1."""
    return 1 << ((size - 1).bit_length() - 1)


def _is_hash(value: object) -> bool:
    return isinstance(value, bytes) and len(value) == HASH_SIZE


def _check_hashes(hashes: Sequence[bytes]) -> None:
    if hashes and set(map(len, hashes)) != {HASH_SIZE}:
        raise ValueError(f"every hash must be {HASH_SIZE} bytes")


def _pair_up(level: Sequence[bytes]) -> list[bytes]:
    """Parents of adjacent pairs ``(0, 1), (2, 3), ...``; an odd last node is left out."""
    sha = _sha256
    return [
        sha(b"\x01" + left + right).digest() for left, right in zip(level[0::2], level[1::2], strict=False)
    ]


def _fold(hashes: Sequence[bytes]) -> bytes:
    """``node(h0, node(h1, ... node(h[-2], h[-1])))``: the root over adjacent subtrees whose sizes
    are strictly decreasing powers of two (RFC 9162 section 2.1.1 applied repeatedly)."""
    result = hashes[-1]
    for left in reversed(hashes[:-1]):
        result = node_hash(left, result)
    return result


def _complete_root(hashes: Sequence[bytes]) -> bytes:
    """MTH of a power-of-two number of leaf or node hashes."""
    level = list(hashes)
    while len(level) > 1:
        level = _pair_up(level)
    return level[0]


def root(leaf_hashes: Sequence[bytes]) -> bytes:
    """The Merkle Tree Hash MTH(D[n]) of ``leaf_hashes`` (RFC 9162 section 2.1.1), any n >= 0.

    Computed bottom-up, carrying an odd last node up unchanged; that builds exactly the RFC's
    tree, because splitting at the largest power of two smaller than n keeps every left subtree
    complete. O(n) hashes. Raises ValueError if a hash is not 32 bytes.
    """
    _check_hashes(leaf_hashes)
    level = list(leaf_hashes)
    if not level:
        return EMPTY_ROOT
    while len(level) > 1:
        parents = _pair_up(level)
        if len(level) % 2:
            parents.append(level[-1])
        level = parents
    return level[0]


# --- planning proofs as node coordinates ----------------------------------------------------


def subtree_nodes(start: int, end: int) -> list[NodeId]:
    """Complete nodes, left to right, whose ``_fold`` is MTH(D[start:end]).

    D[start:end] splits into complete subtrees of strictly decreasing power-of-two sizes (the
    bits of ``end - start``, high to low). Every subtree met by the recursions of RFC 9162
    sections 2.1.3 and 2.1.4 starts at a multiple of its first piece's size, so each piece is a
    cached node. Raises ValueError for an empty range or one that is not such a subtree.
    """
    if not 0 <= start < end:
        raise ValueError(f"[{start}, {end}) is not a non-empty range of leaves")
    nodes: list[NodeId] = []
    offset, remaining = start, end - start
    while remaining:
        level = remaining.bit_length() - 1
        if offset % (1 << level):
            raise ValueError(f"[{start}, {end}) is not a subtree of an RFC 6962 tree")
        nodes.append((level, offset >> level))
        offset += 1 << level
        remaining -= 1 << level
    return nodes


def inclusion_plan(leaf_index: int, tree_size: int) -> list[list[NodeId]]:
    """The audit path PATH(m, D[n]) of RFC 6962 section 2.1.1 / RFC 9162 section 2.1.3.1, as
    node coordinates: one list per proof element, leaf level first.

    Fill it with ``proof_from_plan``. Raises ValueError unless ``0 <= leaf_index < tree_size``.
    """
    if not 0 <= leaf_index < tree_size:
        raise ValueError(f"leaf index {leaf_index} is outside a tree of size {tree_size}")
    plan: list[list[NodeId]] = []
    start, end = 0, tree_size
    while end - start > 1:
        mid = start + _split(end - start)
        if leaf_index < mid:
            plan.append(subtree_nodes(mid, end))
            end = mid
        else:
            plan.append(subtree_nodes(start, mid))
            start = mid
    plan.reverse()
    return plan


def consistency_plan(old_size: int, new_size: int) -> list[list[NodeId]]:
    """PROOF(m, D[n]) = SUBPROOF(m, D[n], true) of RFC 6962 section 2.1.2 / RFC 9162 section
    2.1.4.1, as node coordinates, one list per proof element, deepest first.

    The proof is empty when ``old_size`` is 0 or equals ``new_size``. The RFC's flag b ("is this
    subtree the whole old tree?") holds exactly while the subtree starts at leaf 0, and the old
    tree's boundary stays at leaf ``old_size`` as the recursion descends. Raises ValueError
    unless ``0 <= old_size <= new_size``.
    """
    if not 0 <= old_size <= new_size:
        raise ValueError(f"no consistency proof from size {old_size} to size {new_size}")
    if old_size in (0, new_size):
        return []
    plan: list[list[NodeId]] = []
    start, end = 0, new_size
    while end != old_size:
        mid = start + _split(end - start)
        if old_size <= mid:
            plan.append(subtree_nodes(mid, end))
            end = mid
        else:
            plan.append(subtree_nodes(start, mid))
            start = mid
    if start != 0:
        plan.append(subtree_nodes(start, end))
    plan.reverse()
    return plan


def plan_nodes(plan: Iterable[Iterable[NodeId]]) -> set[NodeId]:
    """Every node a plan reads, so that a database-backed store can fetch them in one query."""
    return {node for element in plan for node in element}


def proof_from_plan(plan: Iterable[Sequence[NodeId]], get_node: NodeGetter) -> list[bytes]:
    """The proof hashes for ``plan``, reading complete nodes through ``get_node(level, index)``."""
    return [_fold([get_node(level, index) for level, index in element]) for element in plan]


def _nodes_from_leaves(leaf_hashes: Sequence[bytes]) -> NodeGetter:
    def get_node(level: int, index: int) -> bytes:
        start = index << level
        piece = leaf_hashes[start : start + (1 << level)]
        if len(piece) != 1 << level:
            raise ValueError(f"node ({level}, {index}) lies beyond {len(leaf_hashes)} leaves")
        return _complete_root(piece)

    return get_node


def inclusion_proof(leaf_index: int, leaf_hashes: Sequence[bytes]) -> list[bytes]:
    """The inclusion proof of leaf ``leaf_index`` in the tree of all ``leaf_hashes``
    (RFC 9162 section 2.1.3.1), leaf level first.

    Rehashes the sibling subtrees from the leaves, O(n); use ``MerkleTree`` or stored nodes
    with ``inclusion_plan`` to serve proofs for large trees. Raises ValueError for an index
    outside the tree or a hash that is not 32 bytes.
    """
    _check_hashes(leaf_hashes)
    return proof_from_plan(inclusion_plan(leaf_index, len(leaf_hashes)), _nodes_from_leaves(leaf_hashes))


def consistency_proof(old_size: int, leaf_hashes: Sequence[bytes]) -> list[bytes]:
    """The proof that the tree of the first ``old_size`` leaves is a prefix of the tree of all
    ``leaf_hashes`` (RFC 9162 section 2.1.4.1). O(n), like ``inclusion_proof``.

    Raises ValueError unless ``0 <= old_size <= len(leaf_hashes)``.
    """
    _check_hashes(leaf_hashes)
    return proof_from_plan(consistency_plan(old_size, len(leaf_hashes)), _nodes_from_leaves(leaf_hashes))


# --- verifying proofs ---------------------------------------------------------------------


def verify_inclusion(
    leaf_index: int, tree_size: int, leaf_hash: bytes, proof: Sequence[bytes], root: bytes
) -> bool:
    """Whether ``proof`` shows the leaf with ``leaf_hash`` at ``leaf_index`` in the tree of
    ``tree_size`` leaves whose root is ``root``: the algorithm of RFC 9162 section 2.1.3.2.

    Never raises for malformed input; a proof with hashes that are not 32 bytes is invalid.
    """
    if not 0 <= leaf_index < tree_size:
        return False
    if not (_is_hash(leaf_hash) and _is_hash(root) and all(_is_hash(p) for p in proof)):
        return False
    fn, sn, result = leaf_index, tree_size - 1, leaf_hash
    for sibling in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            result = node_hash(sibling, result)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            result = node_hash(result, sibling)
        fn >>= 1
        sn >>= 1
    return sn == 0 and hmac.compare_digest(result, root)


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """Whether ``proof`` shows that the tree of ``old_size`` leaves with ``old_root`` is a
    prefix of the tree of ``new_size`` leaves with ``new_root``: RFC 9162 section 2.1.4.2.

    Equal sizes need an empty proof and equal roots. The empty tree (RFC 6962 allows m = 0)
    is a prefix of every tree: an empty proof and ``old_root`` equal to ``EMPTY_ROOT``. Never
    raises for malformed input.
    """
    if not 0 <= old_size <= new_size:
        return False
    if not (_is_hash(old_root) and _is_hash(new_root) and all(_is_hash(p) for p in proof)):
        return False
    if old_size == new_size:
        return not proof and hmac.compare_digest(old_root, new_root)
    if old_size == 0:
        return not proof and hmac.compare_digest(old_root, EMPTY_ROOT)
    path = list(proof)
    if not path:
        return False
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and hmac.compare_digest(fr, old_root) and hmac.compare_digest(sr, new_root)


# --- incremental and in-memory trees --------------------------------------------------------

CompletedNode = tuple[int, int, bytes]
"""``(level, index, hash)`` of a complete node, as ``CompactRange.append`` reports it."""


class CompactRange:
    """The right edge ("frontier") of a tree: one root per set bit of its size, O(log n) hashes.

    The peaks are the complete subtrees ``subtree_nodes(0, size)``, largest first; their fold is
    the tree's root. Appending a leaf merges equal-sized peaks, so the sequencer gets each new
    root in O(1) amortised hashes without rereading the log. Persist ``size`` and ``to_hex()``
    and rebuild with ``from_hex``; or rebuild from a node table, since the peaks are nodes.
    """

    __slots__ = ("_peaks", "_size")

    def __init__(self, size: int = 0, peaks: Sequence[bytes] = ()) -> None:
        """Raises ValueError unless there is one 32-byte peak per set bit of ``size``."""
        if size < 0 or len(peaks) != size.bit_count():
            raise ValueError(f"a tree of size {size} has {max(size, 0).bit_count()} peaks")
        _check_hashes(peaks)
        self._size = size
        self._peaks = list(peaks)

    @classmethod
    def from_hex(cls, size: int, peaks: Sequence[str]) -> CompactRange:
        """Restore a range saved with ``to_hex``; ValueError for bad hex or a wrong count."""
        return cls(size, [bytes.fromhex(peak) for peak in peaks])

    def to_hex(self) -> list[str]:
        """The peaks as lowercase hex strings, largest subtree first."""
        return [peak.hex() for peak in self._peaks]

    @property
    def size(self) -> int:
        return self._size

    @property
    def peaks(self) -> tuple[bytes, ...]:
        return tuple(self._peaks)

    def __len__(self) -> int:
        return self._size

    def root(self) -> bytes:
        """MTH of every leaf appended so far (EMPTY_ROOT for none); O(log n) hashes."""
        return _fold(self._peaks) if self._peaks else EMPTY_ROOT

    def append(self, leaf_hash: bytes) -> list[CompletedNode]:
        """Append one leaf hash; return every node it completes, the leaf ``(0, i, hash)`` first.

        Store them to serve proofs later (see the module docstring). Raises ValueError if the
        hash is not 32 bytes.
        """
        if not _is_hash(leaf_hash):
            raise ValueError(f"a leaf hash must be {HASH_SIZE} bytes")
        completed: list[CompletedNode] = []
        self._push(0, leaf_hash, completed)
        return completed

    def extend(self, leaf_hashes: Sequence[bytes]) -> None:
        """Append many leaf hashes, hashing whole aligned power-of-two blocks at once."""
        _check_hashes(leaf_hashes)
        done, total = 0, len(leaf_hashes)
        while done < total:
            level = (total - done).bit_length() - 1
            if self._size:
                # A block must start at a multiple of its own size to be a node of the tree.
                level = min(level, (self._size & -self._size).bit_length() - 1)
            block = 1 << level
            self._push(level, _complete_root(leaf_hashes[done : done + block]), None)
            done += block

    def _push(self, level: int, subtree: bytes, completed: list[CompletedNode] | None) -> None:
        """Append a complete subtree of ``2**level`` leaves; ``self._size`` is a multiple of it."""
        self._size += 1 << level
        index = (self._size >> level) - 1
        if completed is not None:
            completed.append((level, index, subtree))
        # A right child (odd index) completes its parent with the last peak as left sibling.
        while index & 1:
            subtree = node_hash(self._peaks.pop(), subtree)
            level += 1
            index >>= 1
            if completed is not None:
                completed.append((level, index, subtree))
        self._peaks.append(subtree)


class MerkleTree:
    """Every complete node of a tree held in memory: O(log n) proofs and roots of any prefix.

    ``levels[l][i]`` is node ``(l, i)``; level 0 holds the leaf hashes. About 2n hashes, so
    roughly 150 MB of Python objects at one million leaves. Building it costs n - 1 hashes;
    ``append`` costs O(1) amortised.
    """

    __slots__ = ("_levels",)

    def __init__(self, leaf_hashes: Iterable[bytes] = ()) -> None:
        """Raises ValueError if a hash is not 32 bytes."""
        leaves = list(leaf_hashes)
        _check_hashes(leaves)
        self._levels: list[list[bytes]] = [leaves]
        while len(self._levels[-1]) > 1:
            self._levels.append(_pair_up(self._levels[-1]))

    @property
    def size(self) -> int:
        return len(self._levels[0])

    def __len__(self) -> int:
        return len(self._levels[0])

    def append(self, leaf_hash: bytes) -> None:
        """Append one leaf hash; ValueError if it is not 32 bytes."""
        if not _is_hash(leaf_hash):
            raise ValueError(f"a leaf hash must be {HASH_SIZE} bytes")
        levels = self._levels
        levels[0].append(leaf_hash)
        level = 0
        while len(levels[level]) % 2 == 0:
            if level + 1 == len(levels):
                levels.append([])
            row = levels[level]
            levels[level + 1].append(node_hash(row[-2], row[-1]))
            level += 1

    def node(self, level: int, index: int) -> bytes:
        """Node ``(level, index)``; ValueError if that subtree is not complete yet."""
        if level < 0 or index < 0 or level >= len(self._levels) or index >= len(self._levels[level]):
            raise ValueError(f"node ({level}, {index}) is not complete in a tree of size {self.size}")
        return self._levels[level][index]

    def leaf_hash(self, leaf_index: int) -> bytes:
        return self.node(0, leaf_index)

    def _size_or_all(self, tree_size: int | None) -> int:
        size = self.size if tree_size is None else tree_size
        if not 0 <= size <= self.size:
            raise ValueError(f"tree size {size} is outside 0..{self.size}")
        return size

    def root(self, tree_size: int | None = None) -> bytes:
        """MTH of the first ``tree_size`` leaves (all by default); O(log n)."""
        size = self._size_or_all(tree_size)
        if size == 0:
            return EMPTY_ROOT
        return _fold([self._levels[level][index] for level, index in subtree_nodes(0, size)])

    def inclusion_proof(self, leaf_index: int, tree_size: int | None = None) -> list[bytes]:
        """RFC 9162 section 2.1.3.1 proof for ``leaf_index`` in the first ``tree_size`` leaves."""
        size = self._size_or_all(tree_size)
        return proof_from_plan(inclusion_plan(leaf_index, size), self.node)

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        """RFC 9162 section 2.1.4.1 proof from ``old_size`` leaves to ``new_size`` (all)."""
        size = self._size_or_all(new_size)
        return proof_from_plan(consistency_plan(old_size, size), self.node)


# --- checkpoints (signed tree heads) --------------------------------------------------------


class Checkpoint(NamedTuple):
    """A tree size and its root, as a signed checkpoint states them."""

    tree_size: int
    root_hash: bytes


def _hash_bytes(value: bytes | str, what: str) -> bytes:
    raw = bytes.fromhex(value) if isinstance(value, str) else value
    if not _is_hash(raw):
        raise ValueError(f"{what} must be {HASH_SIZE} bytes or {2 * HASH_SIZE} hex digits")
    return raw


def _tree_size(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"a tree size must be a non-negative integer, not {value!r}")
    return value


def checkpoint_body(tree_size: int, root_hash: bytes | str, timestamp_iso: str) -> bytes:
    """The exact bytes a checkpoint signature covers.

    ``canonical_json({"root_hash": <64 lowercase hex digits>, "timestamp": timestamp_iso,
    "tree_size": tree_size})``. Raises ValueError for a negative or non-integer size or a root
    that is not 32 bytes (or 64 hex digits).
    """
    if not isinstance(timestamp_iso, str):
        raise ValueError("the timestamp must be an ISO 8601 string")
    return canonical_json(
        {
            "root_hash": _hash_bytes(root_hash, "root_hash").hex(),
            "timestamp": timestamp_iso,
            "tree_size": _tree_size(tree_size),
        }
    )


def _private_key(private_key: Any) -> Any:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    if isinstance(private_key, Ed25519PrivateKey):
        return private_key
    if isinstance(private_key, str):
        private_key = private_key.encode("ascii")
    if isinstance(private_key, bytes) and private_key.lstrip().startswith(b"-----BEGIN"):
        key = load_pem_private_key(private_key, password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError("the checkpoint key must be an Ed25519 private key")
        return key
    if isinstance(private_key, bytes) and len(private_key) == 32:
        return Ed25519PrivateKey.from_private_bytes(private_key)
    raise ValueError("expected an Ed25519 private key, its unencrypted PEM, or its 32 raw bytes")


def sign_checkpoint(private_key: Any, body: bytes) -> bytes:
    """The 64-byte Ed25519 signature (RFC 8032) of ``body`` from ``checkpoint_body``.

    ``private_key`` is an ``Ed25519PrivateKey``, its unencrypted PKCS#8 PEM (bytes or str), or
    its 32 raw private bytes. Imports ``cryptography`` here only. Raises ValueError for any other
    key.
    """
    return _private_key(private_key).sign(body)


def export_public_key_pem(private_key: Any) -> bytes:
    """The SubjectPublicKeyInfo PEM of ``private_key`` (same forms as ``sign_checkpoint``)."""
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return (
        _private_key(private_key).public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    )


def verify_checkpoint(public_key_pem: bytes | str, body: bytes, signature: bytes) -> bool:
    """Whether ``signature`` is a valid Ed25519 signature of ``body`` by that public key.

    Imports ``cryptography`` here only. Raises ValueError if the PEM is not an Ed25519
    public key; a wrong or malformed signature returns False.
    """
    from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    pem = public_key_pem.encode("ascii") if isinstance(public_key_pem, str) else public_key_pem
    try:
        key = load_pem_public_key(pem)
    except UnsupportedAlgorithm as exc:
        raise ValueError(f"unsupported public key: {exc}") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("the checkpoint key must be an Ed25519 public key")
    try:
        key.verify(signature, body)
    except InvalidSignature:
        return False
    return True


# --- locating the first bad leaf (audit_verify) ---------------------------------------------


@dataclass(frozen=True)
class Mismatch:
    """Where the log stops matching what was signed or recorded.

    The first bad leaf lies in ``[leaf_index, end_index)``; ``is_exact`` when that is one index.
    ``kind``: "leaf" (changed, deleted or inserted leaf), "missing tail" (leaves from
    ``leaf_index`` on are gone), or "stored hash" (the events match every checkpoint, but the
    stored copy of leaf hash ``leaf_index`` was altered). ``checkpoint_size`` is the size of
    the first checkpoint the log fails, None when no signed checkpoint covers the problem.
    """

    kind: Literal["leaf", "missing tail", "stored hash"]
    leaf_index: int
    end_index: int
    checkpoint_size: int | None

    @property
    def is_exact(self) -> bool:
        return self.end_index == self.leaf_index + 1

    def __str__(self) -> str:
        where = (
            f"checkpoint at tree size {self.checkpoint_size} fails"
            if self.checkpoint_size is not None
            else "not yet covered by a checkpoint; differs from the stored leaf hashes"
        )
        if self.kind == "stored hash":
            return f"stored leaf hash {self.leaf_index} was altered; the events match every checkpoint"
        if self.kind == "missing tail" and self.is_exact:
            return f"missing tail: leaves from index {self.leaf_index} are gone ({where})"
        if self.is_exact:
            return f"first bad leaf index {self.leaf_index} ({where})"
        return (
            f"{'missing tail; ' if self.kind == 'missing tail' else ''}first bad leaf index is in "
            f"[{self.leaf_index}, {self.end_index}) ({where}; only stored leaf hashes pinpoint it)"
        )


def _as_checkpoint(item: Checkpoint | tuple[int, bytes | str] | Mapping[str, Any]) -> Checkpoint:
    if isinstance(item, Mapping):
        size, root_hash = item["tree_size"], item["root_hash"]
    else:
        size, root_hash = item
    return Checkpoint(_tree_size(size), _hash_bytes(root_hash, "root_hash"))


def vouched_prefix(
    hashes: Sequence[bytes], checkpoints: Iterable[Checkpoint | tuple[int, bytes | str] | Mapping[str, Any]]
) -> tuple[int, int | None]:
    """(largest checkpoint size up to which ``hashes`` reproduce every signed root, the size of
    the first checkpoint they fail or None). Streams through a CompactRange: O(n), O(log n) memory."""
    checkpoints = sorted(_as_checkpoint(item) for item in checkpoints)
    frontier = CompactRange()
    vouched = 0
    for size, expected in checkpoints:
        if size > len(hashes):
            return vouched, size
        frontier.extend(hashes[frontier.size : size])
        if not hmac.compare_digest(frontier.root(), expected):
            return vouched, size
        vouched = size
    return vouched, None


def _first_difference(a: Sequence[bytes], b: Sequence[bytes]) -> int | None:
    """The first index where ``a`` and ``b`` differ (a length counts), or None if equal."""
    common = min(len(a), len(b))
    if a[:common] != b[:common]:
        return next(i for i in range(common) if a[i] != b[i])
    return None if len(a) == len(b) else common


def find_first_mismatch(
    leaf_hashes: Sequence[bytes],
    checkpoints: Iterable[Checkpoint | tuple[int, bytes | str] | Mapping[str, Any]],
    stored_leaf_hashes: Sequence[bytes] | None = None,
    *,
    stored_vouched: tuple[int, int | None] | None = None,
) -> Mismatch | None:
    """The first bad leaf of a log, or None when everything matches: what ``audit_verify`` names.

    ``leaf_hashes``: recomputed now from the events, in leaf-index order, 0..n-1.
    ``checkpoints``: ``(tree_size, root_hash)`` pairs, ``Checkpoint``s or mappings with those
    keys (root as bytes or hex), whose signatures the caller has already checked.
    ``stored_leaf_hashes``: the leaf hashes the sequencer recorded when it appended each event
    (kept apart from the event rows), or None.

    Roots alone only bound the damage: the first checkpoint the recomputed leaves fail, after
    the last one they reproduce, brackets the first bad leaf. Stored leaf hashes pinpoint it:
    they are first authenticated against the same signed roots, then compared one by one with
    the recomputed hashes, so a changed leaf, a deleted one (the rest shift down), an inserted
    one and a truncated tail are each named at their exact index. O(n) hashes, O(log n) extra
    memory. ``stored_vouched``: ``vouched_prefix(stored_leaf_hashes, checkpoints)`` when the
    caller has it already (then neither list is hashed again when the two agree). Raises
    ValueError for a malformed checkpoint.
    """
    signed = sorted(_as_checkpoint(item) for item in checkpoints)
    count = len(leaf_hashes)
    difference = None
    stored_failed_size = None
    if stored_leaf_hashes is not None:
        difference = _first_difference(leaf_hashes, stored_leaf_hashes)
        if stored_vouched is None:
            stored_vouched = vouched_prefix(stored_leaf_hashes, signed)
    # Equal lists vouch for the same prefix: hash only one of them.
    good, failed_size = (
        stored_vouched
        if stored_leaf_hashes is not None and stored_vouched is not None and difference is None
        else vouched_prefix(leaf_hashes, signed)
    )
    first_bad_below = None if failed_size is None else min(failed_size, count + 1)
    known_good = good
    if stored_leaf_hashes is not None and stored_vouched is not None:
        trusted, stored_failed_size = stored_vouched
        agreeing = count if difference is None else difference
        # Recomputed hashes equal to authenticated stored ones are good themselves.
        known_good = max(known_good, min(agreeing, trusted))
        if difference is not None and difference < trusted:
            # An authenticated stored hash disagrees with the event: that leaf is bad.
            first_bad_below = (
                difference + 1 if first_bad_below is None else min(first_bad_below, difference + 1)
            )
    if first_bad_below is not None:
        first_bad_below = max(first_bad_below, known_good + 1)
        is_exact = first_bad_below == known_good + 1
        is_tail = known_good >= count if is_exact else failed_size is not None and failed_size > count
        return Mismatch("missing tail" if is_tail else "leaf", known_good, first_bad_below, failed_size)
    if difference is None:
        return None
    # Every checkpoint holds for the events; the stored record disagrees with them.
    if stored_failed_size is not None:
        return Mismatch("stored hash", difference, difference + 1, None)
    return Mismatch("missing tail" if difference >= count else "leaf", difference, difference + 1, None)


# --- privacy: erasable personal details ---------------------------------------------------


def new_salt() -> bytes:
    """A fresh random salt for ``personal_commitment`` (``SALT_SIZE`` bytes)."""
    return secrets.token_bytes(SALT_SIZE)


def personal_commitment(personal: Mapping[str, Any], salt: bytes) -> str:
    """``SHA-256(salt || canonical_json(personal))`` as hex: a hiding, binding commitment.

    The salt keeps guessable details (an e-mail address, a name) from being confirmed by
    hashing candidates; its fixed length keeps the split between salt and JSON unambiguous.
    Raises ValueError unless ``salt`` is ``SALT_SIZE`` bytes.
    """
    return personal_commitment_of_json(canonical_json(dict(personal)), salt)


def personal_commitment_of_json(personal_json: bytes, salt: bytes) -> str:
    """``personal_commitment`` of details already in canonical JSON (``canonical_json``)."""
    if not isinstance(salt, bytes) or len(salt) != SALT_SIZE:
        raise ValueError(f"the salt must be {SALT_SIZE} random bytes")
    return _sha256(salt + personal_json).hexdigest()


def leaf_object(event_fields: Mapping[str, Any], personal: Mapping[str, Any], salt: bytes) -> dict:
    """The object an audit event's leaf hashes: ``event_fields`` without the keys of
    ``personal``, plus ``"personal_commitment": personal_commitment(personal, salt)``.

    The app stores ``personal`` and ``salt`` beside the leaf, not in it. Erasing a person
    deletes those two; the leaf, its hash and every proof stay valid, and the commitment can
    still be checked (``verify_personal_commitment``) while the details are kept. Nested
    personal details must be moved into ``personal`` by the caller. Raises ValueError if
    ``event_fields`` already has a ``personal_commitment`` key or the salt is wrong.
    """
    if PERSONAL_COMMITMENT_KEY in event_fields:
        raise ValueError(f"event fields may not contain {PERSONAL_COMMITMENT_KEY!r}")
    leaf = {key: value for key, value in event_fields.items() if key not in personal}
    leaf[PERSONAL_COMMITMENT_KEY] = personal_commitment(personal, salt)
    return leaf


def verify_personal_commitment(leaf: Mapping[str, Any], personal: Mapping[str, Any], salt: bytes) -> bool:
    """Whether ``personal`` and ``salt`` are what ``leaf``'s commitment was made from."""
    expected = leaf.get(PERSONAL_COMMITMENT_KEY)
    if not isinstance(expected, str):
        return False
    try:
        actual = personal_commitment(personal, salt)
    except (TypeError, ValueError):
        return False
    return hmac.compare_digest(actual, expected)


# --- offline bundle verifier (the auditors' CLI) ------------------------------------------


@dataclass(frozen=True)
class EventResult:
    """One bundle event: its position in the bundle, its leaf index when readable, the verdict."""

    position: int
    leaf_index: int | None
    is_verified: bool
    detail: str

    def line(self) -> str:
        name = f"leaf {self.leaf_index}" if self.leaf_index is not None else f"event #{self.position}"
        if self.is_verified:
            return f"{name}: ok ({self.detail})" if self.detail else f"{name}: ok"
        return f"{name}: FAILED: {self.detail}"


@dataclass(frozen=True)
class BundleReport:
    """The verdict on a bundle: the checkpoint signature and each event, in bundle order."""

    tree_size: int
    root_hash: str
    timestamp: str
    is_signature_valid: bool
    signature_detail: str
    events: list[EventResult] = field(default_factory=list)
    key_id: str = ""
    is_key_pinned: bool = False
    filters: Mapping[str, Any] | None = None
    completeness_problem: str = ""

    @property
    def is_verified(self) -> bool:
        return (
            self.is_signature_valid
            and not self.completeness_problem
            and all(event.is_verified for event in self.events)
        )

    @property
    def first_failure(self) -> EventResult | None:
        """The first failing event in bundle order (bundles list events by leaf index)."""
        return next((event for event in self.events if not event.is_verified), None)

    def lines(self) -> list[str]:
        signature = "valid" if self.is_signature_valid else f"INVALID ({self.signature_detail})"
        source = (
            "pinned with --public-key" if self.is_key_pinned else "the bundle's own; pin it with --public-key"
        )
        if self.filters is None:
            scope = "not stated (no filters field): proves these events, not that the log is complete"
        elif not self.filters:
            scope = "the whole log up to tree_size (no filters): completeness checked"
        else:
            scope = (
                "filtered by "
                + ", ".join(f"{name}={value}" for name, value in sorted(self.filters.items()))
                + ": proves these events, not that no other event matches"
            )
        lines = [
            f"public key: sha256 {self.key_id} ({source})",
            f"checkpoint: tree_size={self.tree_size} root_hash={self.root_hash} "
            f"timestamp={self.timestamp} signature {signature}",
            f"scope: {scope}",
        ]
        lines += [event.line() for event in self.events]
        failed = [event for event in self.events if not event.is_verified]
        if self.is_verified:
            lines.append(f"OK: {len(self.events)} of {len(self.events)} events verified")
            return lines
        problems = []
        if not self.is_signature_valid:
            problems.append("the checkpoint signature is invalid")
        if self.completeness_problem:
            problems.append(self.completeness_problem)
        first = self.first_failure
        if first is not None:
            name = (
                f"first failing leaf index {first.leaf_index}"
                if first.leaf_index is not None
                else f"first failing event #{first.position}"
            )
            problems.append(f"{name} ({len(failed)} of {len(self.events)} events failed)")
        lines.append("FAILED: " + "; ".join(problems))
        return lines


class BundleError(ValueError):
    """The bundle cannot be read or lacks a field the checkpoint needs."""


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise BundleError("duplicate key in a JSON object")
    return obj


def _reject_constant(name: str) -> Any:
    raise BundleError(f"{name} is not JSON")


def load_bundle(path: str | Path) -> dict[str, Any]:
    """Parse a bundle file strictly: UTF-8, no duplicate keys, no NaN or Infinity.

    Raises BundleError (a ValueError) or OSError.
    """
    try:
        text = Path(path).read_bytes().decode("utf-8")
        bundle = json.loads(text, object_pairs_hook=_reject_duplicate_keys, parse_constant=_reject_constant)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"not a JSON bundle: {exc}") from exc
    if not isinstance(bundle, dict):
        raise BundleError("a bundle is a JSON object")
    return bundle


def _verify_event(position: int, event: Any, tree_size: int, root_hash: bytes) -> EventResult:
    if not isinstance(event, Mapping):
        return EventResult(position, None, False, "not a JSON object")
    index = event.get("leaf_index")
    if not isinstance(index, int) or isinstance(index, bool):
        return EventResult(position, None, False, "leaf_index is not an integer")
    leaf, proof = event.get("leaf"), event.get("proof")
    if not isinstance(leaf, Mapping):
        return EventResult(position, index, False, "leaf is not a JSON object")
    if not isinstance(proof, list) or not all(isinstance(step, str) for step in proof):
        return EventResult(position, index, False, "proof is not a list of hex strings")
    try:
        path = [bytes.fromhex(step) for step in proof]
        hashed = leaf_hash(canonical_json(leaf))
    except (TypeError, ValueError) as exc:
        return EventResult(position, index, False, f"unreadable leaf or proof ({exc})")
    if not 0 <= index < tree_size:
        return EventResult(position, index, False, f"leaf index outside the tree of size {tree_size}")
    if not verify_inclusion(index, tree_size, hashed, path, root_hash):
        return EventResult(position, index, False, "inclusion proof does not reach the checkpoint root")
    return _verify_personal(position, index, leaf, event)


def _verify_personal(position: int, index: int, leaf: Mapping, event: Mapping) -> EventResult:
    """An event may carry the personal details its leaf commits to, and their salt; both null
    once the details were erased (the leaf and its proof still verify)."""
    if "personal" not in event and "salt" not in event:
        return EventResult(position, index, True, "")
    personal, salt = event.get("personal"), event.get("salt")
    if personal is None and salt is None:
        return EventResult(position, index, True, "personal details erased")
    try:
        salt_bytes = bytes.fromhex(salt) if isinstance(salt, str) else b""
    except ValueError:
        salt_bytes = b""
    if not isinstance(personal, Mapping) or not verify_personal_commitment(leaf, personal, salt_bytes):
        return EventResult(position, index, False, "personal details do not match the leaf's commitment")
    return EventResult(position, index, True, "")


def _completeness_problem(events: Sequence[EventResult], tree_size: int, filters: Mapping | None) -> str:
    """For an unfiltered bundle, which claims the whole log, the leaf indexes must be exactly
    0..tree_size-1; in any bundle a leaf index may appear once only."""
    indexes = [event.leaf_index for event in events if event.leaf_index is not None]
    seen: set[int] = set()
    twice: set[int] = set()
    for index in indexes:
        (twice if index in seen else seen).add(index)
    repeated = sorted(twice)
    if repeated:
        return f"leaf indexes listed twice: {_some(repeated)}"
    if filters is None or filters:
        return ""
    missing = sorted(set(range(tree_size)) - seen)
    if missing:
        return f"{len(missing)} leaves of the unfiltered log are missing from the bundle: {_some(missing)}"
    return ""


def _some(numbers: Sequence[int]) -> str:
    shown = ", ".join(str(number) for number in numbers[:10])
    return shown + (f" and {len(numbers) - 10} more" if len(numbers) > 10 else "")


def public_key_id(pem: str) -> str:
    """The id Steward gives a public key (``key_id`` on checkpoints): hex SHA-256 of its PEM,
    stripped and ending in one newline."""
    return _sha256((pem.strip() + "\n").encode("ascii", "replace")).hexdigest()


def verify_bundle(
    bundle: Mapping[str, Any], pinned_public_key_pem: str | None = None, *, require_complete: bool = False
) -> BundleReport:
    """Verify an exported bundle offline: the checkpoint's Ed25519 signature, then each event's
    leaf hash (recomputed from ``canonical_json(leaf)``) and inclusion proof against its root.

    The signature is checked with ``pinned_public_key_pem`` when given (the key the auditor
    obtained apart from the bundle): a bundle re-signed with another key then fails. Without
    it, the bundle's own key is used and its id printed so that it can be compared. A
    checkpoint ``key_id`` must name the key used. A bundle of the whole log (``"filters": {}``)
    must list every leaf below ``tree_size`` exactly once; any other, each at most once. The
    filters are not signed: ``require_complete`` fails any bundle that does not claim the whole
    log, so that an edited ``filters`` cannot hide a missing event.

    Bundle shape: ``{"public_key_pem": str, "checkpoint": {"tree_size": int, "root_hash": hex,
    "timestamp": str, "signature": base64}, "events": [{"leaf_index": int, "leaf": {...},
    "proof": [hex, ...], "personal": {...} | null, "salt": hex | null}, ...]}``. When an event
    carries ``personal`` and ``salt`` they must match the leaf's ``personal_commitment``; both
    null (or absent) means the details were erased, which still verifies. Raises BundleError
    when the checkpoint part is unusable; a bad event is reported, not raised.
    """
    checkpoint = bundle.get("checkpoint")
    pem = bundle.get("public_key_pem")
    events = bundle.get("events", [])
    filters = bundle.get("filters")
    if not isinstance(checkpoint, Mapping) or not isinstance(pem, str) or not isinstance(events, list):
        raise BundleError("a bundle needs public_key_pem (str), checkpoint (object), events (list)")
    if filters is not None and not isinstance(filters, Mapping):
        raise BundleError("filters must be a JSON object")
    if pinned_public_key_pem is not None:
        pem = pinned_public_key_pem
    key_id = public_key_id(pem)
    try:
        tree_size = _tree_size(checkpoint.get("tree_size"))
        root_hex = checkpoint.get("root_hash")
        timestamp = checkpoint.get("timestamp")
        if not isinstance(root_hex, str) or not isinstance(timestamp, str):
            raise BundleError("checkpoint root_hash and timestamp must be strings")
        root_hash = _hash_bytes(root_hex, "root_hash")
        body = checkpoint_body(tree_size, root_hash, timestamp)
    except ValueError as exc:
        raise BundleError(f"unusable checkpoint: {exc}") from exc
    try:
        signature = base64.b64decode(str(checkpoint.get("signature", "")), validate=True)
        is_valid = verify_checkpoint(pem, body, signature)
        detail = "" if is_valid else "does not match the public key"
    except (binascii.Error, ValueError) as exc:
        is_valid, detail = False, f"unreadable signature or key: {exc}"
    named_key = checkpoint.get("key_id")
    if is_valid and named_key is not None and named_key != key_id:
        is_valid, detail = False, f"the checkpoint names key {named_key}, not this one"
    results = [_verify_event(i, event, tree_size, root_hash) for i, event in enumerate(events)]
    return BundleReport(
        tree_size,
        root_hash.hex(),
        timestamp,
        is_valid,
        detail,
        results,
        key_id=key_id,
        is_key_pinned=pinned_public_key_pem is not None,
        filters=filters,
        completeness_problem=(
            "the bundle does not claim the whole log (it has filters), and --complete asks for it"
            if require_complete and filters != {}
            else _completeness_problem(results, tree_size, filters)
        ),
    )


# --- evidence packs (issue 12): a model version's model card, lineage and audit bundle, signed --

EVIDENCE_PACK_FORMAT = "steward-evidence-pack/1"
# The parts a pack's digests name, each top-level key of a part on its own, so that a verifier
# says which item was edited ("model_card.metrics"), not only that the pack changed.
PACK_PARTS = ("model_version", "model_card", "lineage", "audit_bundle")
_PACK_UNSIGNED = ("pack_sha256", "signature")


def pack_digests(pack: Mapping[str, Any]) -> dict[str, str]:
    """``{"part.key": hex SHA-256 of canonical_json(value)}`` for each key of each of
    ``PACK_PARTS`` that is an object (``{"part": ...}`` for one that is not). Raises as
    ``canonical_json`` does."""
    digests = {}
    for part in PACK_PARTS:
        value = pack.get(part)
        items = value.items() if isinstance(value, Mapping) else [(None, value)]
        for key, item in items:
            name = part if key is None else f"{part}.{key}"
            digests[name] = _sha256(canonical_json(item)).hexdigest()
    return digests


def pack_sha256(pack: Mapping[str, Any]) -> str:
    """Hex SHA-256 of the canonical JSON of ``pack`` without ``pack_sha256`` and ``signature``
    (its digests included). Raises as ``canonical_json`` does."""
    signed = {key: value for key, value in pack.items() if key not in _PACK_UNSIGNED}
    return _sha256(canonical_json(signed)).hexdigest()


def pack_signing_body(pack_hash_hex: str) -> bytes:
    """What a pack's Ed25519 signature covers: the format line and its ``pack_sha256``
    (``"steward-evidence-pack/1\n<hex>\n"``), so that no checkpoint body can pass for it."""
    return f"{EVIDENCE_PACK_FORMAT}\n{pack_hash_hex}\n".encode("ascii")


def _digest_problems(pack: Mapping[str, Any]) -> list[str]:
    stated = pack.get("digests")
    if not isinstance(stated, Mapping):
        return ["digests: missing or not a JSON object"]
    try:
        actual = pack_digests(pack)
    except (TypeError, ValueError) as exc:
        return [f"the pack cannot be hashed ({exc})"]
    problems = []
    for name in sorted(set(stated) | set(actual)):
        if name not in stated:
            problems.append(f"{name}: added after signing (no signed digest covers it)")
        elif name not in actual:
            problems.append(f"{name}: removed after signing")
        elif stated[name] != actual[name]:
            problems.append(f"{name}: edited after signing (its sha256 differs from the signed digest)")
    return problems


@dataclass(frozen=True)
class PackReport:
    """The verdict on an evidence pack: its parts against their signed digests, its hash, its
    Ed25519 signature, then its audit bundle (``BundleReport``, None when unreadable)."""

    subject: str
    digest_problems: list[str]
    hash_problem: str
    is_signature_valid: bool
    signature_detail: str
    key_id: str
    is_key_pinned: bool
    bundle: BundleReport | None
    bundle_problem: str = ""

    @property
    def is_verified(self) -> bool:
        return (
            not self.digest_problems
            and not self.hash_problem
            and self.is_signature_valid
            and self.bundle is not None
            and self.bundle.is_verified
        )

    def lines(self) -> list[str]:
        signature = "valid" if self.is_signature_valid else f"INVALID ({self.signature_detail})"
        pinned = self.is_key_pinned
        source = "pinned with --public-key" if pinned else "the bundle's own; pin it with --public-key"
        lines = [
            f"evidence pack: {self.subject}",
            f"pack signature: {signature}; public key sha256 {self.key_id} ({source})",
        ]
        lines += [f"pack: FAILED: {problem}" for problem in self.digest_problems]
        if self.hash_problem:
            lines.append(f"pack: FAILED: {self.hash_problem}")
        if self.bundle is not None:
            lines += ["audit bundle:", *("  " + line for line in self.bundle.lines())]
        else:
            lines.append(f"audit bundle: FAILED: {self.bundle_problem}")
        if self.is_verified and self.bundle is not None:
            lines.append(
                f"OK: evidence pack verified (parts, pack_sha256, signature, "
                f"{len(self.bundle.events)} of {len(self.bundle.events)} events)"
            )
            return lines
        problems = [*self.digest_problems]
        if self.hash_problem:
            problems.append(self.hash_problem)
        if not self.is_signature_valid:
            problems.append(f"the pack signature is invalid ({self.signature_detail})")
        if self.bundle is None:
            problems.append(f"the audit bundle is unusable ({self.bundle_problem})")
        elif not self.bundle.is_verified:
            problems.append("the audit bundle " + self.bundle.lines()[-1].removeprefix("FAILED: "))
        lines.append("FAILED: " + "; ".join(problems))
        return lines


def verify_evidence_pack(pack: Mapping[str, Any], pinned_public_key_pem: str | None = None) -> PackReport:
    """Verify an evidence pack offline: each part against its signed digest (naming the edited
    item), ``pack_sha256`` against the whole, its Ed25519 signature over ``pack_signing_body``
    with ``pinned_public_key_pem`` (else the key in its audit bundle), then its ``audit_bundle``
    as ``verify_bundle`` does (checkpoint signature, every event's leaf and inclusion proof).

    Pack shape: ``{"format": EVIDENCE_PACK_FORMAT, "model_version": {...}, "model_card": {...},
    "lineage": {...}, "audit_bundle": {bundle}, "digests": {"part.key": hex}, "pack_sha256":
    hex, "signature": {"algorithm": "Ed25519", "key_id": hex, "value": base64}}``. Raises
    BundleError for another format; every other fault is reported, not raised.
    """
    if pack.get("format") != EVIDENCE_PACK_FORMAT:
        raise BundleError(f"not an evidence pack (format is not {EVIDENCE_PACK_FORMAT})")
    subject = pack.get("model_version")
    subject_text = (
        f"{subject.get('model')} v{subject.get('version')} (model version {subject.get('id')})"
        if isinstance(subject, Mapping)
        else "unnamed"
    )
    stated_hash = pack.get("pack_sha256")
    try:
        actual_hash = pack_sha256(pack)
    except (TypeError, ValueError) as exc:
        actual_hash = f"unhashable ({exc})"
    hash_problem = "" if stated_hash == actual_hash else "pack_sha256 does not match the pack's content"
    bundle = pack.get("audit_bundle")
    pem = pinned_public_key_pem
    if pem is None and isinstance(bundle, Mapping) and isinstance(bundle.get("public_key_pem"), str):
        pem = bundle["public_key_pem"]
    is_valid, detail, key_id = False, "no public key: pass --public-key", ""
    signature = pack.get("signature")
    if pem is not None:
        key_id = public_key_id(pem)
        try:
            if not isinstance(signature, Mapping) or not isinstance(stated_hash, str):
                raise ValueError("the pack has no signature object or no pack_sha256")
            value = base64.b64decode(str(signature.get("value", "")), validate=True)
            is_valid = verify_checkpoint(pem, pack_signing_body(stated_hash), value)
            detail = "" if is_valid else "does not match the public key"
        except (binascii.Error, ValueError) as exc:
            is_valid, detail = False, f"unreadable signature or key: {exc}"
        named_key = signature.get("key_id") if isinstance(signature, Mapping) else None
        if is_valid and named_key is not None and named_key != key_id:
            is_valid, detail = False, f"the pack names key {named_key}, not this one"
    report: BundleReport | None = None
    bundle_problem = ""
    if isinstance(bundle, Mapping):
        try:
            report = verify_bundle(bundle, pinned_public_key_pem)
        except BundleError as exc:
            bundle_problem = str(exc)
    else:
        bundle_problem = "audit_bundle is missing or not a JSON object"
    return PackReport(
        subject_text,
        _digest_problems(pack),
        hash_problem,
        is_valid,
        detail,
        key_id,
        pinned_public_key_pem is not None,
        report,
        bundle_problem,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """``merkle.py verify [--public-key PEM] [--complete] BUNDLE.json``: exit 0 if everything verifies, 1 if
    anything fails (naming the first failing leaf index), 2 if the bundle or key cannot be read.
    An evidence pack (``"format": "steward-evidence-pack/1"``) is verified as a pack instead."""
    parser = argparse.ArgumentParser(
        prog="merkle.py",
        description="Verify a Steward audit bundle offline (RFC 9162 Merkle proofs, Ed25519).",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    verify = commands.add_parser("verify", help="verify an exported audit bundle or evidence pack")
    verify.add_argument("bundle", type=Path, help="the bundle (or evidence pack) JSON file")
    verify.add_argument(
        "--public-key",
        type=Path,
        metavar="PEM",
        help="the server's public key obtained apart from the bundle (GET /api/audit/public-key/): "
        "the checkpoint must be signed with it",
    )
    verify.add_argument(
        "--complete",
        action="store_true",
        help="fail unless the bundle claims the whole log (exported without filters) and holds it",
    )
    args = parser.parse_args(argv)
    try:
        pinned = args.public_key.read_text(encoding="ascii") if args.public_key is not None else None
        document = load_bundle(args.bundle)
        report: BundleReport | PackReport
        if document.get("format") == EVIDENCE_PACK_FORMAT:
            report = verify_evidence_pack(document, pinned)
        else:
            report = verify_bundle(document, pinned, require_complete=args.complete)
    except (OSError, BundleError, UnicodeDecodeError) as exc:
        print(f"cannot verify {args.bundle}: {exc}", file=sys.stderr)
        return 2
    for line in report.lines():
        print(line)
    return 0 if report.is_verified else 1


if __name__ == "__main__":
    sys.exit(main())
