"""The audit trail's exports over the API: CSV (formulas neutralised, filters followed, only what the
user may see, leaf indexes for auditors only), the JSON bundle verified offline by the downloaded
verifier, and both streamed in chunks after their query ran."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from governance import audit_export
from governance.actions.datasets import do_create_dataset
from governance.audit.erasure import do_erase_personal_data
from governance.audit.keys import signing_key
from governance.audit.proofs import checkpoint_json
from governance.audit.sequencer import sequence_audit_events
from governance.models import AuditCheckpoint, AuditEvent
from tests.governance.audit_helpers import (
    LATEST_WITH_OFFSET,
    OUT_OF_UTC,
    answer,
    body,
    create_events_sharing_a_timestamp,
    raw_sql,
    streamed_text,
)

# The export's columns, spelt out here (not imported) so a change to them fails a test;
# auditors also get leaf_index.
CSV_HEADER = [
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
]


# CSV and bundle ----------------------------------------------------------------------------------


def test_the_csv_export_neutralises_formulas_and_follows_filters(team, admin, compliance_officer, client_for):
    for name in ["=1+2", "+cmd", "-2", "@SUM(A1)", "plain"]:
        do_create_dataset(team=team, name=name, actor=admin)

    response = client_for(compliance_officer).get("/api/audit-events/export.csv", {"action": "dataset."})

    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="audit-')
    rows = list(csv.DictReader(io.StringIO(body(response).decode())))
    assert [row["object"] for row in rows] == ["plain", "'@SUM(A1)", "'-2", "'+cmd", "'=1+2"]
    assert {(row["actor"], row["action"], row["team"], row["leaf_index"]) for row in rows} == {
        ("admin", "dataset.create", "Mobility", "")
    }
    assert json.loads(rows[-1]["after"])["name"] == "=1+2"
    assert list(rows[0]) == [*CSV_HEADER, "leaf_index"]


def test_the_csv_export_holds_only_what_the_user_may_see(world, client_for, outsider):
    response = client_for(outsider).get("/api/audit-events/export.csv")

    ids = [int(row["id"]) for row in csv.DictReader(io.StringIO(body(response).decode()))]
    assert ids == list(
        AuditEvent.objects.restrict(outsider).order_by("-timestamp", "-id").values_list("id", flat=True)
    )
    assert set(AuditEvent.objects.filter(pk__in=ids).values_list("team", flat=True)) == {world.other_team.pk}


def _run_verifier(tmp_path: Path, client, bundle: dict, *options: str) -> subprocess.CompletedProcess[str]:
    verifier = tmp_path / "merkle.py"
    verifier.write_bytes(body(client.get("/api/audit/verifier.py")))
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
    bundle = json.loads(body(response))
    checkpoint = AuditCheckpoint.objects.get(tree_size=12)
    datasets = [i for i, event in enumerate(log) if event.action == "dataset.create"]
    assert bundle["format"] == "steward-audit-bundle/1"
    assert bundle["filters"] == {"action": "dataset."}
    assert bundle["checkpoint"] == checkpoint_json(checkpoint)
    assert bundle["public_key_pem"] == signing_key().public_key_pem
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
    do_erase_personal_data(admin, actor=admin)
    client = client_for(compliance_officer)

    bundle = json.loads(body(client.get("/api/audit-events/export.json", {"action": "dataset."})))
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

    bundle = json.loads(body(client.get("/api/audit-events/export.json")))
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
    pinned.write_bytes(body(client.get("/api/audit/public-key/")))
    intact_bundle = json.loads(body(client.get("/api/audit-events/export.json")))
    intact = _run_verifier(tmp_path, client, intact_bundle, "--public-key", str(pinned))
    with raw_sql() as cursor:
        for table, column in (
            ("auditleaf", "event_id"),
            ("auditpersonaldata", "event_id"),
            ("auditevent", "id"),
        ):
            cursor.execute(f"DELETE FROM governance_{table} WHERE {column} = %s", [log[6].pk])  # noqa: S608

    after_bundle = json.loads(body(client.get("/api/audit-events/export.json")))
    after = _run_verifier(tmp_path, client, after_bundle, "--public-key", str(pinned))

    assert intact_bundle["filters"] == {}
    assert intact.returncode == 0, intact.stdout
    assert intact.stdout.splitlines()[:3:2] == [
        f"public key: sha256 {signing_key().key_id} (pinned with --public-key)",
        "scope: the whole log up to tree_size (no filters): completeness checked",
    ]
    assert after.returncode == 1
    assert after.stdout.splitlines()[-1] == (
        "FAILED: 1 leaves of the unfiltered log are missing from the bundle: 6"
    )


# Streaming in chunks ---------------------------------------------------------------------------


def test_a_bad_csv_filter_is_a_400_before_anything_streams(dataset, client_for, viewer):
    response = client_for(viewer).get("/api/audit-events/export.csv", {"until": LATEST_WITH_OFFSET})

    assert response.streaming is False
    assert answer(response) == (400, {"until": [OUT_OF_UTC]})


def test_the_csv_export_runs_its_query_before_the_response_starts(
    dataset, client_for, fresh, viewer, django_assert_num_queries
):
    client = client_for(fresh(viewer))

    # 1 the viewer's platform and team roles (one UNION; may_audit reuses them: no leaf_index),
    # 2 the events with their teams: all before the response streams a byte
    with django_assert_num_queries(2):
        response = client.get("/api/audit-events/export.csv")
    with django_assert_num_queries(0):
        rows = list(csv.DictReader(io.StringIO(streamed_text(response))))

    assert response.status_code == 200
    assert [row["id"] for row in rows] == [
        str(pk)
        for pk in AuditEvent.objects.restrict(viewer)
        .order_by("-timestamp", "-id")
        .values_list("id", flat=True)
    ]


def test_the_csv_export_continues_after_its_first_chunk_across_equal_times(
    monkeypatch, team, client_for, compliance_officer
):
    monkeypatch.setattr(audit_export, "CHUNK", 2)
    create_events_sharing_a_timestamp()

    response = client_for(compliance_officer).get("/api/audit-events/export.csv", {"action": "dataset."})

    rows = list(csv.DictReader(io.StringIO(streamed_text(response))))
    assert [row["object"] for row in rows] == ["d5", "d3", "d1", "d0", "d2", "d4", "d6"]


def test_the_bundle_continues_after_its_first_chunk(monkeypatch, team, admin, client_for, compliance_officer):
    monkeypatch.setattr(audit_export, "CHUNK", 2)
    for name in ["a", "b", "c", "d", "e"]:
        do_create_dataset(team=team, name=name, actor=admin)
    sequence_audit_events()

    response = client_for(compliance_officer).get("/api/audit-events/export.json", {"action": "dataset."})

    bundle = json.loads(streamed_text(response))
    assert [event["leaf_index"] for event in bundle["events"]] == [2, 3, 4, 5, 6]
    assert [event["personal"]["object_repr"] for event in bundle["events"]] == ["a", "b", "c", "d", "e"]


# What the CSV tells whom -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("persona", "has_leaf_index"),
    [
        ("viewer", False),
        ("scientist", False),
        ("owner", False),
        ("compliance_officer", True),
        ("admin", True),
    ],
)
def test_only_auditors_get_leaf_indexes_in_the_csv(request, dataset, client_for, persona, has_leaf_index):
    sequence_audit_events()
    client = client_for(request.getfixturevalue(persona))

    rows = list(
        csv.reader(
            io.StringIO(streamed_text(client.get("/api/audit-events/export.csv", {"action": "dataset."})))
        )
    )

    leaf_index = AuditEvent.objects.get(action="dataset.create").leaf.leaf_index
    assert rows[0] == CSV_HEADER + (["leaf_index"] if has_leaf_index else [])
    assert len(rows) == 2
    assert rows[1][4] == "dataset.create"
    assert rows[1][13:] == ([str(leaf_index)] if has_leaf_index else [])
