"""OpenLineage ingest over raw HTTP (Django's test client): the spec's strict fields, bounded and
gzipped bodies, tokens and teams, and the run semantics (issue 10). The real client's journeys are
in test_openlineage_client.py."""

from __future__ import annotations

import datetime
import gzip
import json
import uuid

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from governance.actions.teams import do_set_membership
from governance.actions.tokens import do_create_api_token
from governance.models import AuditEvent
from lineage.models import LineageEdge
from runners.models import OpenLineageDataset, OpenLineageEvent, OpenLineageJob, OpenLineageRun

URL = "/api/v1/lineage"
BATCH = "/api/v1/lineage/batch"


def token(user, *, read_only: bool = False) -> str:
    return do_create_api_token(user=user, name="ol", is_read_only=read_only, actor=user)[1]


def post(secret: str, body, url: str = URL, *, raw: bytes | None = None, **headers):
    client = APIClient()
    data = raw if raw is not None else json.dumps(body).encode()
    return client.generic(
        "POST", url, data, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {secret}", **headers
    )


def run_event(
    run_id=None, event_type="START", time="2026-12-01T08:00:00Z", job="daily", inputs=(), outputs=()
):
    event = {
        "eventTime": time,
        "producer": "urn:test",
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
        "run": {"runId": str(run_id or uuid.uuid4())},
        "job": {"namespace": "airflow", "name": job},
        "inputs": [{"namespace": "pg://db", "name": n} for n in inputs],
        "outputs": [{"namespace": "pg://db", "name": n} for n in outputs],
    }
    if event_type is not None:
        event["eventType"] = event_type
    return event


def nothing_stored() -> bool:
    return not (
        OpenLineageEvent.objects.exists()
        or OpenLineageJob.objects.exists()
        or OpenLineageRun.objects.exists()
    )


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda e: e["run"].update(runId="42"), "run.runId"),
        (lambda e: e["run"].pop("runId"), "run.runId"),
        (lambda e: e["job"].pop("namespace"), "job.namespace"),
        (lambda e: e["job"].update(name=""), "job.name"),
        (lambda e: e["inputs"][0].pop("name"), "inputs[0].name"),
        (lambda e: e.update(eventTime="yesterday"), "eventTime"),
        (lambda e: e.update(eventType="DONE"), "eventType"),
        (lambda e: e["run"].update(facets={"parent": "x"}), "run.facets.parent"),
    ],
)
def test_an_invalid_event_is_a_400_naming_the_field(scientist, change, field):
    event = run_event(inputs=["rides"])
    change(event)
    answer = post(token(scientist), event)
    assert answer.status_code == 400
    assert list(answer.json()) == [field]
    assert nothing_stored()


def test_bad_json_and_bad_gzip_are_400s(scientist):
    secret = token(scientist)
    assert list(post(secret, None, raw=b'{"eventTime": ').json()) == ["body"]
    answer = post(secret, None, raw=b"not json at all")
    assert answer.status_code == 400
    assert list(answer.json()) == ["body"]
    answer = post(secret, None, raw=b"\x1f\x8b garbage", HTTP_CONTENT_ENCODING="gzip")
    assert answer.status_code == 400
    assert "not valid gzip" in answer.json()["body"][0]
    answer = post(secret, None, raw=b"{}", HTTP_CONTENT_ENCODING="br")
    assert answer.status_code == 400
    assert "br" in answer.json()["body"][0]
    assert nothing_stored()


def test_a_nul_character_is_a_400_not_a_database_error(scientist):
    event = run_event()
    event["run"]["facets"] = {"acme_x": {"_producer": "urn:x", "_schemaURL": "urn:y", "v": "a\x00b"}}
    answer = post(token(scientist), event)
    assert answer.status_code == 400
    assert list(answer.json()) == ["body"]
    assert nothing_stored()


def test_a_huge_body_and_a_gzip_bomb_are_413s(scientist, settings):
    settings.STEWARD_OPENLINEAGE_MAX_BODY_BYTES = 64 * 1024
    secret = token(scientist)
    event = run_event(inputs=[f"table{i}" for i in range(3000)])
    assert post(secret, event).status_code == 413
    # 50 MB of one byte gzips to ~50 KB: under the limit on the wire, far over once inflated.
    bomb = gzip.compress(b"[" + b" " * 50_000_000 + b"]")
    assert len(bomb) < 64 * 1024
    assert post(secret, None, raw=bomb).status_code == 413
    assert post(secret, None, raw=bomb, HTTP_CONTENT_ENCODING="gzip").status_code == 413
    assert nothing_stored()


