"""Alerts as an outbox and their escalation, with time passed in (``now=``) from ``T0``.

Delays, repeats, acknowledgement stopping escalation, snooze, auto-resolve, re-opening, and two
workers racing for the same step sending it once (SQLite and PostgreSQL alike).
"""

from __future__ import annotations

import threading

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection

from governance.models import AuditEvent, TeamRole
from monitoring import escalation
from monitoring.actions import checks, monitors
from monitoring.actions.alerts import do_acknowledge_alert, do_resolve_alert, do_snooze_alert
from monitoring.actions.channels import do_create_channel, do_update_channel
from monitoring.actions.checks import do_finish_drift_check, do_run_monitor
from monitoring.actions.monitors import do_update_monitor
from monitoring.actions.policies import do_create_escalation_policy
from monitoring.execute import run_escalations
from monitoring.models import Alert, Channel, EscalationPolicy, Notification
from tests.conftest import mail_count, sent_mail
from tests.monitoring.conftest import BREACH, CLEAN, T0, finish_check, minutes


def test_steps_walk_each_level_with_its_repeats_then_stop():
    levels = [escalation.Level(minutes(15), repeat=1), escalation.Level(minutes(30), repeat=0)]

    steps = [escalation.step_at(levels, index) for index in range(4)]

    assert steps == [
        escalation.Step(0, level=0, repeat=0),
        escalation.Step(1, level=0, repeat=1),
        escalation.Step(2, level=1, repeat=0),
        None,
    ]
    assert escalation.next_due(levels, steps[0], T0) == T0 + minutes(15)
    assert escalation.next_due(levels, steps[1], T0) == T0 + minutes(15)
    assert escalation.next_due(levels, steps[2], T0) is None
    with pytest.raises(ValueError, match="step index must be >= 0, got -1"):
        escalation.step_at(levels, -1)


@pytest.fixture
def two_level_policy(team, owner, scientist, approver, receiver):
    """Level 1: the model owner by email and the team webhook, twice, 15 min apart. Level 2:
    everyone with the data scientist role, by email, 30 min after level 1's last notification."""
    webhook = do_create_channel(team=team, name="ops-hook", kind="webhook", url=receiver.url, actor=owner)
    email = do_create_channel(team=team, name="people", kind="email", actor=owner)
    return do_create_escalation_policy(
        team=team,
        name="drift on-call",
        levels=[
            {"delay_minutes": 15, "repeat": 1, "users": [owner], "channels": [email, webhook]},
            {"delay_minutes": 30, "repeat": 0, "role": TeamRole.DATA_SCIENTIST},
        ],
        actor=owner,
    )


@pytest.fixture
def escalating(monitor, two_level_policy, scientist):
    return do_update_monitor(monitor=monitor, escalation_policy=two_level_policy, actor=scientist)


def _sent() -> list[tuple]:
    return list(
        Notification.objects.order_by("id").values_list(
            "round", "level", "repeat", "channel__name", "recipients", "state"
        )
    )


