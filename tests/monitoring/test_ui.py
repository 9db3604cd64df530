"""The model owner's monitoring pages: monitors, alerts (snooze), channels and escalation policies."""

from __future__ import annotations

from django.urls import reverse
from django_celery_beat.models import PeriodicTask

from governance.models import AuditEvent
from monitoring.actions.channels import do_create_channel
from monitoring.actions.checks import claim_drift_check, do_request_drift_check, record_check_progress
from monitoring.actions.monitors import do_create_monitor
from monitoring.models import Alert, Channel, EscalationPolicy, Monitor
from tests.monitoring.conftest import BREACH, T0, finish_check

MONITOR_FORM = {
    "name": "nightly",
    "source": "predictions",
    "window_versions": 1,
    "drift_share": 0.5,
    "min_sample_size": 2000,
    "check_predictions": "on",
    "performance_tolerance": 0.1,
    "severity": "critical",
    "schedule_minutes": 1440,
    "auto_resolve_after": 2,
    "reopen_within_hours": 24,
    "thresholds": '{"hum": 0.2}',
}


def test_a_scientist_creates_and_edits_a_monitor_on_the_version_page(client, registered_version, scientist):
    client.force_login(scientist)
    assert "New monitor" in client.get(registered_version.get_absolute_url()).content.decode()

    created = client.post(reverse("monitor_create", args=[registered_version.pk]), MONITOR_FORM)
    monitor = Monitor.objects.get()
    edited = client.post(reverse("monitor_edit", args=[monitor.pk]), MONITOR_FORM | {"schedule_minutes": 60})
    page = client.get(registered_version.get_absolute_url()).content.decode()

    assert (created.status_code, edited.status_code) == (302, 302)
    monitor.refresh_from_db()
    assert (monitor.severity, monitor.thresholds, monitor.check_performance, monitor.auto_resolve_after) == (
        "critical",
        {"hum": 0.2},
        False,
        2,
    )
    assert (monitor.reference_where, monitor.schedule_minutes, PeriodicTask.objects.get().interval.every) == (
        {"yr": 0},
        60,
        60,
    )
    assert f'<a href="/monitors/{monitor.pk}/">nightly</a>' in page
    assert "every 60 min" in page


def test_the_monitor_form_names_the_bad_field(client, registered_version, scientist):
    client.force_login(scientist)

    response = client.post(
        reverse("monitor_create", args=[registered_version.pk]), MONITOR_FORM | {"thresholds": "{hum: 0.2}"}
    )
    unknown = client.post(
        reverse("monitor_create", args=[registered_version.pk]), MONITOR_FORM | {"columns": "hum, rain"}
    )

    assert response.status_code == 400
    assert (
        "not JSON: Expecting property name enclosed in double quotes (line 1, column 2)"
        in response.content.decode()
    )
    assert unknown.status_code == 400
    assert (
        "&#x27;rain&#x27; not in the reference dataset version bike-sharing-hourly v1"
        in unknown.content.decode()
    )
    assert Monitor.objects.count() == 0


def test_a_viewer_cannot_create_pause_or_run_a_monitor(client, registered_version, viewer, scientist):
    monitor = do_create_monitor(model_version=registered_version, name="m", actor=scientist)
    client.force_login(viewer)
    events = AuditEvent.objects.count()

    page = client.get(monitor.get_absolute_url()).content.decode()
    created = client.post(reverse("monitor_create", args=[registered_version.pk]), MONITOR_FORM)
    paused = client.post(reverse("monitor_pause", args=[monitor.pk]))

    assert "Run now" not in page
    assert created.status_code == 403
    assert "you may not change objects of this team" in created.content.decode()
    assert paused.status_code == 302
    assert list(Monitor.objects.values_list("name", "is_active")) == [("m", True)]
    assert AuditEvent.objects.count() == events


