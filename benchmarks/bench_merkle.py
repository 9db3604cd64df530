"""Figures for the audit log's Merkle tree at one million events, against issue 3's goals.

    .venv/bin/python benchmarks/bench_merkle.py [--leaves 1000000] [--proofs 1000]

Goals (issue 3): ``audit_verify`` over 1M events <= 10 s; inclusion proof generation <= 5 ms.
The verify figure covers the pure part of ``audit_verify``: canonical JSON and leaf hashes of
every event, then ``find_first_mismatch`` against signed roots and stored leaf hashes. Reading
the rows from PostgreSQL comes on top and is measured with the app's benchmark. Loads
``governance/merkle.py`` by path, as an auditor would, so no Django is involved.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

GOAL_VERIFY_S = 10.0
GOAL_PROOF_MS = 5.0
CHUNK = 50_000


def load_merkle() -> ModuleType:
    path = Path(__file__).resolve().parent.parent / "governance" / "merkle.py"
    spec = importlib.util.spec_from_file_location("merkle", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["merkle"] = module  # dataclasses look their module up while the file executes
    spec.loader.exec_module(module)
    return module


def event_leaves(start: int, stop: int, salt: bytes) -> list[dict]:
    """Leaf objects shaped like the app's: about 200 bytes of canonical JSON each."""
    return [
        {
            "action": "model_version.register",
            "leaf_index": i,
            "object_id": str(i // 3),
            "personal_commitment": hashlib.sha256(salt + i.to_bytes(8, "big")).hexdigest(),
            "team": i % 17,
            "timestamp": f"2026-03-01T12:{i // 60 % 60:02d}:{i % 60:02d}Z",
        }
        for i in range(start, stop)
    ]


def seconds(action: Callable[[], object]) -> tuple[float, object]:
    started = time.perf_counter()
    result = action()
    return time.perf_counter() - started, result


def median_ms(action: Callable[[int], object], indexes: list[int]) -> float:
    timings = []
    for index in indexes:
        started = time.perf_counter_ns()
        action(index)
        timings.append(time.perf_counter_ns() - started)
    return statistics.median(timings) / 1e6


def hash_every_leaf(merkle: ModuleType, n: int, salt: bytes) -> tuple[list[bytes], float]:
    """Step 1: recompute every leaf hash from canonical JSON (objects built outside the timing).
    Returns the hashes and the seconds spent."""
    hashing_s, json_bytes = 0.0, 0
    hashes: list[bytes] = []
    for start in range(0, n, CHUNK):
        leaves = event_leaves(start, min(start + CHUNK, n), salt)
        started = time.perf_counter()
        encoded = [merkle.canonical_json(leaf) for leaf in leaves]
        hashes += [merkle.leaf_hash(data) for data in encoded]
        hashing_s += time.perf_counter() - started
        json_bytes += sum(map(len, encoded))
    print(f"  canonical JSON + leaf hash  {hashing_s:8.3f} s   ({json_bytes / n:.0f} bytes of JSON a leaf)")
    return hashes, hashing_s


def build_trees(
    merkle: ModuleType, hashes: list[bytes]
) -> tuple[bytes, object, dict[tuple[int, int], bytes]]:
    """Step 2: roots three ways, and the trees that serve proofs. Returns the root, the
    in-memory ``MerkleTree`` and the sequencer's node table ``{(level, index): hash}``."""
    n = len(hashes)
    root_s, root = seconds(lambda: merkle.root(hashes))
    frontier = merkle.CompactRange()
    extend_s, _ = seconds(lambda: frontier.extend(hashes))
    assert frontier.root() == root
    tree_s, tree = seconds(lambda: merkle.MerkleTree(hashes))
    print(f"  root() over all leaf hashes {root_s:8.3f} s")
    print(f"  CompactRange.extend         {extend_s:8.3f} s")
    print(f"  MerkleTree (all nodes)      {tree_s:8.3f} s")

    sequencer = merkle.CompactRange()
    node_table: dict[tuple[int, int], bytes] = {}

    def sequence_all() -> None:
        for leaf in hashes:
            for level, index, value in sequencer.append(leaf):
                node_table[(level, index)] = value

    sequence_s, _ = seconds(sequence_all)
    assert sequencer.root() == root
    print(
        f"  sequencer, append each leaf {sequence_s:7.3f} s   "
        f"({n / sequence_s:,.0f} leaves/s, {len(node_table):,} nodes to store)"
    )
    return root, tree, node_table


def find_mismatches(merkle: ModuleType, hashes: list[bytes], every: int, rng: random.Random) -> float:
    """Step 3: audit_verify's pure core, signed roots every ``every`` leaves plus the stored leaf
    hashes; an intact log, then one tampered leaf found exactly. Returns the intact run's seconds."""
    n = len(hashes)
    checkpoints = []
    prefix = merkle.CompactRange()
    for size in range(every, n + 1, every):
        prefix.extend(hashes[prefix.size : size])
        checkpoints.append((size, prefix.root()))
    stored = list(hashes)
    check_s, found = seconds(lambda: merkle.find_first_mismatch(hashes, checkpoints, stored))
    assert found is None
    bad = rng.randrange(n)
    tampered = list(hashes)
    tampered[bad] = merkle.leaf_hash(b"tampered")
    locate_s, found = seconds(lambda: merkle.find_first_mismatch(tampered, checkpoints, stored))
    assert (found.leaf_index, found.is_exact) == (bad, True)
    print(f"  find_first_mismatch, ok    {check_s:8.3f} s   ({len(checkpoints):,} checkpoints)")
    print(f"  find_first_mismatch, bad   {locate_s:8.3f} s   -> {found}")
    return check_s


def time_proofs(
    merkle, hashes, root, tree, node_table, count: int, rng: random.Random
) -> tuple[float, float, float]:
    """Step 4: proofs at full size, from the in-memory tree and from a node table (dict lookups).
    Returns the median milliseconds of (tree proof, node-table proof, verification)."""
    n = len(hashes)
    indexes = [rng.randrange(n) for _ in range(count)]
    proofs = {i: tree.inclusion_proof(i) for i in indexes}
    tree_proof_ms = median_ms(tree.inclusion_proof, indexes)

    def from_table(index: int) -> list[bytes]:
        plan = merkle.inclusion_plan(index, n)
        return merkle.proof_from_plan(plan, lambda level, i: node_table[(level, i)])

    assert all(from_table(i) == proofs[i] for i in indexes[:50])
    table_proof_ms = median_ms(from_table, indexes)
    verify_ms = median_ms(lambda i: merkle.verify_inclusion(i, n, hashes[i], proofs[i], root), indexes)
    olds = [rng.randrange(1, n) for _ in range(count)]
    consistency_ms = median_ms(tree.consistency_proof, olds)
    print(f"  inclusion proof, MerkleTree {tree_proof_ms:8.4f} ms  (median of {len(indexes):,})")
    print(f"  inclusion proof, node table {table_proof_ms:8.4f} ms")
    print(f"  inclusion proof, verify     {verify_ms:8.4f} ms")
    print(f"  consistency proof           {consistency_ms:8.4f} ms")
    return tree_proof_ms, table_proof_ms, verify_ms


def report_goals(
    n: int, verify_s: float, tree_proof_ms: float, table_proof_ms: float, verify_ms: float
) -> None:
    print("Against the goals (measured / goal; below 1 meets it):")
    print(
        f"  audit_verify core over {n:,} events: {verify_s:.2f} s / {GOAL_VERIFY_S:.0f} s"
        f" = {verify_s / GOAL_VERIFY_S:.3f}  (database reads not included)"
    )
    print(
        f"  inclusion proof generation (node table): {table_proof_ms:.4f} ms / {GOAL_PROOF_MS:.0f} ms"
        f" = {table_proof_ms / GOAL_PROOF_MS:.4f}"
    )
    print(
        f"  inclusion proof generation (MerkleTree): {tree_proof_ms:.4f} ms / {GOAL_PROOF_MS:.0f} ms"
        f" = {tree_proof_ms / GOAL_PROOF_MS:.4f}"
    )
    print(
        f"  inclusion proof verification:            {verify_ms:.4f} ms / {GOAL_PROOF_MS:.0f} ms"
        f" = {verify_ms / GOAL_PROOF_MS:.4f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leaves", type=int, default=1_000_000)
    parser.add_argument("--proofs", type=int, default=1_000)
    parser.add_argument("--checkpoint-every", type=int, default=1_000)
    args = parser.parse_args()
    merkle = load_merkle()
    n = args.leaves
    rng = random.Random(6962)
    print(f"Merkle benchmark: {n:,} leaves, Python {sys.version.split()[0]}")

    hashes, hashing_s = hash_every_leaf(merkle, n, salt=b"bench")
    root, tree, node_table = build_trees(merkle, hashes)
    check_s = find_mismatches(merkle, hashes, args.checkpoint_every, rng)
    tree_proof_ms, table_proof_ms, verify_ms = time_proofs(
        merkle, hashes, root, tree, node_table, args.proofs, rng
    )
    report_goals(n, hashing_s + check_s, tree_proof_ms, table_proof_ms, verify_ms)


if __name__ == "__main__":
    main()