def test_unacknowledged_alert_repeats_then_moves_up_a_level_then_stops(
    escalating, scientist, receiver, mail_dir, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        check = finish_check(escalating, BREACH, T0, scientist)
    alert = Alert.objects.get()
    # A level's channels in name order.
    level_one = [
        (0, 0, 0, "ops-hook", ["olivia"], "sent"),
        (0, 0, 0, "people", ["olivia@example.com"], "sent"),
    ]
    assert (alert.state, alert.drift_check, alert.escalation_step, alert.escalation_level) == (
        "open",
        check,
        1,
        0,
    )
    assert alert.next_escalation_at == T0 + minutes(15)
    assert _sent() == level_one
    assert len(receiver.requests) == 1

    with django_capture_on_commit_callbacks(execute=True):
        early = run_escalations(T0 + minutes(14))
    with django_capture_on_commit_callbacks(execute=True):
        repeat = run_escalations(T0 + minutes(15))
    with django_capture_on_commit_callbacks(execute=True):
        level_two = run_escalations(T0 + minutes(30))
    with django_capture_on_commit_callbacks(execute=True):
        exhausted = run_escalations(T0 + minutes(300))

    assert early == {"escalated": [], "notifications": {}}
    assert repeat["escalated"] == [alert.pk]
    assert level_two["escalated"] == [alert.pk]
    assert exhausted == {"escalated": [], "notifications": {}}
    assert _sent() == [
        *level_one,
        (0, 0, 1, "ops-hook", ["olivia"], "sent"),
        (0, 0, 1, "people", ["olivia@example.com"], "sent"),
        (0, 1, 0, None, ["dana@example.com"], "sent"),
    ]
    alert.refresh_from_db()
    assert (alert.escalation_step, alert.escalation_level, alert.next_escalation_at) == (3, 1, None)
    assert list(alert.events.values_list("kind", "at", "level", "repeat")) == [
        ("open", T0, None, None),
        ("escalate", T0, 0, 0),
        ("escalate", T0 + minutes(15), 0, 1),
        ("escalate", T0 + minutes(30), 1, 0),
    ]
    assert [r.json()["escalation"] for r in receiver.requests] == [
        {"round": 0, "level": 0, "repeat": 0, "targets": ["olivia"]},
        {"round": 0, "level": 0, "repeat": 1, "targets": ["olivia"]},
    ]
    subjects = sorted(message["Subject"] for message in sent_mail(mail_dir))
    assert subjects == [
        f"[Steward] {alert.title}",
        f"[Steward] {alert.title} (escalated to level 2)",
        f"[Steward] {alert.title} (reminder 1, level 1)",
    ]
    assert (
        list(
            AuditEvent.objects.filter(object_type="alert").order_by("id").values_list("action", "actor_label")
        )
        == [("alert.open", "system")] + [("alert.escalate", "system")] * 3
    )


def test_acknowledging_stops_the_escalation(
    escalating, scientist, owner, receiver, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        finish_check(escalating, BREACH, T0, scientist)
    alert = Alert.objects.get()

    do_acknowledge_alert(alert=alert, actor=owner, now=T0 + minutes(5))
    with django_capture_on_commit_callbacks(execute=True):
        later = run_escalations(T0 + minutes(60))

    alert.refresh_from_db()
    assert later == {"escalated": [], "notifications": {}}
    assert (alert.state, alert.acknowledged_by, alert.acknowledged_at) == (
        "acknowledged",
        owner,
        T0 + minutes(5),
    )
    assert (alert.escalation_step, alert.next_escalation_at) == (1, None)
    assert Notification.objects.count() == 2
    assert len(receiver.requests) == 1
    # A breach while acknowledged adds to the alert without notifying anyone.
    with django_capture_on_commit_callbacks(execute=True):
        finish_check(escalating, BREACH, T0 + minutes(61), scientist)
    alert.refresh_from_db()
    assert (alert.state, alert.occurrences, Notification.objects.count()) == ("acknowledged", 2, 2)


def test_snooze_holds_the_next_step_until_it_ends(
    escalating, scientist, owner, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        finish_check(escalating, BREACH, T0, scientist)
    alert = Alert.objects.get()

    do_snooze_alert(alert=alert, until=T0 + minutes(40), actor=owner, now=T0 + minutes(1))
    with django_capture_on_commit_callbacks(execute=True):
        while_snoozed = run_escalations(T0 + minutes(39))
    with django_capture_on_commit_callbacks(execute=True):
        after = run_escalations(T0 + minutes(40))

    alert.refresh_from_db()
    assert while_snoozed["escalated"] == []
    assert after["escalated"] == [alert.pk]
    assert (alert.state, alert.snoozed_until, alert.snoozed_by) == ("open", T0 + minutes(40), owner)
    assert [(n.level, n.repeat, n.created_at) for n in Notification.objects.order_by("id")] == [
        (0, 0, T0),
        (0, 0, T0),
        (0, 1, T0 + minutes(40)),
        (0, 1, T0 + minutes(40)),
    ]
    assert list(alert.events.values_list("kind", "actor__username", "note")) == [
        ("open", None, alert.events.first().note),
        ("escalate", None, "to olivia"),
        ("snooze", "olivia", f"until {(T0 + minutes(40)).isoformat()}"),
        ("escalate", None, "to olivia"),
    ]


@pytest.mark.parametrize(
    ("until", "message"),
    [(T0, "must be in the future"), (T0 + minutes(60 * 24 * 31), "must be at most 30 days ahead")],
)
def test_snooze_must_end_in_the_next_30_days(monitor, scientist, owner, until, message):
    finish_check(monitor, BREACH, T0, scientist)
    alert = Alert.objects.get()

    with pytest.raises(ValidationError) as raised:
        do_snooze_alert(alert=alert, until=until, actor=owner, now=T0)

    assert raised.value.message_dict == {"until": [message]}
    assert Alert.objects.get().snoozed_until is None


def test_without_a_policy_the_owner_is_emailed_once(
    monitor, scientist, mail_dir, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        finish_check(monitor, BREACH, T0, scientist)
    with django_capture_on_commit_callbacks(execute=True):
        later = run_escalations(T0 + minutes(600))

    alert = Alert.objects.get()
    assert later["escalated"] == []
    assert _sent() == [(0, 0, 0, None, ["olivia@example.com"], "sent")]
    assert (alert.escalation_step, alert.next_escalation_at) == (1, None)
    (mail,) = mail_dir.iterdir()
    message = mail.read_text()
    assert "To: olivia@example.com" in message
    assert "Window: bike-sharing-2012 v1 (8,734 rows)" in message
    assert 'Reference: bike-sharing-hourly v1 where {"yr": 0}' in message
    assert "hum: wasserstein = 0.1713 (threshold 0.1)" in message


def test_clean_checks_resolve_the_alert_after_the_monitors_count(monitor, scientist):
    finish_check(monitor, BREACH, T0, scientist)
    for step in (1, 2):
        finish_check(monitor, CLEAN, T0 + minutes(step), scientist)
    alert = Alert.objects.get()
    assert (alert.state, alert.clean_checks) == ("open", 2)
    # A breach before the third clean check starts the count again.
    finish_check(monitor, BREACH, T0 + minutes(3), scientist)
    for step in (4, 5, 6):
        finish_check(monitor, CLEAN, T0 + minutes(step), scientist)

    alert.refresh_from_db()
    assert (alert.state, alert.resolved_by, alert.resolved_at, alert.clean_checks) == (
        "resolved",
        None,
        T0 + minutes(6),
        3,
    )
    assert (alert.occurrences, alert.next_escalation_at) == (2, None)
    assert list(alert.events.values_list("kind", flat=True)) == [
        "open",
        "clean",
        "clean",
        "repeat",
        "clean",
        "clean",
        "auto_resolve",
    ]
    assert list(
        AuditEvent.objects.filter(object_type="alert").order_by("id").values_list("action", flat=True)
    ) == [
        "alert.open",
        "alert.clean_check",
        "alert.clean_check",
        "alert.repeat",
        "alert.clean_check",
        "alert.clean_check",
        "alert.auto_resolve",
    ]
    # A clean check with nothing open changes nothing.
    finish_check(monitor, CLEAN, T0 + minutes(7), scientist)
    assert Alert.objects.get().clean_checks == 3


def test_auto_resolve_zero_never_resolves(monitor, scientist):
    do_update_monitor(monitor=monitor, auto_resolve_after=0, actor=scientist)
    finish_check(monitor, BREACH, T0, scientist)
    for step in range(1, 6):
        finish_check(monitor, CLEAN, T0 + minutes(step), scientist)

    assert list(Alert.objects.values_list("state", "clean_checks")) == [("open", 5)]


def test_a_breach_soon_after_resolution_reopens_and_escalates_in_a_new_round(
    escalating, scientist, owner, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        finish_check(escalating, BREACH, T0, scientist)
    alert = Alert.objects.get()
    do_acknowledge_alert(alert=alert, actor=owner, now=T0 + minutes(2))
    do_resolve_alert(alert=alert, actor=owner, now=T0 + minutes(3))

    with django_capture_on_commit_callbacks(execute=True):
        finish_check(escalating, BREACH, T0 + minutes(60), scientist)

    alert.refresh_from_db()
    assert Alert.objects.count() == 1
    assert (alert.state, alert.reopened_at, alert.occurrences, alert.escalation_round) == (
        "open",
        T0 + minutes(60),
        2,
        1,
    )
    assert (alert.acknowledged_by, alert.resolved_by, alert.escalation_step) == (None, None, 1)
    assert [(n.round, n.level, n.repeat) for n in Notification.objects.order_by("id")] == [
        (0, 0, 0),
        (0, 0, 0),
        (1, 0, 0),
        (1, 0, 0),
    ]
    assert list(alert.events.values_list("kind", flat=True)) == [
        "open",
        "escalate",
        "acknowledge",
        "resolve",
        "reopen",
        "escalate",
    ]


def test_a_breach_long_after_resolution_opens_a_new_alert(monitor, scientist, owner):
    finish_check(monitor, BREACH, T0, scientist)
    first = Alert.objects.get()
    do_resolve_alert(alert=first, actor=owner, now=T0 + minutes(1))

    finish_check(monitor, BREACH, T0 + minutes(2 + 24 * 60), scientist)

    assert list(Alert.objects.order_by("id").values_list("state", "occurrences", "dedup_key")) == [
        ("resolved", 1, f"monitor:{monitor.pk}"),
        ("open", 1, f"monitor:{monitor.pk}"),
    ]


def test_repeat_breaches_append_to_the_one_open_alert(monitor, scientist):
    checks = [finish_check(monitor, BREACH, T0 + minutes(step), scientist) for step in range(3)]

    alert = Alert.objects.get()
    assert (alert.occurrences, alert.drift_check, alert.last_seen_at) == (3, checks[2], T0 + minutes(2))
    assert alert.evidence["check_id"] == checks[2].pk
    assert list(alert.events.values_list("kind", "drift_check")) == [
        ("open", checks[0].pk),
        ("repeat", checks[1].pk),
        ("repeat", checks[2].pk),
    ]


@pytest.mark.parametrize("verb", ["acknowledge", "snooze", "resolve"])
def test_viewer_may_not_handle_an_alert_and_nothing_changes(monitor, scientist, viewer, fresh, verb):
    finish_check(monitor, BREACH, T0, scientist)
    alert = Alert.objects.get()
    events, audit = alert.events.count(), AuditEvent.objects.count()
    act = {
        "acknowledge": lambda: do_acknowledge_alert(alert=alert, actor=fresh(viewer), now=T0),
        "snooze": lambda: do_snooze_alert(alert=alert, until=T0 + minutes(5), actor=fresh(viewer), now=T0),
        "resolve": lambda: do_resolve_alert(alert=alert, actor=fresh(viewer), now=T0),
    }[verb]

    with pytest.raises(PermissionDenied):
        act()

    assert list(Alert.objects.values_list("state", "snoozed_until", "acknowledged_by", "resolved_by")) == [
        ("open", None, None, None)
    ]
    assert (alert.events.count(), AuditEvent.objects.count()) == (events, audit)


def test_a_disabled_channel_is_skipped_and_the_targets_emailed_instead(
    escalating, scientist, owner, receiver, mail_dir, django_capture_on_commit_callbacks
):
    for channel in Channel.objects.all():
        do_update_channel(channel=channel, is_active=False, actor=owner)

    with django_capture_on_commit_callbacks(execute=True):
        finish_check(escalating, BREACH, T0, scientist)

    assert _sent() == [(0, 0, 0, None, ["olivia@example.com"], "sent")]
    assert receiver.requests == []
    assert mail_count(mail_dir) == 1


# Two workers, one step ------------------------------------------------------------------------


def _in_threads(count: int, work) -> list[BaseException]:
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            barrier.wait()
            work()
        except BaseException as exc:  # reported to the test
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


@pytest.fixture
def no_broker(monkeypatch):
    """Committed checks would be sent to the broker's shared queue, where a development worker of
    another database could take them: these tests run the functions themselves."""
    monkeypatch.setattr(checks, "enqueue_drift_check", lambda check_id: None)
    monkeypatch.setattr(monitors, "enqueue_reference_profiles", lambda monitor_id: None)


@pytest.mark.django_db(transaction=True)
def test_workers_racing_for_the_same_escalation_send_it_once(
    no_broker, escalating, scientist, owner, receiver, mail_dir
):
    # Committed for real (transaction=True): the first step goes out as the check finishes.
    finish_check(escalating, BREACH, T0, scientist)
    assert len(receiver.requests) == 1

    errors = _in_threads(4, lambda: run_escalations(T0 + minutes(15)))

    assert errors == []
    assert [(n.level, n.repeat, n.channel.name, n.state) for n in Notification.objects.order_by("id")] == [
        (0, 0, "ops-hook", "sent"),
        (0, 0, "people", "sent"),
        (0, 1, "ops-hook", "sent"),
        (0, 1, "people", "sent"),
    ]
    assert [r.json()["escalation"]["repeat"] for r in receiver.requests] == [0, 1]
    assert mail_count(mail_dir) == 2
    assert AuditEvent.objects.filter(action="alert.escalate").count() == 2
    assert Alert.objects.get().escalation_step == 2


@pytest.mark.django_db(transaction=True)
def test_workers_racing_to_deliver_a_retry_send_it_once(no_broker, escalating, scientist, receiver):
    receiver.statuses = [503, 200]
    finish_check(escalating, BREACH, T0, scientist)
    hook = Notification.objects.get(channel__name="ops-hook")
    assert (hook.state, hook.attempts) == ("retrying", 1)

    errors = _in_threads(4, lambda: run_escalations(T0 + minutes(1)))

    hook.refresh_from_db()
    assert errors == []
    assert (hook.state, hook.attempts, hook.error) == ("sent", 2, "")
    assert len(receiver.requests) == 2


def test_a_level_can_name_another_teams_owners(
    monitor, team, other_team, owner, scientist, outsider, admin, django_capture_on_commit_callbacks
):
    from governance.actions.teams import do_set_membership

    # The platform team's model owner is also a viewer in Mobility, so Mobility's owner may name it.
    do_set_membership(user=outsider, team=other_team, role=TeamRole.MODEL_OWNER, actor=admin)
    do_set_membership(user=owner, team=other_team, role=TeamRole.VIEWER, actor=admin)
    policy = do_create_escalation_policy(
        team=team, name="platform", levels=[{"owners_of": other_team}], actor=owner
    )
    do_update_monitor(monitor=monitor, escalation_policy=policy, actor=scientist)

    with django_capture_on_commit_callbacks(execute=True):
        finish_check(monitor, BREACH, T0, scientist)

    assert _sent() == [(0, 0, 0, None, ["oscar@example.com"], "sent")]
    assert Alert.objects.get().events.get(kind="escalate").note == "to oscar"


@pytest.mark.django_db(transaction=True)
def test_two_checks_finishing_together_make_one_alert(no_broker, monitor, scientist):
    checks = [do_run_monitor(monitor=monitor, actor=scientist, now=T0) for _ in range(2)]
    pending = list(checks)
    lock = threading.Lock()

    def finish() -> None:
        with lock:
            check = pending.pop()
        do_finish_drift_check(check.pk, result=BREACH, now=T0)

    errors = _in_threads(2, finish)

    assert errors == []
    assert list(Alert.objects.values_list("state", "occurrences")) == [("open", 2)]
    assert sorted(Alert.objects.get().events.values_list("kind", flat=True)) == ["escalate", "open", "repeat"]


@pytest.mark.parametrize("delay", [0, 30 * 24 * 60 + 1, 10**18])
def test_a_level_delay_must_be_between_a_minute_and_30_days(team, owner, delay):
    """10**18 minutes once passed and then broke every escalation run (timedelta overflow)."""
    with pytest.raises(ValidationError) as raised:
        do_create_escalation_policy(
            team=team, name="slow", levels=[{"delay_minutes": delay, "users": [owner]}], actor=owner
        )

    assert raised.value.message_dict == {
        "levels": ["level 1: delay_minutes must be a whole number of minutes from 1 to 43200"]
    }
    assert EscalationPolicy.objects.count() == 0
