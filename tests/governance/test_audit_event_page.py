"""The compliance officer's audit event page (issue 14): one table of changes with foreign keys
named and linked as far as the viewer may see them, linked actors, older/newer events, the
object's history, the event's proof as a download verified offline, and the dashboard's trail
panel."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from django.contrib.auth import get_user_model
from django.urls import reverse

from governance import merkle
from governance.actions.datasets import do_create_dataset
from governance.actions.registered_models import do_create_registered_model
from governance.actions.teams import do_revoke_membership, do_set_membership
from governance.audit.keys import signing_key
from governance.audit.sequencer import sequence_audit_events
from governance.models import AuditEvent, Membership, RegisteredModel, TeamRole
from tests.governance.audit_helpers import body, raw_sql


def _page(client, event: AuditEvent) -> str:
    response = client.get(reverse("audit_event_detail", args=[event.pk]))
    assert response.status_code == 200
    return response.content.decode()


def _section(page: str, heading: str) -> str:
    return page.split(f"<h2>{heading}</h2>")[1].split("</section>")[0]


def _event_links(html: str) -> list[int]:
    return [int(pk) for pk in re.findall(r'<a href="/audit/([0-9]+)/">', html)]


def _user_page(user) -> str:
    return reverse("user_detail", args=[user.pk])


# Foreign keys --------------------------------------------------------------------------------


def test_foreign_keys_are_named_and_linked_for_a_viewer_who_may_see_them(
    client, admin, team, owner, compliance_officer
):
    dataset = do_create_dataset(team=team, name="bike-sharing-hourly", actor=owner)
    event = AuditEvent.objects.get(action="dataset.create", object_id=str(dataset.pk))
    client.force_login(compliance_officer)

    changes = _section(_page(client, event), "Changes")

    team_link = f'<a href="{reverse("team_detail", args=[team.pk])}">Mobility</a>'
    assert (
        f'<tr class="diff-added"><td><code>team_id</code></td><td>added</td><td></td>'
        f'<td>{team_link} <span class="muted">id {team.pk}</span></td></tr>'
    ) in changes
    # Not a foreign key: as recorded.
    assert "<td><code>&quot;bike-sharing-hourly&quot;</code></td>" in changes


def _model_owned_by_a_member_who_leaves(admin, team) -> tuple[AuditEvent, object]:
    """Lee joins the team, is made owner of a model, then leaves the team: the model's creation
    event records ``owner_id`` = Lee."""
    lee = get_user_model().objects.create_user("lee")
    do_set_membership(user=lee, team=team, role=TeamRole.MODEL_OWNER, actor=admin)
    model = do_create_registered_model(team=team, name="demand", owner=lee, actor=admin)
    do_revoke_membership(membership=Membership.objects.get(user=lee), actor=admin)
    return AuditEvent.objects.get(action="registered_model.create", object_id=str(model.pk)), lee


def test_foreign_keys_of_one_kind_are_read_in_one_query(
    client, admin, team, compliance_officer, django_assert_num_queries
):
    event, lee = _model_owned_by_a_member_who_leaves(admin, team)
    client.force_login(compliance_officer)
    client.get(reverse("audit_event_detail", args=[event.pk]))  # the session's first request

    # 1 session, 1 its user, 1 the viewer's roles, 1 the event; 1 team (team_id), 1 users
    # (owner_id and the actor together); 2 older/newer; 1 history; 1 the proof (no leaf: is it
    # refused?).
    with django_assert_num_queries(10):
        page = _page(client, event)

    changes = _section(page, "Changes")
    assert f'<a href="{_user_page(lee)}">lee</a> <span class="muted">id {lee.pk}</span>' in changes
    assert f'<dt>Actor</dt><dd><a href="{_user_page(admin)}">admin</a></dd>' in page


def test_a_deleted_foreign_key_target_is_its_id_marked_deleted(
    client, admin, team, owner, compliance_officer
):
    event, lee = _model_owned_by_a_member_who_leaves(admin, team)
    lee_pk = lee.pk
    # Rows removed from the database (governance itself soft-deletes; monitoring deletes
    # monitors and policies that other events name): the event keeps the id.
    RegisteredModel.objects.filter(pk=int(event.object_id)).delete()
    lee.delete()

    client.force_login(compliance_officer)
    changes = _section(_page(client, event), "Changes")
    assert (
        f"<td><code>owner_id</code></td><td>added</td><td></td><td><code>{lee_pk}</code> "
        '<span class="muted">(deleted)</span></td>'
    ) in changes

    # A team member cannot tell a deleted row from another team's: the bare id, nothing more.
    client.force_login(owner)
    changes = _section(_page(client, event), "Changes")
    assert f"<td><code>owner_id</code></td><td>added</td><td></td><td><code>{lee_pk}</code></td>" in changes


def test_a_foreign_key_target_the_viewer_may_not_see_is_only_its_id(
    client, admin, team, viewer, compliance_officer
):
    event, lee = _model_owned_by_a_member_who_leaves(admin, team)

    # Vera sees Mobility's events but, now that he left it, not Lee.
    client.force_login(viewer)
    page = _page(client, event)
    changes = _section(page, "Changes")
    assert f"<td><code>owner_id</code></td><td>added</td><td></td><td><code>{lee.pk}</code></td>" in changes
    assert "lee" not in changes
    assert _user_page(lee) not in page
    # Nor the admin who acted, a member of no team she is in: the recorded label, no link.
    assert "<dt>Actor</dt><dd>admin</dd>" in page

    client.force_login(compliance_officer)
    changes = _section(_page(client, event), "Changes")
    assert f'<a href="{_user_page(lee)}">lee</a> <span class="muted">id {lee.pk}</span>' in changes


# Neighbours and history ------------------------------------------------------------------------


def test_older_and_newer_skip_the_events_the_viewer_may_not_see(
    client, admin, team, other_team, viewer, compliance_officer
):
    first = do_create_dataset(team=team, name="first", actor=admin)
    do_create_dataset(team=other_team, name="theirs", actor=admin)
    last = do_create_dataset(team=team, name="last", actor=admin)
    first_event, theirs_event, last_event = AuditEvent.objects.filter(action="dataset.create").order_by("pk")
    assert (first_event.object_id, last_event.object_id) == (str(first.pk), str(last.pk))
    newest = AuditEvent.objects.order_by("-pk").first()
    assert newest == last_event

    client.force_login(viewer)
    page = _page(client, first_event)
    assert (
        f'<a class="button" href="/audit/{last_event.pk}/" rel="next">Newer #{last_event.pk} &rarr;</a>'
        in page
    )
    older = AuditEvent.objects.restrict(viewer).filter(pk__lt=first_event.pk).order_by("-pk").first()
    assert f'href="/audit/{older.pk}/" rel="prev"' in page
    page = _page(client, last_event)
    assert f'href="/audit/{first_event.pk}/" rel="prev">&larr; Older #{first_event.pk}</a>' in page
    assert 'rel="next"' not in page

    client.force_login(compliance_officer)
    page = _page(client, first_event)
    assert f'href="/audit/{theirs_event.pk}/" rel="next"' in page


def test_the_history_panel_lists_the_other_events_on_the_object_and_links_the_filtered_trail(
    client, admin, team, viewer, compliance_officer
):
    for role in [TeamRole.APPROVER, TeamRole.MODEL_OWNER]:
        do_set_membership(user=viewer, team=team, role=role, actor=admin)
    membership = Membership.objects.get(user=viewer, team=team)
    do_revoke_membership(membership=membership, actor=admin)
    on_membership = list(
        AuditEvent.objects.filter(object_type="membership", object_id=str(membership.pk)).order_by("-pk")
    )
    assert [e.action for e in on_membership] == ["membership.revoke", *["membership.grant"] * 3]
    do_create_dataset(team=team, name="elsewhere", actor=admin)
    client.force_login(compliance_officer)

    history = _section(_page(client, on_membership[0]), "This object's history")

    assert _event_links(history) == [e.pk for e in on_membership[1:]]
    url = f"/audit/?object_type=membership&amp;object_id={membership.pk}"
    assert f'<a href="{url}">events on membership {membership.pk} in the audit trail &rarr;</a>' in history

    listed = client.get("/audit/", {"object_type": "membership", "object_id": membership.pk})
    assert listed.context["page"].rows == on_membership


def test_the_history_panel_stops_at_twenty_events(client, admin, team, viewer, compliance_officer):
    for number in range(21):
        role = TeamRole.APPROVER if number % 2 else TeamRole.VIEWER
        do_set_membership(user=viewer, team=team, role=role, actor=admin)
    event = AuditEvent.objects.filter(action="membership.grant").latest("pk")
    client.force_login(compliance_officer)

    history = _section(_page(client, event), "This object's history")

    assert len(_event_links(history)) == 20
    assert ">All events on membership" in history


# The proof as a download -----------------------------------------------------------------------


def _run_verifier(tmp_path: Path, client, proof: bytes) -> subprocess.CompletedProcess[str]:
    verifier = tmp_path / "merkle.py"
    verifier.write_bytes(body(client.get("/api/audit/verifier.py")))
    (tmp_path / "steward.pem").write_text(signing_key().public_key_pem)
    path = tmp_path / "proof.json"
    path.write_bytes(proof)
    return subprocess.run(  # noqa: S603 - our own interpreter running the downloaded verifier
        [sys.executable, "-I", str(verifier), "verify", "--public-key", "steward.pem", str(path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )


def test_the_downloaded_proof_verifies_offline_and_a_tampered_one_does_not(
    client, dataset, compliance_officer, tmp_path
):
    sequence_audit_events()
    event = AuditEvent.objects.get(action="dataset.create")
    client.force_login(compliance_officer)
    url = reverse("audit_event_proof", args=[event.pk])
    assert f'<a class="button" href="{url}" download>Download proof (JSON)</a>' in _page(client, event)

    response = client.get(url)

    assert response.status_code == 200
    assert response["Content-Disposition"] == f'attachment; filename="audit-event-{event.pk}-proof.json"'
    proof = body(response)
    bundle = json.loads(proof)
    assert bundle["filters"] == {"event_id": str(event.pk)}
    assert [(e["event_id"], e["leaf_index"]) for e in bundle["events"]] == [(event.pk, event.leaf.leaf_index)]
    assert merkle.verify_bundle(bundle, signing_key().public_key_pem).is_verified
    intact = _run_verifier(tmp_path, client, proof)
    assert intact.returncode == 0, intact.stderr
    assert intact.stdout.splitlines()[-1] == "OK: 1 of 1 events verified"

    bundle["events"][0]["leaf"]["object_repr"] = "another dataset"
    tampered = _run_verifier(tmp_path, client, json.dumps(bundle).encode())
    assert tampered.returncode == 1
    assert tampered.stdout.splitlines()[-1] == (
        f"FAILED: first failing leaf index {event.leaf.leaf_index} (1 of 1 events failed)"
    )


def test_the_proof_of_an_event_altered_in_the_database_does_not_verify(client, dataset, compliance_officer):
    sequence_audit_events()
    event = AuditEvent.objects.get(action="dataset.create")
    with raw_sql() as cursor:
        cursor.execute("UPDATE governance_auditevent SET object_repr = 'renamed' WHERE id = %s", [event.pk])
    client.force_login(compliance_officer)

    bundle = json.loads(body(client.get(reverse("audit_event_proof", args=[event.pk]))))

    report = merkle.verify_bundle(bundle, signing_key().public_key_pem)
    assert not report.is_verified
    assert report.first_failure.leaf_index == event.leaf.leaf_index


def test_the_proof_is_for_auditors_and_sequenced_events_only(
    client, team, admin, scientist, compliance_officer
):
    do_create_dataset(team=team, name="early", actor=admin)
    sequence_audit_events()
    sequenced = AuditEvent.objects.get(action="dataset.create")
    do_create_dataset(team=team, name="late", actor=admin)
    waiting = AuditEvent.objects.filter(action="dataset.create").latest("pk")

    client.force_login(scientist)
    assert client.get(reverse("audit_event_proof", args=[sequenced.pk])).status_code == 403
    assert "Download proof" not in _page(client, sequenced)

    client.force_login(compliance_officer)
    response = client.get(reverse("audit_event_proof", args=[waiting.pk]))
    assert response.status_code == 409
    assert "Download proof" not in _page(client, waiting)
    assert client.get(reverse("audit_event_proof", args=[waiting.pk + 1000])).status_code == 404


# The compliance officer's dashboard ------------------------------------------------------------


def test_the_compliance_officers_dashboard_shows_the_trails_checkpoint_and_backlog(
    client, admin, team, owner, compliance_officer
):
    client.force_login(compliance_officer)
    page = client.get("/").content.decode()
    trail = _section(page, "The audit trail's integrity")
    assert '<span class="badge badge-queued">None yet</span>' in trail
    assert "the sequencer has not signed a checkpoint" in trail

    checkpoint = sequence_audit_events()
    do_create_dataset(team=team, name="after-the-checkpoint", actor=admin)
    page = client.get("/").content.decode()
    trail = _section(page, "The audit trail's integrity")
    assert '<span class="badge badge-succeeded">Signature valid</span>' in trail
    assert f"{checkpoint.tree_size} events, signed" in trail
    assert "<dt>Waiting for the sequencer</dt><dd>1 event</dd>" in trail
    latest = AuditEvent.objects.latest("pk")
    assert f'<a href="/audit/{latest.pk}/">' in _section(page, "Latest audit events")

    with raw_sql() as cursor:
        cursor.execute("UPDATE governance_auditcheckpoint SET tree_size = tree_size + 1")
    trail = _section(client.get("/").content.decode(), "The audit trail's integrity")
    assert '<span class="badge badge-failed">Signature invalid</span>' in trail

    client.force_login(owner)
    assert "The audit trail's integrity" not in client.get("/").content.decode()


def test_the_trail_filters_by_object_type_with_a_chooser_of_the_logged_types(
    client, admin, team, viewer, compliance_officer
):
    """Issue 12: the object type is chosen, not typed: the chooser lists the types the log holds
    by name, and choosing one lists exactly its events; a script's type with no event lists none."""
    do_set_membership(user=viewer, team=team, role=TeamRole.APPROVER, actor=admin)
    do_create_dataset(team=team, name="chosen", actor=admin)
    client.force_login(compliance_officer)

    page = client.get("/audit/").content.decode()
    chooser = re.search(r'<select name="object_type"[^>]*>(.*?)</select>', page, re.S)
    assert chooser is not None, "no object type chooser on the trail"
    options = re.findall(r'<option value="([^"]*)"[^>]*>([^<]*)</option>', chooser.group(1))
    logged = set(AuditEvent.objects.values_list("object_type", flat=True))
    assert options[0] == ("", "any")
    assert {value for value, _ in options[1:]} == logged
    assert ("dataset", "dataset") in options
    assert ("membership", "membership") in options
    assert [label for _, label in options[1:]] == sorted(label for _, label in options[1:])

    listed = client.get("/audit/", {"object_type": "dataset"})
    assert [event.action for event in listed.context["page"].rows] == ["dataset.create"]
    assert 'value="dataset" selected' in listed.content.decode()
    none = client.get("/api/audit-events/", {"object_type": "driftcheck"})
    assert (none.status_code, none.json()["results"]) == (200, [])
