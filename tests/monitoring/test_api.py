"""The monitoring API: monitors, escalation policies, notifications, alert snooze and history."""

from __future__ import annotations

import datetime

import pytest
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from governance.models import AuditEvent
from monitoring.actions.alerts import do_resolve_alert
from monitoring.actions.channels import do_create_channel
from monitoring.actions.monitors import do_create_monitor, do_update_monitor
from monitoring.actions.policies import do_create_escalation_policy
from monitoring.models import Alert, Channel, DriftCheck, EscalationPolicy, Monitor
from tests.monitoring.conftest import BREACH, T0, finish_check


def test_monitor_crud_through_the_api(client_for, scientist, registered_version, current_dataset_version):
    client = client_for(scientist)

    created = client.post(
        "/api/monitors/",
        {
            "model_version": registered_version.pk,
            "name": "batches",
            "source": "dataset",
            "current_dataset": current_dataset_version.dataset_id,
            "thresholds": {"hum": 0.2},
            "schedule_minutes": 30,
            "runbook_url": "https://wiki.example/drift",
        },
        format="json",
    )
    monitor_id = created.json()["id"]
    patched = client.patch(f"/api/monitors/{monitor_id}/", {"window_versions": 3}, format="json")
    paused = client.post(f"/api/monitors/{monitor_id}/pause/")
    run = client.post(f"/api/monitors/{monitor_id}/run/")
    deleted = client.delete(f"/api/monitors/{monitor_id}/")

    assert created.status_code == 201, created.json()
    body = created.json()
    assert (body["reference_dataset_version"], body["reference_where"], body["columns"][-1]) == (
        registered_version.training_dataset_version_id,
        {"yr": 0},
        "cnt",
    )
    assert (body["thresholds"], body["schedule_minutes"], body["is_active"]) == ({"hum": 0.2}, 30, True)
    assert (patched.status_code, patched.json()["window_versions"]) == (200, 3)
    assert (paused.status_code, paused.json()["is_active"]) == (200, False)
    assert (run.status_code, run.json()["state"], run.json()["monitor"]) == (201, "queued", monitor_id)
    assert run.json()["window"]["labels"] == ["bike-sharing-2012 v1"]
    assert deleted.status_code == 204
    assert (Monitor.objects.count(), PeriodicTask.objects.count(), DriftCheck.objects.count()) == (0, 0, 1)
    assert list(
        AuditEvent.objects.filter(object_type="monitor").order_by("id").values_list("action", flat=True)
    ) == [
        "monitor.create",
        "monitor.update",
        "monitor.pause",
        "monitor.delete",
    ]


def test_monitor_api_names_the_bad_field_and_hides_other_teams(
    client_for, scientist, outsider, viewer, registered_version, monitor
):
    bad = client_for(scientist).post(
        "/api/monitors/",
        {"model_version": registered_version.pk, "name": "x", "methods": {"hum": "ttest"}},
        format="json",
    )
    foreign = client_for(outsider).post(
        "/api/monitors/", {"model_version": registered_version.pk, "name": "x"}, format="json"
    )
    hidden = client_for(outsider).get(f"/api/monitors/{monitor.pk}/")
    denied = client_for(viewer).post(f"/api/monitors/{monitor.pk}/run/")

    assert bad.status_code == 400
    assert list(bad.json()) == ["methods"]
    assert (foreign.status_code, foreign.json()) == (
        400,
        {"model_version": [f'Invalid pk "{registered_version.pk}" - object does not exist.']},
    )
    assert hidden.status_code == 404
    assert (denied.status_code, denied.json()) == (403, {"detail": "you may not change objects of this team"})
    assert (Monitor.objects.count(), DriftCheck.objects.count()) == (1, 0)