def test_gzip_with_and_without_the_header_is_read(scientist):
    secret = token(scientist)
    first, second = run_event(job="a"), run_event(job="b")
    assert post(
        secret, None, raw=gzip.compress(json.dumps(first).encode()), HTTP_CONTENT_ENCODING="gzip"
    ).json() == {"status": "applied"}
    assert post(secret, None, raw=gzip.compress(json.dumps(second).encode())).json() == {"status": "applied"}
    assert sorted(OpenLineageJob.objects.values_list("name", flat=True)) == ["a", "b"]


def test_wrong_and_read_only_tokens_and_readers_write_nothing(scientist, viewer, outsider):
    event = run_event()
    assert post("not-a-token", event).status_code == 401
    assert post(token(scientist, read_only=True), event).status_code == 403
    answer = post(token(viewer), event)
    assert answer.status_code == 403
    assert list(answer.json()) == ["team"]
    # The outsider names a team it cannot see: unknown, not forbidden (existence does not leak).
    answer = post(token(outsider), event, HTTP_X_STEWARD_TEAM="Mobility")
    assert answer.status_code == 400
    assert answer.json() == {"team": ["no team 'Mobility' you can see"]}
    assert nothing_stored()


def test_a_member_of_two_teams_names_one(scientist, admin, other_team, team):
    do_set_membership(user=scientist, team=other_team, role="data_scientist", actor=admin)
    secret = token(scientist)
    answer = post(secret, run_event())
    assert answer.status_code == 400
    assert "X-Steward-Team" in answer.json()["team"][0]
    assert post(secret, run_event(job="a"), HTTP_X_STEWARD_TEAM=other_team.name).status_code == 200
    assert post(secret, run_event(job="b"), f"{URL}?team={team.pk}").status_code == 200
    assert dict(OpenLineageJob.objects.values_list("name", "team__name")) == {"a": "Fraud", "b": "Mobility"}


def test_another_teams_objects_are_invisible(scientist, outsider, client):
    run_id = uuid.uuid4()
    assert post(token(outsider), run_event(run_id, inputs=["secret_table"])).status_code == 200
    run = OpenLineageRun.objects.get(run_id=run_id)
    dataset = OpenLineageDataset.objects.get()
    reader = APIClient()
    reader.credentials(HTTP_AUTHORIZATION=f"Bearer {token(scientist)}")
    for url in (
        f"/api/openlineage/runs/{run.pk}/",
        f"/api/openlineage/jobs/{run.job_id}/",
        f"/api/openlineage/datasets/{dataset.pk}/",
    ):
        assert reader.get(url).status_code == 404
    client.force_login(scientist)
    for obj in (run, run.job, dataset):
        assert client.get(obj.get_absolute_url()).status_code == 404
    assert "secret_table" not in client.get(reverse("openlineage_list")).content.decode()
    # The same runId from another team is that team's own run, not a clash with the outsider's.
    assert post(token(scientist), run_event(run_id, job="other")).json() == {"status": "applied"}
    assert OpenLineageRun.objects.filter(run_id=run_id).count() == 2


def test_the_same_event_twice_changes_nothing(scientist):
    secret = token(scientist)
    event = run_event(inputs=["rides"], outputs=["daily"])
    assert post(secret, event).json() == {"status": "applied"}
    counts = (AuditEvent.objects.count(), LineageEdge.objects.count(), OpenLineageEvent.objects.count())
    assert post(secret, event).json() == {"status": "duplicate"}
    assert (
        AuditEvent.objects.count(),
        LineageEdge.objects.count(),
        OpenLineageEvent.objects.count(),
    ) == counts


@pytest.mark.parametrize("offset", ["+16:00", "-23:59", "+23:59"])
def test_event_times_with_offsets_postgresql_cannot_store_are_taken_in_utc(scientist, offset):
    """Issue 13: Python reads offsets up to +-23:59, PostgreSQL stores up to +-15:59; such an
    event was a 503 telling the client to retry what could never succeed."""
    secret = token(scientist)
    answer = post(secret, run_event(time=f"2026-12-01T08:00:00{offset}"))

    assert (answer.status_code, answer.json()) == (200, {"status": "applied"})
    expected = datetime.datetime.fromisoformat(f"2026-12-01T08:00:00{offset}")
    assert OpenLineageEvent.objects.get().event_time == expected


