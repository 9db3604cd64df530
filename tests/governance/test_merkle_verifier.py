"""Verifying the audit log with the Merkle tree: the first bad leaf (audit_verify), erasable personal
details that keep the tree verifiable, and the auditors' offline verifier run on a bundle."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from governance import merkle
from tests.governance.merkle_helpers import MERKLE_SOURCE, TIMESTAMP, leaf_hashes, naive_mth

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
