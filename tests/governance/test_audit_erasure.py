"""Erasing a person from the audit trail: their personal details are redacted, every proof still
verifies, and only platform admins may erase (issue 3)."""

from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied
from django.core.management import call_command

from governance import merkle
from governance.actions.datasets import do_create_dataset
from governance.actions.teams import do_set_membership
from governance.actions.users import do_create_user
from governance.audit.erasure import do_erase_personal_data
from governance.audit.leaf import personal_details
from governance.audit.sequencer import sequence_audit_events
from governance.audit.verify import verify_audit_log, verify_event
from governance.models import AuditEvent, AuditPersonalData, TeamRole


def test_erasing_a_person_redacts_their_details_and_keeps_every_proof(
    admin, team, scientist, dataset_version
):
    do_set_membership(user=scientist, team=team, role=TeamRole.APPROVER, actor=admin)
    sequence_audit_events()
    naming_dana = [
        ("membership.grant", "admin", "[erased] in Mobility", {"user": "[erased]", "team": "Mobility"}),
        ("dataset.create", "[erased]", "bike-sharing-hourly", None),
        ("dataset_version.register", "[erased]", "bike-sharing-hourly v1", None),
        ("membership.grant", "admin", "[erased] in Mobility", {"user": "[erased]", "team": "Mobility"}),
    ]

    changed = do_erase_personal_data(scientist, actor=admin)

    assert changed == 4
    events = AuditEvent.objects.exclude(action="team.create").exclude(action="user.erase_personal_data")
    rows = [
        (
            e.action,
            e.actor_label,
            e.object_repr,
            {k: v for k, v in (e.after or {}).items() if k in {"user", "team"}} or None,
        )
        for e in events.order_by("id")
    ]
    assert rows == naming_dana
    for event in AuditEvent.objects.all():
        personal = merkle.canonical_json(personal_details(event))
        assert b"dana" not in personal
    assert set(AuditPersonalData.objects.values_list("event__action", flat=True)) == {
        "team.create",
        "user.erase_personal_data",
    }
    erasure = AuditEvent.objects.get(action="user.erase_personal_data")
    assert (erasure.actor_label, erasure.object_repr, erasure.after) == (
        "admin",
        f"user #{scientist.pk}",
        {"events": 4, "sequenced_events": 4},
    )
    sequence_audit_events()
    report = verify_audit_log()
    assert (report.is_ok, report.erased_count, report.leaf_count) == (True, 4, 6)
    verification = verify_event(
        AuditEvent.objects.select_related("leaf", "personal_data").get(action="dataset.create")
    )
    assert (verification.status, verification.detail) == (
        "verified",
        "personal details erased; the rest of the event is verified",
    )


def test_details_erased_before_sequencing_are_committed_to_as_redacted(admin, scientist, dataset):
    changed = do_erase_personal_data(scientist, actor=admin)
    sequence_audit_events()

    assert changed == 2
    assert AuditPersonalData.objects.count() == AuditEvent.objects.count() == 4
    report = verify_audit_log()
    assert (report.is_ok, report.erased_count) == (True, 0)
    assert AuditEvent.objects.get(action="dataset.create").actor_label == "[erased]"


def test_only_platform_admins_erase_personal_data(owner, scientist, dataset):
    sequence_audit_events()

    with pytest.raises(PermissionDenied, match="only a platform admin may erase personal data"):
        do_erase_personal_data(scientist, actor=owner)

    assert AuditEvent.objects.get(action="dataset.create").actor_label == "dana"
    assert AuditPersonalData.objects.count() == AuditEvent.objects.count() == 4
    assert not AuditEvent.objects.filter(action="user.erase_personal_data").exists()


def test_the_erase_command(admin, scientist, dataset, capsys):
    call_command("audit_erase_personal_data", "dana", "--actor", "admin")

    assert capsys.readouterr().out == "erased dana's details from 2 audit events\n"
    assert AuditEvent.objects.get(action="dataset.create").actor_label == "[erased]"


def test_a_username_is_erased_as_a_whole_word_only(admin, team):
    al = do_create_user(username="al", email="al@example.com", actor=admin)
    do_create_dataset(team=team, name="al-final totals", actor=admin)
    do_set_membership(user=al, team=team, role=TeamRole.VIEWER, actor=admin)

    do_erase_personal_data(al, actor=admin)

    assert AuditEvent.objects.get(action="dataset.create").object_repr == "al-final totals"
    assert AuditEvent.objects.get(action="membership.grant").object_repr == "[erased] in Mobility"
    assert AuditEvent.objects.get(action="user.create").after == {"username": "[erased]", "email": "[erased]"}


def test_erasing_a_user_named_like_a_role_keeps_other_peoples_grants(admin, team, scientist):
    """A user called "viewer" is erased from their own events; what other people were granted
    (``{"role": "viewer"}``) is the platform's vocabulary and stays."""
    viewer = do_create_user(username="viewer", actor=admin)
    vera = do_create_user(username="vera", actor=admin)
    do_set_membership(user=vera, team=team, role=TeamRole.VIEWER, actor=admin)
    do_set_membership(user=viewer, team=team, role=TeamRole.VIEWER, actor=admin)

    do_erase_personal_data(viewer, actor=admin)

    grants = AuditEvent.objects.filter(action="membership.grant").order_by("id")
    vera_grant, viewer_grant = grants.filter(object_repr__startswith="vera").get(), grants.last()
    assert vera_grant.after["role"] == TeamRole.VIEWER
    assert viewer_grant.after["role"] == TeamRole.VIEWER
    assert viewer_grant.object_repr.startswith("[erased]")
    assert (
        AuditEvent.objects.get(action="user.create", object_id=str(viewer.pk)).after["username"] == "[erased]"
    )
