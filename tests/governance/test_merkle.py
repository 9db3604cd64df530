"""The audit log's Merkle tree (RFC 6962 / RFC 9162), checkpoints, first-bad-leaf search and the
auditors' offline verifier, checked against published vectors and a naive RFC implementation."""

from __future__ import annotations

import ast
import base64
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from governance import merkle

MERKLE_SOURCE = Path(merkle.__file__)

# Certificate Transparency's reference tree (RFC 6962 test data): leaves and the root of each
# prefix, published with the CT code and reproduced by every conforming implementation.
CT_LEAVES = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    b"\x50\x51\x52\x53\x54\x55\x56\x57",
    b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
]
CT_ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
# (leaf index, tree size, proof), CT's 1-based leaf numbers turned 0-based.
CT_INCLUSION = [
    (
        0,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (
        1,
        5,
        [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
]
# (old size, new size, proof)
CT_CONSISTENCY = [
    (1, 1, []),
    (
        1,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
]
MAX_SIZE = 33
TIMESTAMP = "2026-03-01T12:00:00Z"


# --- a naive implementation, written straight from the RFC 6962 section 2.1 recursions -------


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


HASHES = leaf_hashes(MAX_SIZE + 1)
TREE = merkle.MerkleTree(HASHES)
ROOTS = [naive_mth(HASHES[:size]) for size in range(MAX_SIZE + 2)]


# --- hashing and roots --------------------------------------------------------------------


def test_empty_tree_root_is_sha256_of_the_empty_string():
    assert merkle.root([]) == merkle.EMPTY_ROOT == hashlib.sha256(b"").digest()
    assert merkle.root([]).hex() == ("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    assert merkle.MerkleTree().root() == merkle.CompactRange().root() == merkle.EMPTY_ROOT


def test_leaf_and_node_hashes_use_the_rfc_domain_prefixes():
    left, right = hashlib.sha256(b"l").digest(), hashlib.sha256(b"r").digest()
    assert merkle.leaf_hash(b"abc") == hashlib.sha256(b"\x00abc").digest()
    assert merkle.node_hash(left, right) == hashlib.sha256(b"\x01" + left + right).digest()
    assert merkle.leaf_hash(left + right) != merkle.node_hash(left, right)


@pytest.mark.parametrize("size", range(len(CT_LEAVES) + 1))
def test_root_matches_the_certificate_transparency_reference_roots(size):
    hashes = [merkle.leaf_hash(leaf) for leaf in CT_LEAVES[:size]]
    assert merkle.root(hashes).hex() == CT_ROOTS[size]
    assert naive_mth(hashes).hex() == CT_ROOTS[size]
    assert merkle.MerkleTree(hashes).root().hex() == CT_ROOTS[size]


def test_eight_leaf_reference_root():
    hashes = [merkle.leaf_hash(leaf) for leaf in CT_LEAVES]
    assert merkle.root(hashes).hex() == ("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328")


def test_root_matches_the_naive_recursion_for_every_size_up_to_70():
    hashes = leaf_hashes(70)
    for size in range(71):
        assert merkle.root(hashes[:size]) == naive_mth(hashes[:size]), size


def test_root_refuses_hashes_that_are_not_32_bytes():
    with pytest.raises(ValueError, match="32 bytes"):
        merkle.root([HASHES[0], b"short"])


# --- inclusion proofs ---------------------------------------------------------------------


@pytest.mark.parametrize(("index", "size", "proof"), CT_INCLUSION)
def test_inclusion_proof_matches_the_reference_vectors(index, size, proof):
    hashes = [merkle.leaf_hash(leaf) for leaf in CT_LEAVES[:size]]
    expected = [bytes.fromhex(step) for step in proof]
    assert merkle.inclusion_proof(index, hashes) == expected
    assert merkle.MerkleTree(hashes).inclusion_proof(index) == expected
    assert merkle.verify_inclusion(index, size, hashes[index], expected, bytes.fromhex(CT_ROOTS[size]))


@pytest.mark.parametrize("size", range(1, MAX_SIZE + 1))
def test_every_inclusion_proof_verifies_and_any_altered_byte_fails(size):
    root = ROOTS[size]
    for index in range(size):
        proof = TREE.inclusion_proof(index, size)
        assert proof == naive_path(index, HASHES[:size]) == merkle.inclusion_proof(index, HASHES[:size])
        assert merkle.verify_inclusion(index, size, HASHES[index], proof, root)
        for position in range(32):
            assert not merkle.verify_inclusion(index, size, flipped(HASHES[index], position), proof, root)
            assert not merkle.verify_inclusion(index, size, HASHES[index], proof, flipped(root, position))
            for step in range(len(proof)):
                altered = [*proof[:step], flipped(proof[step], position), *proof[step + 1 :]]
                assert not merkle.verify_inclusion(index, size, HASHES[index], altered, root)


@pytest.mark.parametrize("size", range(1, MAX_SIZE + 1))
def test_inclusion_proof_fails_for_another_index_size_or_length(size):
    for index in range(size):
        proof = TREE.inclusion_proof(index, size)
        for other in range(size):
            if other != index:
                assert not merkle.verify_inclusion(other, size, HASHES[index], proof, ROOTS[size])
                assert not merkle.verify_inclusion(other, size, HASHES[other], proof, ROOTS[size])
        # Claiming another tree size with that tree's root only works where the proof for
        # that size is the same list of hashes.
        for other_size in range(index + 1, MAX_SIZE + 2):
            if other_size != size:
                expected = naive_path(index, HASHES[:other_size]) == proof
                assert (
                    merkle.verify_inclusion(index, other_size, HASHES[index], proof, ROOTS[other_size])
                    is expected
                )
        assert not merkle.verify_inclusion(index, size, HASHES[index], [*proof, HASHES[0]], ROOTS[size])
        if proof:
            assert not merkle.verify_inclusion(index, size, HASHES[index], proof[:-1], ROOTS[size])
        assert not merkle.verify_inclusion(size, size, HASHES[index], proof, ROOTS[size])
        assert not merkle.verify_inclusion(-1, size, HASHES[index], proof, ROOTS[size])


def test_inclusion_proof_binds_the_root_not_the_tree_size():
    # Leaf 0 climbs the same way in trees of 3 and 4 leaves, so one proof and one root pass for
    # both sizes: the size an auditor trusts is the one the checkpoint signature covers.
    proof = TREE.inclusion_proof(0, 3)
    assert merkle.verify_inclusion(0, 3, HASHES[0], proof, ROOTS[3])
    assert merkle.verify_inclusion(0, 4, HASHES[0], proof, ROOTS[3])


def test_inclusion_proof_rejects_an_index_outside_the_tree():
    with pytest.raises(ValueError, match="outside a tree of size 4"):
        merkle.inclusion_proof(4, HASHES[:4])
    with pytest.raises(ValueError, match="outside a tree of size 0"):
        merkle.inclusion_plan(0, 0)
    assert not merkle.verify_inclusion(0, 0, HASHES[0], [], merkle.EMPTY_ROOT)


# --- consistency proofs -------------------------------------------------------------------


@pytest.mark.parametrize(("old_size", "new_size", "proof"), CT_CONSISTENCY)
def test_consistency_proof_matches_the_reference_vectors(old_size, new_size, proof):
    hashes = [merkle.leaf_hash(leaf) for leaf in CT_LEAVES[:new_size]]
    expected = [bytes.fromhex(step) for step in proof]
    assert merkle.consistency_proof(old_size, hashes) == expected
    assert merkle.verify_consistency(
        old_size, new_size, bytes.fromhex(CT_ROOTS[old_size]), bytes.fromhex(CT_ROOTS[new_size]), expected
    )


@pytest.mark.parametrize("new_size", range(1, MAX_SIZE + 1))
def test_every_consistency_proof_verifies_and_any_altered_byte_fails(new_size):
    new_root = ROOTS[new_size]
    for old_size in range(1, new_size + 1):
        old_root = ROOTS[old_size]
        proof = TREE.consistency_proof(old_size, new_size)
        assert proof == naive_consistency(old_size, HASHES[:new_size])
        assert proof == merkle.consistency_proof(old_size, HASHES[:new_size])
        assert merkle.verify_consistency(old_size, new_size, old_root, new_root, proof)
        for position in range(32):
            assert not merkle.verify_consistency(
                old_size, new_size, flipped(old_root, position), new_root, proof
            )
            assert not merkle.verify_consistency(
                old_size, new_size, old_root, flipped(new_root, position), proof
            )
            for step in range(len(proof)):
                altered = [*proof[:step], flipped(proof[step], position), *proof[step + 1 :]]
                assert not merkle.verify_consistency(old_size, new_size, old_root, new_root, altered)


@pytest.mark.parametrize("new_size", range(1, MAX_SIZE + 1))
def test_consistency_proof_fails_for_other_sizes_or_lengths(new_size):
    for old_size in range(1, new_size + 1):
        proof = TREE.consistency_proof(old_size, new_size)
        for other_old in range(1, MAX_SIZE + 2):
            for other_new in range(other_old, MAX_SIZE + 2):
                if (other_old, other_new) == (old_size, new_size):
                    continue
                # Other sizes with their own roots pass only where their proof is this list.
                expected = naive_consistency(other_old, HASHES[:other_new]) == proof
                result = merkle.verify_consistency(
                    other_old, other_new, ROOTS[other_old], ROOTS[other_new], proof
                )
                assert result is expected, (old_size, new_size, other_old, other_new)
        extended = [*proof, HASHES[0]]
        assert not merkle.verify_consistency(old_size, new_size, ROOTS[old_size], ROOTS[new_size], extended)
        if proof:
            shortened = proof[:-1]
            assert not merkle.verify_consistency(
                old_size, new_size, ROOTS[old_size], ROOTS[new_size], shortened
            )
        if old_size < new_size:
            # A later tree is never a prefix of an earlier one.
            assert not merkle.verify_consistency(new_size, old_size, ROOTS[new_size], ROOTS[old_size], proof)


def test_consistency_from_the_empty_tree_and_bad_sizes():
    assert merkle.consistency_proof(0, HASHES[:5]) == []
    assert merkle.verify_consistency(0, 5, merkle.EMPTY_ROOT, ROOTS[5], [])
    assert not merkle.verify_consistency(0, 5, ROOTS[1], ROOTS[5], [])
    assert not merkle.verify_consistency(0, 5, merkle.EMPTY_ROOT, ROOTS[5], [HASHES[0]])
    with pytest.raises(ValueError, match="from size 6 to size 5"):
        merkle.consistency_proof(6, HASHES[:5])


# --- incremental appends, stored nodes, large trees ---------------------------------------


def test_compact_range_root_equals_the_full_root_after_every_append():
    frontier = merkle.CompactRange()
    tree = merkle.MerkleTree()
    for size, leaf in enumerate(HASHES, start=1):
        frontier.append(leaf)
        tree.append(leaf)
        assert frontier.size == size
        assert len(frontier.peaks) == size.bit_count()
        assert frontier.root() == tree.root() == ROOTS[size] == merkle.root(HASHES[:size])


def test_compact_range_reports_every_node_it_completes():
    frontier = merkle.CompactRange()
    stored: dict[tuple[int, int], bytes] = {}
    for leaf in HASHES[:13]:
        for level, index, value in frontier.append(leaf):
            assert (level, index) not in stored
            stored[(level, index)] = value
    tree = merkle.MerkleTree(HASHES[:13])
    # 13 leaves complete 13 + 6 + 3 + 1 nodes at levels 0..3.
    assert sorted(stored) == [(0, i) for i in range(13)] + [(1, i) for i in range(6)] + [
        (2, i) for i in range(3)
    ] + [(3, 0)]
    assert all(stored[node] == tree.node(*node) for node in stored)
    # Those nodes serve every proof of the 13-leaf tree without touching the other leaves.
    for index in range(13):
        plan = merkle.inclusion_plan(index, 13)
        assert merkle.plan_nodes(plan) <= set(stored)
        assert merkle.proof_from_plan(plan, lambda level, i: stored[(level, i)]) == naive_path(
            index, HASHES[:13]
        )


def test_compact_range_saves_as_hex_and_continues_where_it_stopped():
    frontier = merkle.CompactRange()
    frontier.extend(HASHES[:21])
    saved = json.loads(json.dumps({"size": frontier.size, "peaks": frontier.to_hex()}))
    assert saved["peaks"] == [
        TREE.node(4, 0).hex(),
        TREE.node(2, 4).hex(),
        TREE.node(0, 20).hex(),
    ]
    restored = merkle.CompactRange.from_hex(saved["size"], saved["peaks"])
    for leaf in HASHES[21:]:
        restored.append(leaf)
    assert restored.root() == ROOTS[len(HASHES)]
    with pytest.raises(ValueError, match="a tree of size 21 has 3 peaks"):
        merkle.CompactRange.from_hex(21, saved["peaks"][:2])


def test_compact_range_extend_in_any_chunks_matches_single_appends():
    hashes = leaf_hashes(100)
    for cut in (0, 1, 3, 8, 37, 64, 99, 100):
        frontier = merkle.CompactRange()
        frontier.extend(hashes[:cut])
        frontier.extend(hashes[cut:])
        assert frontier.root() == naive_mth(hashes), cut


def test_merkle_tree_answers_for_every_prefix():
    for size in range(MAX_SIZE + 2):
        assert TREE.root(size) == ROOTS[size]
    assert TREE.inclusion_proof(2, 7) == naive_path(2, HASHES[:7])
    assert TREE.consistency_proof(3, 7) == naive_consistency(3, HASHES[:7])
    with pytest.raises(ValueError, match=r"outside 0\.\.34"):
        TREE.root(35)
    with pytest.raises(ValueError, match="not complete"):
        TREE.node(1, 17)


def test_subtree_nodes_refuses_a_range_that_is_not_an_rfc_subtree():
    assert merkle.subtree_nodes(8, 13) == [(2, 2), (0, 12)]
    with pytest.raises(ValueError, match=r"\[2, 6\) is not a subtree"):
        merkle.subtree_nodes(2, 6)


def test_proof_at_one_million_leaves_reads_a_logarithmic_number_of_nodes():
    size = 1_000_000
    hashes = [hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(size)]
    tree = merkle.MerkleTree(hashes)
    root = tree.root()
    assert root == merkle.root(hashes)
    reads: list[tuple[int, int]] = []

    def counting_node(level: int, index: int) -> bytes:
        reads.append((level, index))
        return tree.node(level, index)

    # 1_000_000 = 2**19 + 2**18 + 2**17 + 2**16 + 2**14 + 2**9 + 2**6. Leaf 0 has 19 complete
    # siblings plus the ragged right half (475_712 leaves: 6 nodes); leaf 524_288 has the left
    # half, 18 complete siblings and a ragged quarter (213_568 leaves: 5 nodes); the last leaf
    # sits in the final 64-leaf block: 6 siblings inside it and one per larger block.
    for index, proof_length, node_reads in ((0, 20, 25), (524_288, 20, 24), (999_999, 12, 12)):
        reads.clear()
        proof = merkle.proof_from_plan(merkle.inclusion_plan(index, size), counting_node)
        assert (len(proof), len(reads)) == (proof_length, node_reads)
        assert merkle.verify_inclusion(index, size, hashes[index], proof, root)
    assert merkle.inclusion_proof(999_999, hashes) == tree.inclusion_proof(999_999)


# --- canonical JSON -----------------------------------------------------------------------


def test_canonical_json_is_sorted_compact_utf8_and_stable():
    first = {"b": 1, "a": [True, None, "é", 1.5], "ü": {"z": "x", "y": -2}}
    second = {"ü": {"y": -2, "z": "x"}, "a": [True, None, "é", 1.5], "b": 1}
    expected = '{"a":[true,null,"é",1.5],"b":1,"ü":{"y":-2,"z":"x"}}'.encode()
    assert merkle.canonical_json(first) == merkle.canonical_json(second) == expected
    assert merkle.canonical_json(json.loads(expected)) == expected


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_canonical_json_rejects_nan_and_infinities(value):
    with pytest.raises(ValueError, match="Out of range float"):
        merkle.canonical_json({"score": value})


def test_canonical_json_rejects_what_json_cannot_hold():
    with pytest.raises(TypeError, match="set is not JSON serializable"):
        merkle.canonical_json({"tags": {"a"}})
    with pytest.raises(ValueError, match="surrogates not allowed"):
        merkle.canonical_json({"name": "\ud800"})


# --- checkpoints --------------------------------------------------------------------------


def test_checkpoint_body_is_canonical_json_of_size_root_and_time():
    root = bytes(range(32))
    body = merkle.checkpoint_body(5, root, TIMESTAMP)
    assert body == (
        b'{"root_hash":"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",'
        b'"timestamp":"2026-03-01T12:00:00Z","tree_size":5}'
    )
    assert merkle.checkpoint_body(5, root.hex().upper(), TIMESTAMP) == body
    with pytest.raises(ValueError, match="non-negative integer"):
        merkle.checkpoint_body(-1, root, TIMESTAMP)
    with pytest.raises(ValueError, match="32 bytes or 64 hex digits"):
        merkle.checkpoint_body(5, root[:31], TIMESTAMP)


def test_checkpoint_signature_verifies_and_any_changed_byte_fails():
    key = Ed25519PrivateKey.generate()
    public_pem = key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    body = merkle.checkpoint_body(33, ROOTS[33], TIMESTAMP)
    signature = merkle.sign_checkpoint(key, body)
    assert len(signature) == 64
    assert merkle.export_public_key_pem(key) == public_pem
    assert merkle.verify_checkpoint(public_pem, body, signature)
    assert merkle.verify_checkpoint(public_pem.decode(), body, signature)
    for position in range(len(body)):
        assert not merkle.verify_checkpoint(public_pem, flipped(body, position), signature)
    for position in range(len(signature)):
        assert not merkle.verify_checkpoint(public_pem, body, flipped(signature, position))
    other_pem = merkle.export_public_key_pem(Ed25519PrivateKey.generate())
    assert not merkle.verify_checkpoint(other_pem, body, signature)


def test_checkpoint_key_may_be_pem_or_raw_bytes():
    key = Ed25519PrivateKey.generate()
    body = merkle.checkpoint_body(1, ROOTS[1], TIMESTAMP)
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    raw = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    # Ed25519 signatures are deterministic (RFC 8032), so every form signs identically.
    assert merkle.sign_checkpoint(pem, body) == merkle.sign_checkpoint(raw, body)
    assert merkle.sign_checkpoint(pem.decode(), body) == merkle.sign_checkpoint(key, body)
    with pytest.raises(ValueError, match="Ed25519 private key"):
        merkle.sign_checkpoint(b"too short", body)
    x25519_pem = (
        X25519PrivateKey.generate().public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(ValueError, match="must be an Ed25519 public key"):
        merkle.verify_checkpoint(x25519_pem, body, bytes(64))


def test_merkle_file_imports_only_the_standard_library_at_module_level():
    tree = ast.parse(MERKLE_SOURCE.read_text())
    top_level = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            top_level |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            top_level.add((node.module or "").split(".")[0])
    assert top_level - {"__future__"} <= sys.stdlib_module_names
    # And importing it loads no cryptography until a signature is made or checked.
    script = (
        "import sys; sys.path.insert(0, sys.argv[1]); import merkle; "
        "merkle.root([merkle.leaf_hash(b'x')]); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'cryptography'))"
    )
    result = subprocess.run(  # noqa: S603 - our own interpreter running a fixed script
        [sys.executable, "-I", "-c", script, str(MERKLE_SOURCE.parent)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout == "[]\n"


# --- finding the first bad leaf (audit_verify) --------------------------------------------

LOG_SIZE = 40
CHECKPOINT_SIZES = (4, 9, 16, 25, 33)
LOG = leaf_hashes(LOG_SIZE, tag="log")
SIGNED = [(size, naive_mth(LOG[:size])) for size in CHECKPOINT_SIZES]
FORGED = merkle.leaf_hash(b"forged")


def test_untouched_log_has_no_mismatch():
    assert merkle.find_first_mismatch(LOG, SIGNED, stored_leaf_hashes=LOG) is None
    assert merkle.find_first_mismatch(LOG, SIGNED) is None
    assert merkle.find_first_mismatch(LOG[:33], SIGNED, stored_leaf_hashes=LOG[:33]) is None
    assert merkle.find_first_mismatch([], [], stored_leaf_hashes=[]) is None


def test_first_mismatch_names_a_modified_leaf_exactly():
    for index in range(LOG_SIZE):
        tampered = [*LOG[:index], FORGED, *LOG[index + 1 :]]
        signed_after = next((size for size in CHECKPOINT_SIZES if size > index), None)
        assert merkle.find_first_mismatch(tampered, SIGNED, stored_leaf_hashes=LOG) == merkle.Mismatch(
            "leaf", index, index + 1, signed_after
        )


def test_first_mismatch_names_a_deleted_leaf_exactly():
    for index in range(LOG_SIZE):
        shifted = [*LOG[:index], *LOG[index + 1 :]]
        found = merkle.find_first_mismatch(shifted, SIGNED, stored_leaf_hashes=LOG)
        assert (found.kind, found.leaf_index, found.end_index) == (
            "leaf" if index < LOG_SIZE - 1 else "missing tail",
            index,
            index + 1,
        )


def test_first_mismatch_names_an_inserted_leaf_exactly():
    for index in range(LOG_SIZE + 1):
        inserted = [*LOG[:index], FORGED, *LOG[index:]]
        found = merkle.find_first_mismatch(inserted, SIGNED, stored_leaf_hashes=LOG)
        assert (found.kind, found.leaf_index, found.end_index) == ("leaf", index, index + 1)


def test_first_mismatch_names_a_truncated_tail():
    for kept in range(33):
        found = merkle.find_first_mismatch(LOG[:kept], SIGNED, stored_leaf_hashes=LOG)
        signed_after = next(size for size in CHECKPOINT_SIZES if size > kept)
        assert found == merkle.Mismatch("missing tail", kept, kept + 1, signed_after)
    # Leaves after the last checkpoint are missing only from the sequencer's record.
    assert merkle.find_first_mismatch(LOG[:36], SIGNED, stored_leaf_hashes=LOG) == merkle.Mismatch(
        "missing tail", 36, 37, None
    )
    assert str(merkle.find_first_mismatch(LOG[:30], SIGNED, stored_leaf_hashes=LOG)) == (
        "missing tail: leaves from index 30 are gone (checkpoint at tree size 33 fails)"
    )


def test_first_mismatch_with_roots_only_brackets_the_bad_leaf_between_checkpoints():
    tampered = [*LOG[:11], FORGED, *LOG[12:]]
    found = merkle.find_first_mismatch(tampered, SIGNED)
    assert found == merkle.Mismatch("leaf", 9, 16, 16)
    assert not found.is_exact
    assert str(found) == (
        "first bad leaf index is in [9, 16) (checkpoint at tree size 16 fails; "
        "only stored leaf hashes pinpoint it)"
    )
    assert merkle.find_first_mismatch(LOG[:30], SIGNED) == merkle.Mismatch("missing tail", 25, 31, 33)
    assert merkle.find_first_mismatch(LOG[:25], SIGNED) == merkle.Mismatch("missing tail", 25, 26, 33)
    # A checkpoint at every size pinpoints the leaf even without stored hashes.
    every_size = [(size, naive_mth(LOG[:size])) for size in range(1, LOG_SIZE + 1)]
    assert merkle.find_first_mismatch(tampered, every_size) == merkle.Mismatch("leaf", 11, 12, 12)


def test_first_mismatch_when_the_stored_hash_was_altered_too():
    # Event 11 and its stored hash rewritten together: the stored copy no longer reproduces the
    # checkpoint at 16, so only the roots speak, and they bracket the leaf.
    tampered = [*LOG[:11], FORGED, *LOG[12:]]
    assert merkle.find_first_mismatch(tampered, SIGNED, stored_leaf_hashes=tampered) == merkle.Mismatch(
        "leaf", 9, 16, 16
    )


def test_first_mismatch_reports_an_altered_stored_hash_when_the_events_are_intact():
    stored = [*LOG[:7], FORGED, *LOG[8:]]
    found = merkle.find_first_mismatch(LOG, SIGNED, stored_leaf_hashes=stored)
    assert found == merkle.Mismatch("stored hash", 7, 8, None)
    assert str(found) == "stored leaf hash 7 was altered; the events match every checkpoint"


def test_first_mismatch_after_the_last_checkpoint_uses_the_stored_hashes():
    tampered = [*LOG[:35], FORGED, *LOG[36:]]
    found = merkle.find_first_mismatch(tampered, SIGNED, stored_leaf_hashes=LOG)
    assert found == merkle.Mismatch("leaf", 35, 36, None)
    assert str(found) == (
        "first bad leaf index 35 (not yet covered by a checkpoint; differs from the stored leaf hashes)"
    )
    assert merkle.find_first_mismatch(tampered, SIGNED) is None


def test_first_mismatch_accepts_checkpoint_mappings_in_any_order():
    tampered = [*LOG[:20], FORGED, *LOG[21:]]
    mappings = [{"tree_size": size, "root_hash": root.hex()} for size, root in reversed(SIGNED)]
    found = merkle.find_first_mismatch(tampered, mappings, stored_leaf_hashes=LOG)
    assert found == merkle.Mismatch("leaf", 20, 21, 25)
    assert str(found) == "first bad leaf index 20 (checkpoint at tree size 25 fails)"
    with pytest.raises(ValueError, match="32 bytes or 64 hex digits"):
        merkle.find_first_mismatch(LOG, [(4, "abcd")])


# --- erasable personal details ------------------------------------------------------------

SALT = bytes(range(32))


def test_leaf_object_replaces_personal_details_with_a_salted_commitment():
    event = {"action": "model_version.promote", "actor_label": "ana", "actor_email": "ana@example.org"}
    personal = {"actor_label": "ana", "actor_email": "ana@example.org"}
    leaf = merkle.leaf_object(event, personal, SALT)
    commitment = hashlib.sha256(SALT + merkle.canonical_json(personal)).hexdigest()
    assert leaf == {"action": "model_version.promote", "personal_commitment": commitment}
    assert merkle.verify_personal_commitment(leaf, personal, SALT)
    assert not merkle.verify_personal_commitment(leaf, personal, bytes(32))
    assert not merkle.verify_personal_commitment(leaf, {**personal, "actor_label": "bob"}, SALT)
    assert not merkle.verify_personal_commitment({"action": "x"}, personal, SALT)


def test_erasing_personal_details_leaves_the_tree_verifiable():
    personal_rows = {i: ({"user": f"user{i}"}, merkle.new_salt()) for i in range(6)}
    leaves = [merkle.leaf_object({"n": i}, *personal_rows[i]) for i in range(6)]
    hashes = [merkle.leaf_hash(merkle.canonical_json(leaf)) for leaf in leaves]
    root = merkle.root(hashes)
    del personal_rows[3]  # the person behind event 3 asks to be forgotten
    assert merkle.root([merkle.leaf_hash(merkle.canonical_json(leaf)) for leaf in leaves]) == root
    proof = merkle.inclusion_proof(3, hashes)
    assert merkle.verify_inclusion(3, 6, merkle.leaf_hash(merkle.canonical_json(leaves[3])), proof, root)
    assert all(merkle.verify_personal_commitment(leaves[i], *personal_rows[i]) for i in personal_rows)


def test_leaf_object_refuses_a_short_salt_or_a_clashing_key():
    with pytest.raises(ValueError, match="32 random bytes"):
        merkle.leaf_object({"n": 1}, {"user": "ana"}, b"short")
    with pytest.raises(ValueError, match="may not contain 'personal_commitment'"):
        merkle.leaf_object({"personal_commitment": "x"}, {}, SALT)


# --- the auditors' offline verifier -------------------------------------------------------

BUNDLE_LEAVES = [3, 7, 8, 20]


def write_bundle(tmp_path: Path) -> tuple[Path, Path, dict]:
    """A 21-event log, a signed checkpoint and four of its events, as the export writes them."""
    leaves = [
        merkle.leaf_object(
            {"leaf_index": i, "action": "dataset_version.register", "object_id": str(i), "team": 2},
            {"actor_label": f"user{i % 3}"},
            hashlib.sha256(f"salt {i}".encode()).digest(),
        )
        for i in range(21)
    ]
    tree = merkle.MerkleTree(merkle.leaf_hash(merkle.canonical_json(leaf)) for leaf in leaves)
    key = Ed25519PrivateKey.generate()
    body = merkle.checkpoint_body(tree.size, tree.root(), TIMESTAMP)
    bundle = {
        "public_key_pem": merkle.export_public_key_pem(key).decode(),
        "checkpoint": {
            "tree_size": tree.size,
            "root_hash": tree.root().hex(),
            "timestamp": TIMESTAMP,
            "signature": base64.b64encode(merkle.sign_checkpoint(key, body)).decode(),
        },
        "events": [
            {
                "leaf_index": i,
                "leaf": leaves[i],
                "proof": [step.hex() for step in tree.inclusion_proof(i)],
            }
            for i in BUNDLE_LEAVES
        ],
    }
    # The auditor gets the verifier as a lone file, away from the project.
    verifier = tmp_path / "merkle.py"
    shutil.copy(MERKLE_SOURCE, verifier)
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(bundle, ensure_ascii=False, indent=2))
    return verifier, path, bundle


def run_verifier(verifier: Path, bundle: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own interpreter running the file under test
        [sys.executable, "-I", str(verifier), "verify", str(bundle)],
        capture_output=True,
        text=True,
        cwd=verifier.parent,
        check=False,
    )


def test_offline_verifier_accepts_an_intact_bundle_then_names_the_tampered_leaf(tmp_path):
    verifier, path, bundle = write_bundle(tmp_path)
    header = [
        f"public key: sha256 {merkle.public_key_id(bundle['public_key_pem'])} "
        "(the bundle's own; pin it with --public-key)",
        f"checkpoint: tree_size=21 root_hash={bundle['checkpoint']['root_hash']} "
        f"timestamp={TIMESTAMP} signature valid",
        "scope: not stated (no filters field): proves these events, not that the log is complete",
    ]

    intact = run_verifier(verifier, path)
    assert intact.returncode == 0, intact.stderr
    assert intact.stdout.splitlines() == [
        *header,
        "leaf 3: ok",
        "leaf 7: ok",
        "leaf 8: ok",
        "leaf 20: ok",
        "OK: 4 of 4 events verified",
    ]

    bundle["events"][1]["leaf"]["object_id"] = "70"
    path.write_text(json.dumps(bundle))
    tampered = run_verifier(verifier, path)
    assert tampered.returncode == 1
    assert tampered.stdout.splitlines() == [
        *header,
        "leaf 3: ok",
        "leaf 7: FAILED: inclusion proof does not reach the checkpoint root",
        "leaf 8: ok",
        "leaf 20: ok",
        "FAILED: first failing leaf index 7 (1 of 4 events failed)",
    ]


def test_offline_verifier_fails_a_forged_checkpoint(tmp_path):
    verifier, path, bundle = write_bundle(tmp_path)
    bundle["checkpoint"]["timestamp"] = "2026-03-02T12:00:00Z"
    path.write_text(json.dumps(bundle))
    result = run_verifier(verifier, path)
    assert result.returncode == 1
    assert result.stdout.splitlines()[1].endswith("signature INVALID (does not match the public key)")
    assert result.stdout.splitlines()[-1] == "FAILED: the checkpoint signature is invalid"


def _resign(bundle: dict, key: Ed25519PrivateKey) -> None:
    """What a forger with database access does: sign the checkpoint again with a key of their own
    and put its public half in the bundle."""
    checkpoint = bundle["checkpoint"]
    body = merkle.checkpoint_body(
        checkpoint["tree_size"], bytes.fromhex(checkpoint["root_hash"]), checkpoint["timestamp"]
    )
    checkpoint["signature"] = base64.b64encode(merkle.sign_checkpoint(key, body)).decode()
    bundle["public_key_pem"] = merkle.export_public_key_pem(key).decode()


def test_a_pinned_public_key_fails_a_bundle_re_signed_with_another_key(tmp_path):
    verifier, path, bundle = write_bundle(tmp_path)
    pinned = tmp_path / "pinned.pem"
    pinned.write_text(bundle["public_key_pem"])
    genuine = subprocess.run(  # noqa: S603 - our own interpreter running the file under test
        [sys.executable, "-I", str(verifier), "verify", "--public-key", str(pinned), str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    _resign(bundle, Ed25519PrivateKey.generate())
    path.write_text(json.dumps(bundle))

    forged = subprocess.run(  # noqa: S603
        [sys.executable, "-I", str(verifier), "verify", "--public-key", str(pinned), str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    unpinned = merkle.verify_bundle(bundle)

    assert genuine.returncode == 0, genuine.stdout
    assert genuine.stdout.splitlines()[0].endswith("(pinned with --public-key)")
    assert forged.returncode == 1
    assert forged.stdout.splitlines()[-1] == "FAILED: the checkpoint signature is invalid"
    # Unpinned, the forged bundle verifies against its own key, whose id differs from the real one.
    assert unpinned.is_verified
    assert unpinned.key_id != merkle.public_key_id(pinned.read_text())


def test_a_checkpoint_naming_another_key_fails(tmp_path):
    _, _, bundle = write_bundle(tmp_path)
    bundle["checkpoint"]["key_id"] = "ab" * 32

    report = merkle.verify_bundle(bundle)

    assert (report.is_signature_valid, report.signature_detail) == (
        False,
        f"the checkpoint names key {'ab' * 32}, not this one",
    )


def test_a_bundle_of_the_whole_log_must_list_every_leaf_once(tmp_path):
    _, _, bundle = write_bundle(tmp_path)
    bundle["filters"] = {}
    report_partial = merkle.verify_bundle(bundle)
    bundle["filters"] = {"action": "dataset_version.register"}
    report_filtered = merkle.verify_bundle(bundle)
    bundle["events"].append(dict(bundle["events"][0]))
    report_repeated = merkle.verify_bundle(bundle)

    assert report_partial.lines()[-1] == (
        "FAILED: 17 leaves of the unfiltered log are missing from the bundle: "
        "0, 1, 2, 4, 5, 6, 9, 10, 11, 12 and 7 more"
    )
    assert report_filtered.is_verified
    assert "filtered by action=dataset_version.register" in report_filtered.lines()[2]
    assert report_repeated.lines()[-1] == "FAILED: leaf indexes listed twice: 3"


def test_complete_refuses_a_bundle_whose_filters_were_edited_to_skip_the_completeness_check(tmp_path):
    _, _, bundle = write_bundle(tmp_path)

    edited = {key: value for key, value in bundle.items() if key != "filters"}
    without_flag = merkle.verify_bundle(edited)
    with_flag = merkle.verify_bundle(edited, require_complete=True)

    assert without_flag.is_verified
    assert with_flag.lines()[-1] == (
        "FAILED: the bundle does not claim the whole log (it has filters), and --complete asks for it"
    )


def test_offline_verifier_reports_a_malformed_event_and_refuses_an_unreadable_bundle(tmp_path):
    verifier, path, bundle = write_bundle(tmp_path)
    bundle["events"][2]["leaf_index"] = "8"
    report = merkle.verify_bundle(bundle)
    assert [event.line() for event in report.events][2] == "event #2: FAILED: leaf_index is not an integer"
    assert report.lines()[-1] == "FAILED: first failing event #2 (1 of 4 events failed)"

    path.write_text(json.dumps(bundle).replace('"team": 2', '"team": NaN', 1))
    result = run_verifier(verifier, path)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == f"cannot verify {path}: NaN is not JSON\n"