def test_a_terminal_state_wins_over_later_non_terminal_events(scientist):
    secret = token(scientist)
    run_id = uuid.uuid4()
    # COMPLETE first, then a START and a RUNNING that arrive late (one even with a later time).
    post(secret, run_event(run_id, "COMPLETE", "2026-12-01T10:00:00+02:00", outputs=["daily"]))
    post(secret, run_event(run_id, "START", "2026-12-01T07:55:00", inputs=["rides"]))
    post(secret, run_event(run_id, "RUNNING", "2026-12-01T09:00:00Z"))
    run = OpenLineageRun.objects.get(run_id=run_id)
    assert run.state == "COMPLETE"
    # +02:00 and naive (UTC) times are one clock.
    assert run.ended_at.isoformat() == "2026-12-01T08:00:00+00:00"
    assert run.started_at.isoformat() == "2026-12-01T07:55:00+00:00"
    # Inputs from START and outputs from COMPLETE accumulate.
    assert sorted(run.datasets.values_list("role", "name")) == [("input", "rides"), ("output", "daily")]
    # Between two non-terminal events, the later event time wins, not the later arrival.
    other = uuid.uuid4()
    post(secret, run_event(other, "RUNNING", "2026-12-01T09:00:00Z"))
    post(secret, run_event(other, "START", "2026-12-01T08:00:00Z"))
    assert OpenLineageRun.objects.get(run_id=other).state == "RUNNING"


def test_an_event_without_event_type_is_kept_and_its_facets_too(scientist):
    secret = token(scientist)
    run_id = uuid.uuid4()
    event = run_event(run_id, None)
    event["run"]["facets"] = {
        "acme_custom": {"_producer": "urn:x", "_schemaURL": "urn:y", "anything": [1, 2]}
    }
    event["producer"] = "a producer, not even a URI"
    assert post(secret, event).json() == {"status": "applied"}
    run = OpenLineageRun.objects.get(run_id=run_id)
    assert run.state == ""
    assert run.facets == {"acme_custom": {"_producer": "urn:x", "_schemaURL": "urn:y", "anything": [1, 2]}}


def test_a_run_id_reused_under_another_job_is_flagged_not_merged(scientist):
    secret = token(scientist)
    run_id = uuid.uuid4()
    post(secret, run_event(run_id, job="first", inputs=["rides"]))
    edges = LineageEdge.objects.count()
    answer = post(secret, run_event(run_id, "COMPLETE", job="second", outputs=["leak"]))
    assert answer.status_code == 409
    assert "already belongs to job airflow/first" in answer.json()["run.runId"][0]
    run = OpenLineageRun.objects.get(run_id=run_id)
    assert (run.job.name, run.state) == ("first", "START")
    assert [(r["namespace"], r["name"]) for r in run.reused_by] == [("airflow", "second")]
    assert LineageEdge.objects.count() == edges
    assert not OpenLineageJob.objects.filter(name="second").exists()
    assert AuditEvent.objects.filter(action="openlineage_run.flag_reused", object_id=str(run.pk)).count() == 1


def test_a_batch_fails_only_its_bad_events(scientist):
    secret = token(scientist)
    taken = uuid.uuid4()
    post(secret, run_event(taken, job="first"))
    events = [
        run_event(job="ok1"),
        {"eventTime": "2026-12-01T08:00:00Z", "job": {"name": "x"}},
        run_event(taken, job="other"),
        run_event(job="ok2"),
    ]
    answer = post(secret, events, BATCH)
    assert answer.status_code == 200
    body = answer.json()
    assert body["status"] == "partial_success"
    assert body["summary"] == {
        "received": 4,
        "successful": 2,
        "failed": 2,
        "retriable": 0,
        "non_retriable": 2,
    }
    assert [(f["index"], f["reason"].split(":")[0]) for f in body["failed_events"]] == [
        (1, "job.namespace"),
        (2, "run.runId"),
    ]
    assert set(OpenLineageJob.objects.values_list("name", flat=True)) == {"first", "ok1", "ok2"}
    assert post(secret, {"not": "a list"}, BATCH).json() == {"body": ["must be a JSON array of events"]}


