"""The audit tree over the API: proofs, checkpoints, consistency, the public key, exports, and
an exported bundle verified offline by the downloaded verifier."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from governance import audit_tree, merkle
from governance.actions.registry import do_create_dataset
from governance.models import AuditCheckpoint, AuditEvent
from tests.governance.audit_helpers import grow_log, raw_sql

TREE_URLS = [
    "/api/audit/checkpoints/",
    "/api/audit/checkpoints/5/",
    "/api/audit/consistency/?first=5&second=9",
    "/api/audit-events/export.json",
]


@pytest.fixture
def log(team, admin, compliance_officer) -> list[AuditEvent]:
    """Twelve events in checkpoints of 5, 9 and 12, in leaf order: the team, the officer's
    platform role, then ten datasets."""
    grow_log(team, admin, [5, 9, 12])
    return list(AuditEvent.objects.order_by("leaf__leaf_index"))


def _body(response) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content


# Proofs ---------------------------------------------------------------------------------------


def test_a_proof_is_the_leaf_its_path_and_the_signed_checkpoint(
    log, client_for, fresh, compliance_officer, django_assert_num_queries
):
    client = client_for(fresh(compliance_officer))
    event = log[6]

    # 1 platform roles, 2 the event with its leaf and salt, 3 the latest checkpoint, 4 the nodes
    with django_assert_num_queries(4):
        response = client.get(f"/api/audit-events/{event.pk}/proof/")

    assert response.status_code == 200
    body = response.json()
    checkpoint = AuditCheckpoint.objects.get(tree_size=12)
    event = AuditEvent.objects.get(pk=event.pk)
    leaf = audit_tree.leaf_for(event, bytes.fromhex(event.personal_data.salt))
    leaf_hash = merkle.leaf_hash(merkle.canonical_json(leaf))
    assert body == {
        "leaf_index": 6,
        "leaf": leaf,
        "leaf_hash": leaf_hash.hex(),
        "proof": [step.hex() for step in audit_tree.stored_inclusion_proof(6, 12)],
        "checkpoint": {
            "tree_size": 12,
            "root_hash": checkpoint.root_hash,
            "timestamp": audit_tree.iso_timestamp(checkpoint.timestamp),
            "signature": checkpoint.signature,
            "key_id": audit_tree.signing_key().key_id,
        },
        "personal_data_erased": False,
        "verification": {"status": "verified", "detail": ""},
    }
    assert merkle.verify_inclusion(
        6, 12, leaf_hash, [bytes.fromhex(p) for p in body["proof"]], bytes.fromhex(checkpoint.root_hash)
    )
    public_key = client.get("/api/audit/public-key/").content
    signed = merkle.checkpoint_body(12, checkpoint.root_hash, body["checkpoint"]["timestamp"])
    assert merkle.verify_checkpoint(public_key, signed, base64.b64decode(body["checkpoint"]["signature"]))


def test_an_unsequenced_event_has_no_proof_yet(log, team, admin, client_for, compliance_officer):
    dataset = do_create_dataset(team=team, name="fresh", actor=admin)
    event = AuditEvent.objects.get(action="dataset.create", object_id=str(dataset.pk))

    response = client_for(compliance_officer).get(f"/api/audit-events/{event.pk}/proof/")

    assert (response.status_code, response.json()) == (
        409,
        {"detail": "this event is not sequenced yet; the sequencer gives it a leaf within seconds"},
    )


@pytest.mark.parametrize("persona", ["owner", "scientist", "viewer", "outsider"])
def test_the_tree_is_for_compliance_officers_and_admins_only(request, log, client_for, persona):
    client = client_for(request.getfixturevalue(persona))
    visible = log[-1]  # a Mobility dataset: every persona but the outsider may see the event

    answers = {
        url: client.get(url).status_code for url in [*TREE_URLS, f"/api/audit-events/{visible.pk}/proof/"]
    }

    assert set(answers.values()) == {403}
    assert client.get(f"/api/audit-events/{visible.pk}/").status_code == (
        404 if persona == "outsider" else 200
    )


@pytest.mark.parametrize("persona", ["admin", "compliance_officer"])
def test_auditors_read_the_tree(request, log, client_for, persona):
    client = client_for(request.getfixturevalue(persona))

    assert [client.get(url).status_code for url in TREE_URLS] == [200, 200, 200, 200]


# Checkpoints and consistency ------------------------------------------------------------------


def test_checkpoints_are_listed_largest_first(log, client_for, compliance_officer):
    body = client_for(compliance_officer).get("/api/audit/checkpoints/").json()

    assert [row["tree_size"] for row in body["results"]] == [12, 9, 5]
    assert body["results"][2] == audit_tree.checkpoint_json(AuditCheckpoint.objects.get(tree_size=5))
    assert (body["next"], body["previous"]) == (None, None)
    one = client_for(compliance_officer).get("/api/audit/checkpoints/9/").json()
    assert one == audit_tree.checkpoint_json(AuditCheckpoint.objects.get(tree_size=9))


def test_a_consistency_proof_links_two_checkpoints(log, client_for, compliance_officer):
    client = client_for(compliance_officer)

    body = client.get("/api/audit/consistency/", {"first": 5, "second": 12}).json()

    first, second = (AuditCheckpoint.objects.get(tree_size=size) for size in (5, 12))
    assert body["first"] == audit_tree.checkpoint_json(first)
    assert body["second"] == audit_tree.checkpoint_json(second)
    assert merkle.verify_consistency(
        5,
        12,
        bytes.fromhex(first.root_hash),
        bytes.fromhex(second.root_hash),
        [bytes.fromhex(step) for step in body["proof"]],
    )
    assert [
        (response.status_code, response.json())
        for response in (
            client.get("/api/audit/consistency/", {"first": 9, "second": 5}),
            client.get("/api/audit/consistency/", {"first": 5}),
            client.get("/api/audit/consistency/", {"first": 6, "second": 12}),
        )
    ] == [
        (400, {"non_field_errors": ["first must not be larger than second"]}),
        (400, {"second": ["This field is required."]}),
        (404, {"detail": "no checkpoint at tree size 6"}),
    ]


# Public key and verifier ----------------------------------------------------------------------


def test_the_public_key_is_published_without_login(api, db):
    response = api.get("/api/audit/public-key/")

    key = audit_tree.signing_key()
    assert response.status_code == 200
    assert response["Content-Type"] == "application/x-pem-file"
    assert response.content.decode() == key.public_key_pem
    assert response["X-Audit-Key-Id"] == key.key_id


def test_the_verifier_is_merkle_py_without_login(api, db):
    response = api.get("/api/audit/verifier.py")

    source = Path(merkle.__file__).read_bytes()
    assert response.status_code == 200
    assert _body(response) == source
    assert response["Content-Disposition"] == 'attachment; filename="merkle.py"'
    assert response["X-Verifier-SHA256"] == hashlib.sha256(source).hexdigest()


# The list -------------------------------------------------------------------------------------


def test_the_event_list_is_cursor_paginated_in_constant_queries(
    team, admin, compliance_officer, client_for, fresh, django_assert_num_queries
):
    for number in range(60):
        do_create_dataset(team=team, name=f"d{number:02}", actor=admin)
    everything = list(AuditEvent.objects.order_by("-timestamp", "-id").values_list("id", flat=True))

    clients = [client_for(fresh(compliance_officer)) for _ in range(2)]

    # 1 platform roles (compliance officer: every team), 2 the page (no COUNT)
    with django_assert_num_queries(2):
        first = clients[0].get("/api/audit-events/").json()
    with django_assert_num_queries(2):
        second = clients[1].get(first["next"]).json()

    assert len(everything) == 62
    assert [row["id"] for row in first["results"] + second["results"]] == everything
    assert (len(first["results"]), second["next"]) == (50, None)
    assert set(first) == {"next", "previous", "results"}


# Exports --------------------------------------------------------------------------------------


def test_the_csv_export_neutralises_formulas_and_follows_filters(team, admin, compliance_officer, client_for):
    for name in ["=1+2", "+cmd", "-2", "@SUM(A1)", "plain"]:
        do_create_dataset(team=team, name=name, actor=admin)

    response = client_for(compliance_officer).get("/api/audit-events/export.csv", {"action": "dataset."})

    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="audit-')
    rows = list(csv.DictReader(io.StringIO(_body(response).decode())))
    assert [row["object"] for row in rows] == ["plain", "'@SUM(A1)", "'-2", "'+cmd", "'=1+2"]
    assert {(row["actor"], row["action"], row["team"], row["leaf_index"]) for row in rows} == {
        ("admin", "dataset.create", "Mobility", "")
    }
    assert json.loads(rows[-1]["after"])["name"] == "=1+2"
    assert list(rows[0]) == [
        "id",
        "timestamp",
        "actor",
        "on_behalf_of",
        "action",
        "object_type",
        "object_id",
        "object",
        "team",
        "request_id",
        "task_id",
        "before",
        "after",
        "leaf_index",
    ]


def test_the_csv_export_holds_only_what_the_user_may_see(world, client_for, outsider):
    response = client_for(outsider).get("/api/audit-events/export.csv")

    ids = [int(row["id"]) for row in csv.DictReader(io.StringIO(_body(response).decode()))]
    assert ids == list(
        AuditEvent.objects.restrict(outsider).order_by("-timestamp", "-id").values_list("id", flat=True)
    )
    assert set(AuditEvent.objects.filter(pk__in=ids).values_list("team", flat=True)) == {world.other_team.pk}


def _run_verifier(tmp_path: Path, client, bundle: dict, *options: str) -> subprocess.CompletedProcess[str]:
    verifier = tmp_path / "merkle.py"
    verifier.write_bytes(_body(client.get("/api/audit/verifier.py")))
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(bundle))
    return subprocess.run(  # noqa: S603 - our own interpreter running the downloaded verifier
        [sys.executable, "-I", str(verifier), "verify", *options, str(path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )


def test_a_bundle_verifies_offline_and_names_a_tampered_event(
    log, team, admin, client_for, compliance_officer, tmp_path
):
    do_create_dataset(team=team, name="after-the-checkpoint", actor=admin)
    client = client_for(compliance_officer)

    response = client.get("/api/audit-events/export.json", {"action": "dataset."})

    assert response.status_code == 200
    assert response["Content-Disposition"].startswith('attachment; filename="audit-bundle-')
    bundle = json.loads(_body(response))
    checkpoint = AuditCheckpoint.objects.get(tree_size=12)
    datasets = [i for i, event in enumerate(log) if event.action == "dataset.create"]
    assert bundle["format"] == "steward-audit-bundle/1"
    assert bundle["filters"] == {"action": "dataset."}
    assert bundle["checkpoint"] == audit_tree.checkpoint_json(checkpoint)
    assert bundle["public_key_pem"] == audit_tree.signing_key().public_key_pem
    assert bundle["verifier"]["url"] == "http://testserver/api/audit/verifier.py"
    assert "python3 merkle.py verify --public-key steward.pem bundle.json" in bundle["how_to_verify"]
    assert bundle["unsequenced_events_not_included"] == 1
    assert [event["leaf_index"] for event in bundle["events"]] == datasets
    assert len(datasets) == 10
    assert bundle["events"][0]["personal"]["actor_label"] == "admin"

    intact = _run_verifier(tmp_path, client, bundle)
    assert intact.returncode == 0, intact.stderr
    assert intact.stdout.splitlines()[-1] == "OK: 10 of 10 events verified"

    bundle["events"][2]["personal"]["actor_label"] = "mallory"
    bundle["events"][4]["leaf"]["action"] = "dataset.delete"
    tampered = _run_verifier(tmp_path, client, bundle)
    assert tampered.returncode == 1
    lines = tampered.stdout.splitlines()
    assert f"leaf {datasets[2]}: FAILED: personal details do not match the leaf's commitment" in lines
    assert f"leaf {datasets[4]}: FAILED: inclusion proof does not reach the checkpoint root" in lines
    assert lines[-1] == f"FAILED: first failing leaf index {datasets[2]} (2 of 10 events failed)"


def test_a_bundle_still_verifies_after_a_person_is_erased(
    log, admin, client_for, compliance_officer, tmp_path
):
    audit_tree.do_erase_personal_data(admin, actor=admin)
    client = client_for(compliance_officer)

    bundle = json.loads(_body(client.get("/api/audit-events/export.json", {"action": "dataset."})))
    result = _run_verifier(tmp_path, client, bundle)

    assert result.returncode == 0, result.stdout
    assert bundle["events"][0]["personal"] is None
    assert result.stdout.splitlines()[3].endswith(": ok (personal details erased)")
    assert result.stdout.splitlines()[-1] == "OK: 10 of 10 events verified"


def test_a_bundle_needs_a_checkpoint(dataset, client_for, compliance_officer):
    response = client_for(compliance_officer).get("/api/audit-events/export.json")

    assert (response.status_code, response.json()) == (409, {"detail": "nothing is sequenced yet"})


def test_a_row_tampered_in_the_database_fails_the_offline_verifier(
    log, client_for, compliance_officer, tmp_path
):
    client = client_for(compliance_officer)
    with raw_sql() as cursor:
        cursor.execute("UPDATE governance_auditevent SET object_id = '999' WHERE id = %s", [log[7].pk])

    bundle = json.loads(_body(client.get("/api/audit-events/export.json")))
    result = _run_verifier(tmp_path, client, bundle)

    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert "leaf 7: FAILED: inclusion proof does not reach the checkpoint root" in lines
    assert lines[-1] == "FAILED: first failing leaf index 7 (1 of 12 events failed)"


def test_a_whole_log_bundle_with_a_pinned_key_names_an_event_deleted_in_the_database(
    log, client_for, compliance_officer, tmp_path
):
    client = client_for(compliance_officer)
    pinned = tmp_path / "steward.pem"
    pinned.write_bytes(_body(client.get("/api/audit/public-key/")))
    intact_bundle = json.loads(_body(client.get("/api/audit-events/export.json")))
    intact = _run_verifier(tmp_path, client, intact_bundle, "--public-key", str(pinned))
    with raw_sql() as cursor:
        for table, column in (
            ("auditleaf", "event_id"),
            ("auditpersonaldata", "event_id"),
            ("auditevent", "id"),
        ):
            cursor.execute(f"DELETE FROM governance_{table} WHERE {column} = %s", [log[6].pk])  # noqa: S608

    after_bundle = json.loads(_body(client.get("/api/audit-events/export.json")))
    after = _run_verifier(tmp_path, client, after_bundle, "--public-key", str(pinned))

    assert intact_bundle["filters"] == {}
    assert intact.returncode == 0, intact.stdout
    assert intact.stdout.splitlines()[:3:2] == [
        f"public key: sha256 {audit_tree.signing_key().key_id} (pinned with --public-key)",
        "scope: the whole log up to tree_size (no filters): completeness checked",
    ]
    assert after.returncode == 1
    assert after.stdout.splitlines()[-1] == (
        "FAILED: 1 leaves of the unfiltered log are missing from the bundle: 6"
    )


# The audit trail is append-only through the API.


@pytest.mark.parametrize("persona", ["admin", "compliance_officer", "scientist"])
def test_audit_events_cannot_be_created_replaced_changed_or_deleted(request, client_for, world, persona):
    client = client_for(request.getfixturevalue(persona))
    event = AuditEvent.objects.filter(team=world.team).first()
    url = f"/api/audit-events/{event.pk}/"
    body = {"action": "dataset.delete", "actor_label": "nobody", "after": None}
    before = list(AuditEvent.objects.order_by("pk").values())

    answers = [
        client.post("/api/audit-events/", body, format="json"),
        client.put(url, body, format="json"),
        client.patch(url, body, format="json"),
        client.delete(url),
    ]

    assert [(a.status_code, a.json()["detail"]) for a in answers] == [
        (405, 'Method "POST" not allowed.'),
        (405, 'Method "PUT" not allowed.'),
        (405, 'Method "PATCH" not allowed.'),
        (405, 'Method "DELETE" not allowed.'),
    ]
    assert list(AuditEvent.objects.order_by("pk").values()) == before
