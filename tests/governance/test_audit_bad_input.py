"""Hostile query strings on the audit trail's API and pages: a 4xx naming the problem, never a
500 from a value the database adapter cannot convert (times beyond UTC's range, ids beyond bigint,
forged cursor positions), and no events listed or exported under invalid filters."""

from __future__ import annotations

import base64
import csv
import datetime
import io
import json
from urllib.parse import urlencode

import pytest
from django.urls import reverse
from django.utils import timezone

from governance import audit_export, audit_tree
from governance.actions.registry import do_create_dataset
from governance.models import AuditEvent
from tests.governance.audit_helpers import raw_sql

EARLIEST_WITH_OFFSET = "0001-01-01T00:00:00+05:00"  # 0000-12-31T19:00Z: before year 1
LATEST_WITH_OFFSET = "9999-12-31T23:59:59-05:00"  # 10000-01-01T04:59Z: after year 9999
BEYOND_BIGINT = "9223372036854775808"  # 2**63
OUT_OF_UTC = "Enter a date/time between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z once converted to UTC."
TOO_BIG = "Ensure this value is less than or equal to 9223372036854775807."
INVALID_CURSOR = (404, {"detail": "Invalid cursor"})


def _answer(response) -> tuple[int, dict]:
    return response.status_code, response.json()


def _cursor(position: str) -> str:
    """A cursor as DRF's CursorPagination encodes one, naming ``position``."""
    return base64.b64encode(urlencode({"p": position}).encode()).decode()


def _body(response) -> str:
    return b"".join(response.streaming_content).decode()


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

    assert _answer(response) == (400, errors)


@pytest.mark.parametrize("name", ["actor", "action", "object_type", "object_id", "q"])
def test_a_text_filter_with_a_nul_character_is_a_400(dataset, client_for, viewer, name):
    # PostgreSQL text cannot hold NUL: psycopg would raise ValueError while running the query.
    response = client_for(viewer).get("/api/audit-events/", {name: "a\x00b"})

    assert _answer(response) == (400, {name: ["Null characters are not allowed."]})


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


def test_a_bad_csv_filter_is_a_400_before_anything_streams(dataset, client_for, viewer):
    response = client_for(viewer).get("/api/audit-events/export.csv", {"until": LATEST_WITH_OFFSET})

    assert response.streaming is False
    assert _answer(response) == (400, {"until": [OUT_OF_UTC]})


def test_the_csv_export_runs_its_query_before_the_response_starts(
    dataset, client_for, fresh, viewer, django_assert_num_queries
):
    client = client_for(fresh(viewer))

    # 1 platform roles (restrict; may_audit reuses them: no leaf_index), 2 the viewer's
    # memberships, 3 the events with their teams: all before the response streams a byte
    with django_assert_num_queries(3):
        response = client.get("/api/audit-events/export.csv")
    with django_assert_num_queries(0):
        rows = list(csv.DictReader(io.StringIO(_body(response))))

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
    shared = timezone.now()
    for number in range(7):
        AuditEvent.objects.create(
            timestamp=shared if number % 2 else shared - datetime.timedelta(seconds=number + 1),
            actor_label="admin",
            action="dataset.touch",
            object_repr=f"d{number}",
        )

    response = client_for(compliance_officer).get("/api/audit-events/export.csv", {"action": "dataset."})

    rows = list(csv.DictReader(io.StringIO(_body(response))))
    assert [row["object"] for row in rows] == ["d5", "d3", "d1", "d0", "d2", "d4", "d6"]


def test_the_bundle_continues_after_its_first_chunk(monkeypatch, team, admin, client_for, compliance_officer):
    monkeypatch.setattr(audit_export, "CHUNK", 2)
    for name in ["a", "b", "c", "d", "e"]:
        do_create_dataset(team=team, name=name, actor=admin)
    audit_tree.sequence_audit_events()

    response = client_for(compliance_officer).get("/api/audit-events/export.json", {"action": "dataset."})

    bundle = json.loads(_body(response))
    assert [event["leaf_index"] for event in bundle["events"]] == [2, 3, 4, 5, 6]
    assert [event["personal"]["object_repr"] for event in bundle["events"]] == ["a", "b", "c", "d", "e"]


# Ids and tree sizes in paths and query strings -----------------------------------------------