def test_pages_of_external_objects_render_for_the_team(scientist, viewer, client):
    run_id = uuid.uuid4()
    event = run_event(run_id, "COMPLETE", outputs=["daily"])
    event["outputs"][0]["facets"] = {
        "columnLineage": {
            "_producer": "urn:x",
            "_schemaURL": "urn:y",
            "fields": {"total": {"inputFields": [{"namespace": "pg://db", "name": "rides", "field": "cnt"}]}},
        }
    }
    post(token(scientist), event)
    run = OpenLineageRun.objects.get(run_id=run_id)
    client.force_login(viewer)
    page = client.get(run.get_absolute_url()).content.decode()
    assert "rides.cnt" in page
    assert "total" in page
    assert client.get(run.job.get_absolute_url()).status_code == 200
    dataset_page = client.get(OpenLineageDataset.objects.get().get_absolute_url()).content.decode()
    assert "rides.cnt" in dataset_page
    assert str(run_id) in client.get(reverse("openlineage_list")).content.decode()


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b'"v": NaN', "NaN is not a JSON number"),
        (b'"v": -Infinity', "-Infinity is not a JSON number"),
        (b'"v": 1e999', "number 1e999 is out of range"),
        (b'"v": "a\\ud800b"', "unpaired surrogates"),
    ],
)
def test_what_no_column_can_store_is_a_400_not_a_retry(scientist, raw, message):
    """NaN, infinities and unpaired surrogates are not JSON text a database can store or hash; a
    503 "try again" would have the client resend an event that can never land."""
    facet = b'{"acme": {"_producer": "urn:x", "_schemaURL": "urn:y", ' + raw + b"}}"
    body = json.dumps(run_event()).encode().replace(b'"run": {', b'"run": {"facets": ' + facet + b", ")
    answer = post(token(scientist), None, raw=body)
    assert answer.status_code == 400, answer.content
    assert message in answer.json()["body"][0]
    batch = post(token(scientist), None, BATCH, raw=b"[" + body + b"]")
    assert batch.status_code == 400
    assert nothing_stored()


def test_a_surrogate_pair_is_a_character_and_is_kept(scientist):
    body = json.dumps(run_event(job="caf\U0001f600")).encode()  # ensure_ascii: a \\ud83d\\ude00 pair
    assert b"\\ud83d\\ude00" in body
    assert post(token(scientist), None, raw=body).json() == {"status": "applied"}
    assert OpenLineageJob.objects.get().name == "caf\U0001f600"


@pytest.mark.parametrize("time", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59.999999-23:59"])
def test_an_event_time_with_no_utc_date_is_a_400_and_fails_only_itself_in_a_batch(scientist, time):
    secret = token(scientist)
    answer = post(secret, run_event(time=time))
    assert answer.status_code == 400
    assert "out of range once converted to UTC" in answer.json()["eventTime"][0]
    batch = post(secret, [run_event(job="a"), run_event(job="b", time=time), run_event(job="c")], BATCH)
    assert batch.status_code == 200
    summary = batch.json()
    assert (summary["summary"]["successful"], summary["summary"]["non_retriable"]) == (2, 1)
    assert [(f["index"], f["retriable"]) for f in summary["failed_events"]] == [(1, False)]
    assert sorted(OpenLineageJob.objects.values_list("name", flat=True)) == ["a", "c"]


def test_a_use_keeps_the_dataset_it_resolved_to_in_the_list_and_the_graph(scientist, dataset, tmp_path):
    """A run named a Steward dataset version before it existed (an external dataset then); the
    version is registered; the run's next event names it again. The use keeps its first
    resolution, and the graph says the same as the run's dataset list (no second edge)."""
    from governance.actions.datasets import do_register_dataset_version
    from governance.models import DatasetVersion

    secret = token(scientist)
    start = run_event(inputs=())
    start["inputs"] = [{"namespace": "steward://testserver", "name": f"{dataset.name}@v1"}]
    assert post(secret, start).json() == {"status": "applied"}
    path = tmp_path / "v1.csv"
    path.write_text("a,b\n1,2\n")
    source = DatasetVersion.Source.PATH
    do_register_dataset_version(
        dataset=dataset, file_path=path, filename=path.name, source=source, actor=scientist
    )
    complete = dict(start, eventType="COMPLETE", eventTime="2026-12-01T09:00:00Z")
    assert post(secret, complete).json() == {"status": "applied"}
    run = OpenLineageRun.objects.get()
    into_run = LineageEdge.objects.filter(
        target_type="openlineage_run",
        target_id=run.pk,
        source_type__in=["openlineage_dataset", "dataset_version"],
    )
    assert list(into_run.values_list("source_type", flat=True)) == ["openlineage_dataset"]
    assert list(run.datasets.values_list("dataset_id", flat=True)) == [into_run.get().source_id]