def _two_levels(team, owner) -> list[dict]:
    """Level 1: the owner and an email channel, 10 minutes, twice more; level 2: the team's owners
    and its data scientists after 30 minutes."""
    channel = do_create_channel(team=team, name="ops", kind="email", actor=owner)
    return [
        {"delay_minutes": 10, "repeat": 2, "users": [owner.pk], "channels": [channel.pk]},
        {"delay_minutes": 30, "owners_of": team.pk, "role": "data_scientist"},
    ]


def test_escalation_policy_is_created_and_replaced_through_the_api(client_for, team, owner, scientist):
    levels = _two_levels(team, owner)
    channel = Channel.objects.get()
    client = client_for(owner)

    created = client.post(
        "/api/escalation-policies/", {"team": team.pk, "name": "on-call", "levels": levels}, format="json"
    )
    policy_id = created.json()["id"]
    replaced = client.patch(
        f"/api/escalation-policies/{policy_id}/",
        {"levels": [{"delay_minutes": 5, "users": [scientist.pk]}]},
        format="json",
    )

    assert created.status_code == 201, created.json()
    assert created.json()["levels"] == [
        {
            "position": 0,
            "delay_minutes": 10,
            "repeat": 2,
            "users": [owner.pk],
            "owners_of": None,
            "role": "",
            "channels": [channel.pk],
        },
        {
            "position": 1,
            "delay_minutes": 30,
            "repeat": 0,
            "users": [],
            "owners_of": team.pk,
            "role": "data_scientist",
            "channels": [],
        },
    ]
    assert (replaced.status_code, replaced.json()["levels"]) == (
        200,
        [
            {
                "position": 0,
                "delay_minutes": 5,
                "repeat": 0,
                "users": [scientist.pk],
                "owners_of": None,
                "role": "",
                "channels": [],
            }
        ],
    )
    assert list(EscalationPolicy.objects.values_list("name", flat=True)) == ["on-call"]
    event = AuditEvent.objects.filter(action="escalation_policy.update").get()
    assert event.before["level_specs"][0] == {
        "delay_minutes": 10,
        "repeat": 2,
        "users": [owner.pk],
        "owners_of": None,
        "role": "",
        "channels": [channel.pk],
    }
    assert event.after["level_specs"] == [
        {
            "delay_minutes": 5,
            "repeat": 0,
            "users": [scientist.pk],
            "owners_of": None,
            "role": "",
            "channels": [],
        }
    ]


def test_escalation_policy_refusals_through_the_api(client_for, team, owner, scientist, viewer):
    levels = _two_levels(team, owner)
    client = client_for(owner)

    refused = client_for(scientist).post(
        "/api/escalation-policies/", {"team": team.pk, "name": "mine", "levels": levels}, format="json"
    )
    no_target = client.post(
        "/api/escalation-policies/",
        {"team": team.pk, "name": "empty", "levels": [{"delay_minutes": 5}]},
        format="json",
    )
    outsider_user = client.post(
        "/api/escalation-policies/",
        {"team": team.pk, "name": "stranger", "levels": [{"users": [viewer.pk + 1000]}]},
        format="json",
    )

    assert (refused.status_code, refused.json()) == (
        403,
        {"detail": "you may not manage objects of this team"},
    )
    assert (no_target.status_code, no_target.json()) == (
        400,
        {"levels": ["level 1: name at least one target (a user, a team's owners, a role) or a channel"]},
    )
    assert outsider_user.status_code == 400
    assert EscalationPolicy.objects.count() == 0


def test_a_policy_in_use_cannot_be_deleted(client_for, team, owner, scientist, monitor):
    policy = do_create_escalation_policy(team=team, name="p", levels=[{"users": [owner]}], actor=owner)
    do_update_monitor(monitor=monitor, escalation_policy=policy, actor=scientist)

    in_use = client_for(owner).delete(f"/api/escalation-policies/{policy.pk}/")
    do_update_monitor(monitor=monitor, escalation_policy=None, actor=scientist)
    unused = client_for(owner).delete(f"/api/escalation-policies/{policy.pk}/")

    assert (in_use.status_code, in_use.json()) == (
        400,
        {"detail": ["monitors hourly use this policy; change them first"]},
    )
    assert unused.status_code == 204
    assert EscalationPolicy.objects.count() == 0