def test_the_consistency_proof_bounds_its_tree_sizes(dataset, client_for, compliance_officer):
    audit_tree.sequence_audit_events()
    client = client_for(compliance_officer)

    answers = [
        _answer(client.get("/api/audit/consistency/", params))
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
    audit_tree.sequence_audit_events()

    response = client_for(compliance_officer).get(url)

    assert _answer(response) == (404, {"detail": f"No {model} matches the given query."})


# Forged cursors --------------------------------------------------------------------------------


@pytest.mark.parametrize("position", ["abc", "-1", "1.5", "١٢", "99999999999999999999999", ""])
def test_a_checkpoint_cursor_with_a_position_that_is_not_a_tree_size_is_invalid(
    dataset, client_for, compliance_officer, position
):
    audit_tree.sequence_audit_events()

    response = client_for(compliance_officer).get("/api/audit/checkpoints/", {"cursor": _cursor(position)})

    assert _answer(response) == INVALID_CURSOR


def test_the_cursor_of_the_tester_report_is_invalid(dataset, client_for, compliance_officer):
    audit_tree.sequence_audit_events()

    response = client_for(compliance_officer).get("/api/audit/checkpoints/?cursor=cD1hYmM%3D")

    assert _answer(response) == INVALID_CURSOR


@pytest.mark.parametrize(
    "position",
    [LATEST_WITH_OFFSET, EARLIEST_WITH_OFFSET, "garbage", "2024-13-01 00:00:00+00:00", "2024-05-01 10:00:00"],
)
def test_an_event_cursor_with_a_position_that_is_not_a_storable_time_is_invalid(
    dataset, client_for, viewer, position
):
    response = client_for(viewer).get("/api/audit-events/", {"cursor": _cursor(position)})

    assert _answer(response) == INVALID_CURSOR


def test_a_well_formed_event_cursor_still_pages(dataset, client_for, viewer):
    newest = AuditEvent.objects.restrict(viewer).order_by("-timestamp", "-id")
    position = str(newest[0].timestamp)

    response = client_for(viewer).get("/api/audit-events/", {"cursor": _cursor(position)})

    assert response.status_code == 200
    assert [row["id"] for row in response.json()["results"]] == [
        event.pk for event in newest if event.timestamp < newest[0].timestamp
    ]


# The audit trail page --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "field", "message"),
    [
        ({"since": "garbage"}, "since", "Enter a valid date/time."),
        ({"since": EARLIEST_WITH_OFFSET}, "since", OUT_OF_UTC),
        ({"until": LATEST_WITH_OFFSET, "action": "dataset."}, "until", OUT_OF_UTC),
        ({"team": BEYOND_BIGINT}, "team", TOO_BIG),
    ],
)
def test_the_page_with_an_invalid_filter_lists_nothing_and_offers_no_export(
    client, dataset, compliance_officer, params, field, message
):
    client.force_login(compliance_officer)

    response = client.get(reverse("audit_event_list"), params)

    assert response.status_code == 400
    assert response.context["filterset"].form.errors == {field: [message]}
    assert response.context["page"].rows == []
    page = response.content.decode()
    assert "No events listed: correct the filters." in page
    assert "<code>dataset.create</code>" not in page
    assert "export.csv" not in page
    assert "export.json" not in page
    assert 'href="/api/audit/verifier.py"' in page  # carries no filter


def test_the_htmx_table_with_an_invalid_filter_lists_nothing(client, dataset, viewer):
    client.force_login(viewer)

    response = client.get(reverse("audit_event_list"), {"since": "garbage"}, headers={"HX-Request": "true"})

    assert response.status_code == 400
    assert " ".join(response.content.decode().split()) == (
        '<div id="audit-table"> <p class="empty">No events listed: correct the filters.</p> </div>'
    )


def test_a_page_link_naming_an_id_beyond_bigint_is_broken(client, dataset, compliance_officer):
    client.force_login(compliance_officer)

    response = client.get(reverse("audit_event_list"), {"before": f"1-{BEYOND_BIGINT}"})

    assert response.status_code == 400
    page = response.content.decode()
    assert "That page link is broken; here are the newest events." in page
    assert "<code>dataset.create</code>" in page


def test_an_event_page_beyond_bigint_is_a_404(client, dataset, compliance_officer):
    client.force_login(compliance_officer)

    assert client.get(f"/audit/{BEYOND_BIGINT}/").status_code == 404


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
    audit_tree.sequence_audit_events()
    client = client_for(request.getfixturevalue(persona))

    rows = list(
        csv.reader(io.StringIO(_body(client.get("/api/audit-events/export.csv", {"action": "dataset."}))))
    )

    leaf_index = AuditEvent.objects.get(action="dataset.create").leaf.leaf_index
    header = [
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
    assert rows[0] == header + (["leaf_index"] if has_leaf_index else [])
    assert len(rows) == 2
    assert rows[1][4] == "dataset.create"
    assert rows[1][13:] == ([str(leaf_index)] if has_leaf_index else [])


# The proof says whether it verifies ------------------------------------------------------------


def test_a_proof_of_a_row_altered_in_the_database_says_it_fails(dataset, client_for, compliance_officer):
    audit_tree.sequence_audit_events()
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
