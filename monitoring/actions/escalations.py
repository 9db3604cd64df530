"""Escalation: send an alert's due step once, to its level's targets through its channels.

The arithmetic (which level and repeat a step is, when the next is due) is ``monitoring.escalation``.
"""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING

from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from governance.audit import record_audit_event
from governance.models import Membership, TeamRole
from monitoring import escalation
from monitoring.actions.deliveries import deliver_notifications
from monitoring.actions.history import add_alert_event
from monitoring.models import (
    Alert,
    AlertEventKind,
    AlertKind,
    AlertState,
    ChannelKind,
    EscalationLevel,
    Notification,
)

if TYPE_CHECKING:
    from django.contrib.auth.models import User

DEFAULT_LEVELS = (escalation.Level(delay=datetime.timedelta(hours=1), repeat=0),)


def _levels_of(alert: Alert) -> list[EscalationLevel | None]:
    """The alert's policy levels (targets and channels prefetched), or [None] for the default level."""
    if alert.escalation_policy_id is None:
        return [None]
    return list(
        EscalationLevel.objects.filter(policy_id=alert.escalation_policy_id)
        .select_related("owners_of")
        .prefetch_related("users", "channels")
        .order_by("position")
    ) or [None]


def _plans(levels: list[EscalationLevel | None]) -> list[escalation.Level]:
    """The levels' step arithmetic (``monitoring.escalation``)."""
    if levels == [None]:
        return list(DEFAULT_LEVELS)
    return [level.plan() for level in levels if level is not None]


def level_targets(alert: Alert, level: EscalationLevel | None) -> list[User]:
    """The people a level notifies: its users, a team's model owners, and the alert team's members
    with its role. Without a policy: the model's owner for a drift alert, the team's model owners
    for a budget alert (they decide to spend more), else the budget's owner. Sorted by username."""
    if level is None:
        if alert.kind != AlertKind.BUDGET:
            return [alert.owner]
        owners = Membership.objects.filter(team_id=alert.team_id, role=TeamRole.MODEL_OWNER)
        team_owners = [membership.user for membership in owners.select_related("user")] or [alert.owner]
        return sorted(team_owners, key=lambda user: user.get_username())
    people = {user.pk: user for user in level.users.all()}
    memberships = Membership.objects.none()
    if level.owners_of_id is not None:
        memberships |= Membership.objects.filter(team_id=level.owners_of_id, role=TeamRole.MODEL_OWNER)
    if level.role:
        memberships |= Membership.objects.filter(team_id=alert.team_id, role=level.role)
    for membership in memberships.select_related("user"):
        people[membership.user_id] = membership.user
    return sorted(people.values(), key=lambda user: user.get_username())


def do_escalate_alert(alert_id: int, *, now: datetime.datetime | None = None) -> list[int]:
    """Send the alert's due escalation step, if it is still due; returns the new notification ids.

    The step is claimed with a conditional UPDATE of the alert (state open, not snoozed, the same
    round, step and due time), so of several workers racing for it exactly one writes its
    notifications; they are delivered after commit. Level notifications go through the level's
    active channels, or by email straight to its targets when it has none.
    """
    now = now or timezone.now()
    with transaction.atomic():
        alert = Alert.objects.select_related("owner").filter(pk=alert_id).first()
        if (
            alert is None
            or alert.state != AlertState.OPEN
            or alert.next_escalation_at is None
            or alert.next_escalation_at > now
            or alert.is_snoozed(now)
        ):
            return []
        levels = _levels_of(alert)
        plans = _plans(levels)
        step = escalation.step_at(plans, alert.escalation_step)
        unchanged = Q(
            pk=alert.pk,
            state=AlertState.OPEN,
            escalation_round=alert.escalation_round,
            escalation_step=alert.escalation_step,
            next_escalation_at=alert.next_escalation_at,
        ) & (Q(snoozed_until__isnull=True) | Q(snoozed_until__lte=now))
        if step is None:  # the policy shrank under an open alert: nothing left to send
            Alert.objects.filter(unchanged).update(next_escalation_at=None)
            return []
        next_at = escalation.next_due(plans, step, now)
        claimed = Alert.objects.filter(unchanged).update(
            escalation_step=F("escalation_step") + 1, escalation_level=step.level, next_escalation_at=next_at
        )
        if not claimed:
            return []
        level = levels[step.level]
        targets = level_targets(alert, level)
        ids = _write_notifications(alert, step, level, targets, now)
        names = ", ".join(user.get_username() for user in targets) or "no one"
        add_alert_event(
            alert, AlertEventKind.ESCALATE, at=now, level=step.level, repeat=step.repeat, note=f"to {names}"
        )
        record_audit_event(
            actor=None,
            action="alert.escalate",
            obj=alert,
            before={"escalation_step": alert.escalation_step, "escalation_level": alert.escalation_level},
            after={
                "escalation_round": alert.escalation_round,
                "escalation_step": alert.escalation_step + 1,
                "escalation_level": step.level,
                "repeat": step.repeat,
                "next_escalation_at": next_at.isoformat() if next_at else None,
                "notifications": ids,
            },
        )

        transaction.on_commit(lambda: deliver_notifications(ids, now=now))
    return ids


def _write_notifications(
    alert: Alert,
    step: escalation.Step,
    level: EscalationLevel | None,
    targets: list[User],
    now: datetime.datetime,
) -> list[int]:
    """The step's Notification rows: one per active channel of the level, or one email to its targets."""
    emails = sorted({user.email for user in targets if user.email})
    usernames = [user.get_username() for user in targets]
    channels = [channel for channel in level.channels.all() if channel.is_active] if level else []
    common = {
        "alert": alert,
        "round": alert.escalation_round,
        "level": step.level,
        "repeat": step.repeat,
        "next_attempt_at": now,
        "created_at": now,
    }
    rows = []
    for channel in channels:
        if channel.kind == ChannelKind.EMAIL:
            recipients = [channel.email_address] if channel.email_address else emails
        else:
            recipients = usernames
        rows.append(
            Notification.objects.create(channel=channel, kind=channel.kind, recipients=recipients, **common)
        )
    if not channels:  # no channel (or all disabled): email the targets so the step is not lost
        rows.append(
            Notification.objects.create(channel=None, kind=ChannelKind.EMAIL, recipients=emails, **common)
        )
    return [row.pk for row in rows]
