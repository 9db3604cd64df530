"""The audit log's Merkle tree (RFC 6962 / RFC 9162), canonical JSON and checkpoints, checked against
published vectors and a naive RFC implementation (finding a bad leaf: test_merkle_verifier.py)."""

from __future__ import annotations

import ast
import hashlib
import json
import subprocess
import sys

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
from tests.governance.merkle_helpers import (
    MERKLE_SOURCE,
    TIMESTAMP,
    flipped,
    leaf_hashes,
    naive_consistency,
    naive_mth,
    naive_path,
)

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
