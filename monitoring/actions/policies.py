"""Escalation policies: a team's ordered levels (targets, channels, delay, repeat)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from governance.actions.checks import ensure_can
from governance.audit import record_audit_event, snapshot
from governance.models import Membership, Team, TeamRole
from governance.permissions import MANAGE, VIEW, can
from monitoring.models import MAX_DELAY_MINUTES, MAX_REPEAT, EscalationLevel, EscalationPolicy, Monitor

if TYPE_CHECKING:
    from django.contrib.auth.models import User


def _clean_levels(team_id: int, levels: Sequence[dict[str, Any]], actor: User | None) -> list[dict[str, Any]]:
    """Validate level dicts ``{delay_minutes, repeat, users, owners_of, role, channels}``."""
    if not levels:
        raise ValidationError({"levels": "a policy needs at least one level"})
    members = set(Membership.objects.filter(team_id=team_id).values_list("user_id", flat=True))
    cleaned = []
    for number, raw in enumerate(levels, start=1):
        unknown = sorted(set(raw) - {"delay_minutes", "repeat", "users", "owners_of", "role", "channels"})
        if unknown:
            raise ValidationError({"levels": f"level {number}: unknown field(s) {', '.join(unknown)}"})
        delay, repeat = raw.get("delay_minutes", 15), raw.get("repeat", 0)
        users, channels = list(raw.get("users") or []), list(raw.get("channels") or [])
        owners_of, role = raw.get("owners_of"), raw.get("role") or ""
        problem = None
        if not isinstance(delay, int) or isinstance(delay, bool) or not 1 <= delay <= MAX_DELAY_MINUTES:
            problem = f"delay_minutes must be a whole number of minutes from 1 to {MAX_DELAY_MINUTES}"
        elif not isinstance(repeat, int) or isinstance(repeat, bool) or not 0 <= repeat <= MAX_REPEAT:
            problem = f"repeat must be a whole number from 0 to {MAX_REPEAT}"
        elif role and role not in TeamRole.values:
            problem = f"unknown role {role!r}"
        elif not (users or owners_of or role or channels):
            problem = "name at least one target (a user, a team's owners, a role) or a channel"
        elif any(user.pk not in members for user in users):
            problem = "every user must be a member of the policy's team"
        elif any(channel.team_id != team_id for channel in channels):
            problem = "every channel must belong to the policy's team"
        elif owners_of is not None and actor is not None and not can(actor, VIEW, owners_of.pk, fresh=True):
            problem = "you may not name that team"
        if problem:
            raise ValidationError({"levels": f"level {number}: {problem}"})
        cleaned.append(
            {
                "delay_minutes": delay,
                "repeat": repeat,
                "users": users,
                "owners_of": owners_of,
                "role": role,
                "channels": channels,
            }
        )
    return cleaned


def _write_levels(policy: EscalationPolicy, levels: Iterable[dict[str, Any]]) -> None:
    """Replace the policy's levels with ``levels`` (cleaned by ``_clean_levels``), in order."""
    policy.levels.all().delete()
    for position, spec in enumerate(levels):
        level = EscalationLevel.objects.create(
            policy=policy,
            position=position,
            delay_minutes=spec["delay_minutes"],
            repeat=spec["repeat"],
            owners_of=spec["owners_of"],
            role=spec["role"],
        )
        level.users.set(spec["users"])
        level.channels.set(spec["channels"])


def do_create_escalation_policy(
    *, team: Team, name: str, levels: Sequence[dict[str, Any]], actor: User, description: str = ""
) -> EscalationPolicy:
    """Create a policy with its ordered levels. Raises ValidationError naming the bad level."""
    with transaction.atomic():
        ensure_can(actor, MANAGE, team.pk)
        if not name.strip():
            raise ValidationError({"name": "a policy needs a name"})
        if EscalationPolicy.objects.filter(team=team, name=name.strip()).exists():
            raise ValidationError({"name": f"{team} already has a policy named {name.strip()!r}"})
        cleaned = _clean_levels(team.pk, levels, actor)
        policy = EscalationPolicy.objects.create(
            team=team, name=name.strip(), description=description, created_by=actor
        )
        _write_levels(policy, cleaned)
        record_audit_event(actor=actor, action="escalation_policy.create", obj=policy, after=snapshot(policy))
    return policy


def do_update_escalation_policy(
    *,
    policy: EscalationPolicy,
    actor: User,
    name: str | None = None,
    description: str | None = None,
    levels: Sequence[dict[str, Any]] | None = None,
) -> EscalationPolicy:
    """Rename, re-describe or replace the levels of a policy. Open alerts continue at their step."""
    with transaction.atomic():
        policy = EscalationPolicy.objects.select_for_update().get(pk=policy.pk)
        ensure_can(actor, MANAGE, policy.team_id)
        before = snapshot(policy)
        if name is not None:
            if not name.strip():
                raise ValidationError({"name": "a policy needs a name"})
            taken = EscalationPolicy.objects.filter(team_id=policy.team_id, name=name.strip()).exclude(
                pk=policy.pk
            )
            if taken.exists():
                raise ValidationError({"name": f"{policy.team} already has a policy named {name.strip()!r}"})
            policy.name = name.strip()
        if description is not None:
            policy.description = description
        if levels is not None:
            _write_levels(policy, _clean_levels(policy.team_id, levels, actor))
        policy.updated_at = timezone.now()
        policy.save()
        record_audit_event(
            actor=actor, action="escalation_policy.update", obj=policy, before=before, after=snapshot(policy)
        )
    return policy


def do_delete_escalation_policy(*, policy: EscalationPolicy, actor: User) -> None:
    """Delete a policy no monitor uses. Raises ValidationError naming the monitors that do."""
    with transaction.atomic():
        policy = EscalationPolicy.objects.select_for_update().get(pk=policy.pk)
        ensure_can(actor, MANAGE, policy.team_id)
        users = list(Monitor.objects.filter(escalation_policy=policy).values_list("name", flat=True))
        if users:
            raise ValidationError(
                {"detail": f"monitors {', '.join(users)} use this policy; change them first"}
            )
        record_audit_event(
            actor=actor, action="escalation_policy.delete", obj=policy, before=snapshot(policy)
        )
        policy.delete()