def test_snooze_and_history_through_the_api(client_for, monitor, scientist, owner, viewer):
    finish_check(monitor, BREACH, T0, scientist)
    alert = Alert.objects.get()
    until = timezone.now() + datetime.timedelta(hours=4)

    snoozed = client_for(owner).post(
        f"/api/alerts/{alert.pk}/snooze/", {"until": until.isoformat()}, format="json"
    )
    past = client_for(owner).post(
        f"/api/alerts/{alert.pk}/snooze/", {"until": "2020-01-01T00:00:00Z"}, format="json"
    )
    denied = client_for(viewer).post(
        f"/api/alerts/{alert.pk}/snooze/", {"until": until.isoformat()}, format="json"
    )
    # Who may comes before what: a viewer asking for a past or far time hears 403, not the rule.
    denied_bad_time = [
        client_for(viewer).post(f"/api/alerts/{alert.pk}/snooze/", {"until": when}, format="json").status_code
        for when in ("2020-01-01T00:00:00Z", "2999-01-01T00:00:00Z")
    ]
    history = client_for(viewer).get(f"/api/alerts/{alert.pk}/events/")

    assert (snoozed.status_code, snoozed.json()["snoozed_by"]) == (200, "olivia")
    assert (past.status_code, past.json()) == (400, {"until": ["must be in the future"]})
    assert denied.status_code == 403
    assert denied_bad_time == [403, 403]
    assert [(e["kind"], e["actor"]) for e in history.json()] == [("open", None), ("snooze", "olivia")]
    assert Alert.objects.get().snoozed_by == owner


def test_notifications_list_is_restricted_and_costs_constant_queries(
    client_for,
    fresh,
    monitor,
    scientist,
    owner,
    outsider,
    viewer,
    django_assert_num_queries,
    django_capture_on_commit_callbacks,
):
    for minute in range(3):
        with django_capture_on_commit_callbacks(execute=True):
            finish_check(monitor, BREACH, T0 + datetime.timedelta(minutes=minute), scientist)
        do_resolve_alert(
            alert=Alert.objects.get(state="open"), actor=owner, now=T0 + datetime.timedelta(minutes=minute)
        )
    client = client_for(fresh(viewer))

    # 1 platform and team roles (one UNION), 2 the page
    with django_assert_num_queries(2):
        listed = client.get("/api/notifications/")

    body = listed.json()
    assert len(body["results"]) == 3
    assert [(n["round"], n["level"], n["kind"], n["state"], n["recipients"]) for n in body["results"]] == [
        (2, 0, "email", "sent", ["olivia@example.com"]),
        (1, 0, "email", "sent", ["olivia@example.com"]),
        (0, 0, "email", "sent", ["olivia@example.com"]),
    ]
    assert client_for(outsider).get("/api/notifications/").json()["results"] == []


@pytest.mark.parametrize("path", ["/api/monitors/", "/api/escalation-policies/", "/api/channels/"])
def test_lists_cost_constant_queries(
    client_for, fresh, team, owner, viewer, registered_version, scientist, path, django_assert_num_queries
):
    for name in ("a", "b", "c"):
        channel = do_create_channel(team=team, name=name, kind="email", actor=owner)
        do_create_escalation_policy(
            team=team, name=name, levels=[{"users": [owner], "channels": [channel]}], actor=owner
        )
        do_create_monitor(model_version=registered_version, name=name, actor=scientist)
    client = client_for(fresh(viewer))
    # 1 platform and team roles (one UNION), 2 the page; policies also prefetch 3 levels, 4 their
    # users and 5 their channels; channels join their owner.
    expected = 5 if path == "/api/escalation-policies/" else 2

    with django_assert_num_queries(expected):
        listed = client.get(path)

    assert len(listed.json()["results"]) == 3