def test_the_owner_snoozes_an_alert_and_sees_its_history(client, monitor, scientist, owner):
    finish_check(monitor, BREACH, T0, scientist)
    alert = Alert.objects.get()
    client.force_login(owner)

    response = client.post(reverse("alert_snooze", args=[alert.pk]), {"hours": "24"})
    page = client.get(alert.get_absolute_url()).content.decode()

    alert.refresh_from_db()
    assert response.status_code == 302
    assert alert.snoozed_by == owner
    assert f"snoozed until {alert.snoozed_until:%Y-%m-%d %H:%M}" in page
    assert "<td>Snoozed</td>" in page
    assert "<td>Opened</td>" in page
    assert "Nothing sent yet." in page


def test_a_viewer_cannot_snooze(client, monitor, scientist, viewer):
    finish_check(monitor, BREACH, T0, scientist)
    client.force_login(viewer)

    response = client.post(reverse("alert_snooze", args=[Alert.objects.get().pk]), {"hours": "24"})

    assert response.status_code == 403
    assert Alert.objects.get().snoozed_until is None


def test_a_new_webhook_channel_shows_its_secret_once(client, team, owner):
    client.force_login(owner)

    created = client.post(
        reverse("channel_list"),
        {"team": team.pk, "name": "ops", "kind": "webhook", "url": "https://hooks.example/x"},
    )
    channel = Channel.objects.get()
    first = client.get(channel.get_absolute_url()).content.decode()
    second = client.get(channel.get_absolute_url()).content.decode()

    assert created["Location"] == channel.get_absolute_url()
    assert channel.secret in first
    assert channel.secret not in second
    assert channel.owner == owner


def test_only_model_owners_see_the_new_channel_form(client, team, scientist):
    client.force_login(scientist)

    page = client.get(reverse("channel_list")).content.decode()
    refused = client.post(reverse("channel_list"), {"team": team.pk, "name": "x", "kind": "email"})

    assert "New channel" not in page
    assert refused.status_code == 403
    assert Channel.objects.count() == 0


def test_an_escalation_policy_is_made_of_levels_in_a_formset(client, team, owner, scientist):
    channel = do_create_channel(team=team, name="ops", kind="email", actor=owner)
    client.force_login(owner)
    form = {
        "team": team.pk,
        "name": "on-call",
        "description": "",
        "levels-TOTAL_FORMS": 2,
        "levels-INITIAL_FORMS": 0,
        "levels-0-delay_minutes": 10,
        "levels-0-repeat": 1,
        "levels-0-users": [owner.pk],
        "levels-0-channels": [channel.pk],
        "levels-1-delay_minutes": 15,
        "levels-1-repeat": 0,
        "levels-1-role": "data_scientist",
    }

    created = client.post(reverse("escalation_policy_create"), form)
    policy = EscalationPolicy.objects.get()
    page = client.get(policy.get_absolute_url()).content.decode()

    assert created["Location"] == policy.get_absolute_url()
    assert policy.level_specs == [
        {
            "delay_minutes": 10,
            "repeat": 1,
            "users": [owner.pk],
            "owners_of": None,
            "role": "",
            "channels": [channel.pk],
        },
        {
            "delay_minutes": 15,
            "repeat": 0,
            "users": [],
            "owners_of": None,
            "role": "data_scientist",
            "channels": [],
        },
    ]
    assert "After 35 minutes without an acknowledgement nothing more is sent." in page


def test_a_running_check_shows_its_progress_and_polls(
    client, registered_version, current_dataset_version, scientist
):
    check = do_request_drift_check(
        model_version=registered_version, current_dataset_version=current_dataset_version, actor=scientist
    )
    claim_drift_check(check.pk)
    record_check_progress(check.pk, 0.5, "comparing 12 columns")
    client.force_login(scientist)

    page = client.get(check.get_absolute_url()).content.decode()

    assert 'hx-trigger="every 2s"' in page
    assert '<progress class="wide" value="0.500" max="1"></progress>' in page
    assert "The check is running: comparing 12 columns" in page
