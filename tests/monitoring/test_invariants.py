"""What one monitoring row must satisfy by itself (issue 8): each rule is refused twice, by the
model's ``clean()`` (naming the field) and by its check constraint (a write that skips the model)."""

from __future__ import annotations

import datetime

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from monitoring.actions.alerts import do_acknowledge_alert, do_resolve_alert
from monitoring.actions.channels import do_create_channel
from monitoring.actions.checks import do_request_drift_check
from monitoring.actions.monitors import do_create_monitor
from monitoring.actions.policies import do_create_escalation_policy
from monitoring.models import Alert, Channel, DriftCheck, EscalationLevel, Monitor
from tests.monitoring.conftest import BREACH, T0, finish_check


def _refused(row, changes: dict, field: str) -> None:
    """``changes`` fail ``row.clean()`` on ``field`` and are refused by the database; nothing changes."""
    model = type(row)
    before = model.objects.filter(pk=row.pk).values(*changes).get()
    with pytest.raises(IntegrityError), transaction.atomic():
        model.objects.filter(pk=row.pk).update(**changes)
    for name, value in changes.items():
        setattr(row, name, value)
    with pytest.raises(ValidationError) as refused:
        row.clean()
    assert list(refused.value.message_dict) == [field]
    assert model.objects.filter(pk=row.pk).values(*changes).get() == before


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"window_versions": 0}, "window_versions"),
        ({"window_versions": 1001}, "window_versions"),
        ({"schedule_minutes": 366 * 24 * 60 + 1}, "schedule_minutes"),
        ({"reopen_within_hours": 366 * 24 + 1}, "reopen_within_hours"),
        ({"auto_resolve_after": 10_001}, "auto_resolve_after"),
        ({"min_sample_size": 0}, "min_sample_size"),
        ({"drift_share": 0.0}, "drift_share"),
        ({"drift_share": 1.5}, "drift_share"),
        ({"performance_tolerance": 1.0}, "performance_tolerance"),
        ({"performance_tolerance": -0.1}, "performance_tolerance"),
        ({"performance_test": "ttest"}, "performance_test"),
        ({"performance_alpha": 0.5}, "performance_alpha"),
        ({"performance_alpha": 0.0}, "performance_alpha"),
        ({"performance_min_effect": 1.0}, "performance_min_effect"),
        ({"source": "dataset"}, "current_dataset"),
    ],
)
def test_a_monitor_keeps_its_settings_in_range(registered_version, scientist, changes, field):
    monitor = do_create_monitor(model_version=registered_version, name="m", actor=scientist)
    monitor.clean()  # what the action wrote passes

    _refused(monitor, changes, field)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"drift_share": 0.0}, "drift_share"),
        ({"progress": 1.01}, "progress"),
        ({"progress": -0.5}, "progress"),
        ({"drifted_fraction": 2.0}, "drifted_fraction"),
        ({"started_at": T0, "finished_at": T0 - datetime.timedelta(seconds=1)}, "finished_at"),
        ({"state": "succeeded"}, "finished_at"),
    ],
)
def test_a_drift_check_keeps_its_numbers_and_times_consistent(
    registered_version, current_dataset_version, scientist, changes, field
):
    check = do_request_drift_check(
        model_version=registered_version, current_dataset_version=current_dataset_version, actor=scientist
    )
    check.clean()

    _refused(check, changes, field)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"occurrences": 0}, "occurrences"),
        ({"state": "acknowledged"}, "acknowledged_at"),
        ({"state": "resolved", "resolved_at": T0}, "next_escalation_at"),
        ({"state": "resolved", "resolved_at": None, "next_escalation_at": None}, "resolved_at"),
        (
            {"state": "resolved", "resolved_at": T0, "next_escalation_at": None, "snoozed_until": T0},
            "snoozed_until",
        ),
    ],
)
def test_an_alert_in_a_state_carries_what_the_state_needs(monitor, scientist, changes, field):
    finish_check(monitor, BREACH, T0, scientist)
    alert = Alert.objects.get()
    alert.clean()

    _refused(alert, changes, field)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"delay_minutes": 0}, "delay_minutes"),
        ({"delay_minutes": 30 * 24 * 60 + 1}, "delay_minutes"),
        ({"repeat": 101}, "repeat"),
        ({"role": "janitor"}, "role"),
    ],
)
def test_an_escalation_level_keeps_its_delay_and_repeats_in_range(team, owner, changes, field):
    policy = do_create_escalation_policy(
        team=team, name="p", levels=[{"delay_minutes": 15, "repeat": 1, "users": [owner]}], actor=owner
    )
    level = EscalationLevel.objects.get(policy=policy)
    level.clean()

    _refused(level, changes, field)


@pytest.mark.parametrize(
    ("kind", "changes", "field"),
    [
        ("email", {"url": "https://hooks.example/x"}, "url"),
        ("webhook", {"url": "ftp://hooks.example/x"}, "url"),
        ("webhook", {"email_address": "ops@example.com"}, "email_address"),
        ("slack", {"kind": "pager"}, "kind"),
    ],
)
def test_a_channel_kind_matches_its_address(team, owner, kind, changes, field):
    url = "" if kind == "email" else "https://hooks.example/steward"
    channel = do_create_channel(team=team, name="c", kind=kind, url=url, actor=owner)
    channel.clean()

    _refused(Channel.objects.get(pk=channel.pk), changes, field)


def test_rows_the_actions_wrote_satisfy_every_rule(monitor, scientist, owner):
    finish_check(monitor, BREACH, T0, scientist)
    alert = Alert.objects.get()
    do_acknowledge_alert(alert=alert, actor=owner, now=T0)
    do_resolve_alert(alert=alert, actor=owner, now=T0)

    for model in (Monitor, DriftCheck, Alert):
        for row in model.objects.all():
            row.clean()
    assert Alert.objects.get().state == "resolved"
