"""The audit tree over the API: proofs, checkpoints, consistency, the public key, the event list
(exports: test_audit_export.py); hostile query strings get a 4xx
naming the problem, never a 500 from a value the database adapter cannot convert (times beyond
UTC's range, ids beyond bigint, forged cursor positions), and no events listed or exported under
invalid filters."""

from __future__ import annotations

import base64
import datetime
import hashlib
from pathlib import Path
from urllib.parse import urlencode

import pytest

from governance import merkle
from governance.actions.datasets import do_create_dataset
from governance.audit.keys import signing_key
from governance.audit.leaf import iso_timestamp, leaf_for
from governance.audit.proofs import checkpoint_json, stored_inclusion_proof
from governance.audit.sequencer import sequence_audit_events
from governance.models import AuditCheckpoint, AuditEvent
from tests.governance.audit_helpers import (
    BEYOND_BIGINT,
    EARLIEST_WITH_OFFSET,
    INVALID_CURSOR,
    LATEST_WITH_OFFSET,
    OUT_OF_UTC,
    TOO_BIG,
    answer,
    body,
    raw_sql,
)

TREE_URLS = [
    "/api/audit/checkpoints/",
    "/api/audit/checkpoints/5/",
    "/api/audit/consistency/?first=5&second=9",
    "/api/audit-events/export.json",
]


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
    leaf = leaf_for(event, bytes.fromhex(event.personal_data.salt))
    leaf_hash = merkle.leaf_hash(merkle.canonical_json(leaf))
    assert body == {
        "leaf_index": 6,
        "leaf": leaf,
        "leaf_hash": leaf_hash.hex(),
        "proof": [step.hex() for step in stored_inclusion_proof(6, 12)],
        "checkpoint": {
            "tree_size": 12,
            "root_hash": checkpoint.root_hash,
            "timestamp": iso_timestamp(checkpoint.timestamp),
            "signature": checkpoint.signature,
            "key_id": signing_key().key_id,
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
    assert body["results"][2] == checkpoint_json(AuditCheckpoint.objects.get(tree_size=5))
    assert (body["next"], body["previous"]) == (None, None)
    one = client_for(compliance_officer).get("/api/audit/checkpoints/9/").json()
    assert one == checkpoint_json(AuditCheckpoint.objects.get(tree_size=9))


def test_a_consistency_proof_links_two_checkpoints(log, client_for, compliance_officer):
    client = client_for(compliance_officer)

    body = client.get("/api/audit/consistency/", {"first": 5, "second": 12}).json()

    first, second = (AuditCheckpoint.objects.get(tree_size=size) for size in (5, 12))
    assert body["first"] == checkpoint_json(first)
    assert body["second"] == checkpoint_json(second)
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

    key = signing_key()
    assert response.status_code == 200
    assert response["Content-Type"] == "application/x-pem-file"
    assert response.content.decode() == key.public_key_pem
    assert response["X-Audit-Key-Id"] == key.key_id
    assert response["Content-Disposition"] == 'attachment; filename="steward.pem"'


def test_the_verifier_is_merkle_py_without_login(api, db):
    response = api.get("/api/audit/verifier.py")

    source = Path(merkle.__file__).read_bytes()
    assert response.status_code == 200
    assert body(response) == source
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


# Bad input ----------------------------------------------------------------------------------------


def _cursor(position: str) -> str:
    """A cursor as DRF's CursorPagination encodes one, naming ``position``."""
    return base64.b64encode(urlencode({"p": position}).encode()).decode()


# The API's filters ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "errors"),
    [
        ({"since": EARLIEST_WITH_OFFSET}, {"since": [OUT_OF_UTC]}),
        ({"until": LATEST_WITH_OFFSET}, {"until": [OUT_OF_UTC]}),
        ({"since": "garbage"}, {"since": ["Enter a valid date/time."]}),
        ({"team": BEYOND_BIGINT}, {"team": [TOO_BIG]}),
        ({"team": "99999999999999999999999"}, {"team": [TOO_BIG]}),
        ({"team": "0"}, {"team": ["Ensure this value is greater than or equal to 1."]}),
        ({"team": "1.5"}, {"team": ["Enter a whole number."]}),
        ({"team": "NaN"}, {"team": ["Enter a whole number."]}),
    ],
)
@pytest.mark.parametrize(
    "url", ["/api/audit-events/", "/api/audit-events/export.csv", "/api/audit-events/export.json"]
)
def test_filters_the_database_cannot_take_are_a_400_naming_the_field(
    dataset, client_for, compliance_officer, url, params, errors
):
    response = client_for(compliance_officer).get(url, params)

    assert answer(response) == (400, errors)


@pytest.mark.parametrize("name", ["actor", "action", "object_type", "object_id", "q"])
def test_a_text_filter_with_a_nul_character_is_a_400(dataset, client_for, viewer, name):
    # PostgreSQL text cannot hold NUL: psycopg would raise ValueError while running the query.
    response = client_for(viewer).get("/api/audit-events/", {name: "a\x00b"})

    assert answer(response) == (400, {name: ["Null characters are not allowed."]})


def test_filters_at_the_ends_of_utc_still_work(dataset, client_for, compliance_officer):
    client = client_for(compliance_officer)
    everything = list(AuditEvent.objects.order_by("-timestamp", "-id").values_list("id", flat=True))

    answers = [
        client.get("/api/audit-events/", params).json()["results"]
        for params in (
            {"since": "0001-01-01T05:00:00+05:00", "until": "9999-12-31T18:59:59-05:00"},
            {"until": "0001-01-01T05:00:00+05:00"},
            {"team": "9223372036854775807"},
        )
    ]

    assert [[row["id"] for row in rows] for rows in answers] == [everything, [], []]
    assert len(everything) == 4  # the team, the scientist's membership, the officer's role, the dataset


@pytest.mark.parametrize(
    "url", ["/api/audit-events/", "/api/audit-events/export.csv", "/api/audit-events/export.json"]
)
def test_offsets_python_takes_but_postgresql_does_not_are_converted_to_utc(
    dataset, client_for, compliance_officer, url
):
    # +16:00 to +23:59 parse in Python; PostgreSQL's timestamptz takes offsets up to +-15:59 only,
    # so a time sent as given was a 500 (issue 13). Converted to UTC first, they filter as meant.
    sequence_audit_events()  # the exports need a checkpoint
    client = client_for(compliance_officer)
    newest = AuditEvent.objects.order_by("-timestamp").first()
    assert newest is not None
    just_after = (newest.timestamp + datetime.timedelta(seconds=1)).astimezone(
        datetime.timezone(datetime.timedelta(hours=23, minutes=59))
    )
    far_east = just_after.isoformat()
    far_west = just_after.astimezone(datetime.timezone(datetime.timedelta(hours=-16))).isoformat()

    after_all = client.get(url, {"since": far_east})
    before_now = client.get(url, {"until": far_west})
    beyond = client.get(url, {"since": "2026-01-01T00:00:00+24:00"})

    assert (after_all.status_code, before_now.status_code) == (200, 200)
    if url == "/api/audit-events/":
        assert after_all.json()["results"] == []
        assert len(before_now.json()["results"]) == AuditEvent.objects.count()
    assert answer(beyond) == (400, {"since": ["Enter a valid date/time."]})


# Ids and tree sizes in paths and query strings -----------------------------------------------


def test_the_consistency_proof_bounds_its_tree_sizes(dataset, client_for, compliance_officer):
    sequence_audit_events()
    client = client_for(compliance_officer)

    answers = [
        answer(client.get("/api/audit/consistency/", params))
        for params in (
            {"first": 1, "second": "99999999999999999999999"},
            {"first": BEYOND_BIGINT, "second": BEYOND_BIGINT},
            {"first": 1, "second": "9223372036854775807"},
        )
    ]

    assert answers == [
        (400, {"second": [TOO_BIG]}),
        (400, {"first": [TOO_BIG], "second": [TOO_BIG]}),
        (404, {"detail": "no checkpoint at tree size 1"}),
    ]


@pytest.mark.parametrize(
    ("url", "model"),
    [
        (f"/api/audit-events/{BEYOND_BIGINT}/", "AuditEvent"),
        (f"/api/audit-events/{BEYOND_BIGINT}/proof/", "AuditEvent"),
        (f"/api/audit/checkpoints/{BEYOND_BIGINT}/", "AuditCheckpoint"),
        ("/api/audit/checkpoints/99999999999999999999999/", "AuditCheckpoint"),
    ],
)
def test_ids_beyond_bigint_in_paths_are_a_404(dataset, client_for, compliance_officer, url, model):
    sequence_audit_events()

    response = client_for(compliance_officer).get(url)

    assert answer(response) == (404, {"detail": f"No {model} matches the given query."})


# Forged cursors --------------------------------------------------------------------------------


@pytest.mark.parametrize("position", ["abc", "-1", "1.5", "١٢", "99999999999999999999999", ""])
def test_a_checkpoint_cursor_with_a_position_that_is_not_a_tree_size_is_invalid(
    dataset, client_for, compliance_officer, position
):
    sequence_audit_events()

    response = client_for(compliance_officer).get("/api/audit/checkpoints/", {"cursor": _cursor(position)})

    assert answer(response) == INVALID_CURSOR


def test_the_cursor_of_the_tester_report_is_invalid(dataset, client_for, compliance_officer):
    sequence_audit_events()

    response = client_for(compliance_officer).get("/api/audit/checkpoints/?cursor=cD1hYmM%3D")

    assert answer(response) == INVALID_CURSOR


@pytest.mark.parametrize(
    "position",
    [LATEST_WITH_OFFSET, EARLIEST_WITH_OFFSET, "garbage", "2024-13-01 00:00:00+00:00", "2024-05-01 10:00:00"],
)
def test_an_event_cursor_with_a_position_that_is_not_a_storable_time_is_invalid(
    dataset, client_for, viewer, position
):
    response = client_for(viewer).get("/api/audit-events/", {"cursor": _cursor(position)})

    assert answer(response) == INVALID_CURSOR


def test_the_cursor_of_a_next_link_still_pages(dataset, client_for, viewer):
    newest = list(AuditEvent.objects.restrict(viewer).order_by("-timestamp", "-id"))
    client = client_for(viewer)

    first = client.get("/api/audit-events/", {"page_size": 1}).json()
    response = client.get(first["next"])

    assert response.status_code == 200
    assert [row["id"] for row in first["results"] + response.json()["results"]] == [e.pk for e in newest[:2]]


# The proof says whether it verifies ------------------------------------------------------------


def test_a_proof_of_a_row_altered_in_the_database_says_it_fails(dataset, client_for, compliance_officer):
    sequence_audit_events()
    event = AuditEvent.objects.get(action="dataset.create")
    client = client_for(compliance_officer)
    intact = client.get(f"/api/audit-events/{event.pk}/proof/").json()
    with raw_sql() as cursor:
        cursor.execute("UPDATE governance_auditevent SET object_id = '999' WHERE id = %s", [event.pk])

    response = client.get(f"/api/audit-events/{event.pk}/proof/")

    assert intact["verification"] == {"status": "verified", "detail": ""}
    assert response.status_code == 200
    body = response.json()
    assert body["verification"] == {
        "status": "failed",
        "detail": "the event no longer matches its leaf: the proof does not reach the signed root",
    }
    assert body["leaf"]["object_id"] == "999"  # the leaf recomputed from the row as it is now
    assert (body["leaf_index"], body["proof"]) == (intact["leaf_index"], intact["proof"])
    assert body["leaf_hash"] != intact["leaf_hash"]


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
