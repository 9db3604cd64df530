"""Delivery channels of a team: email, a signed JSON webhook, a Slack incoming webhook."""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from governance.actions.checks import ensure_can
from governance.audit import record_audit_event, snapshot
from governance.models import Membership, Team
from governance.permissions import MANAGE
from monitoring.models import Channel, ChannelKind

if TYPE_CHECKING:
    from django.contrib.auth.models import User


def _clean_channel(channel: Channel) -> None:
    """Validate a channel's fields together. Raises ValidationError naming the field."""
    errors = {}
    if not channel.name.strip():
        errors["name"] = "a channel needs a name"
    if channel.kind == ChannelKind.EMAIL:
        channel.url = ""
    elif channel.kind in (ChannelKind.WEBHOOK, ChannelKind.SLACK):
        channel.email_address = ""
        if not channel.url.startswith(("https://", "http://")):
            errors["url"] = "a webhook needs an http(s) URL"
    else:
        errors["kind"] = f"unknown kind {channel.kind!r}; one of email, webhook, slack"
    if not Membership.objects.filter(user_id=channel.owner_id, team_id=channel.team_id).exists():
        errors["owner"] = "the owner must be a member of the team"
    if errors:
        raise ValidationError(errors)


def do_create_channel(
    *,
    team: Team,
    name: str,
    kind: str,
    actor: User,
    owner: User | None = None,
    email_address: str = "",
    url: str = "",
) -> Channel:
    """Create a delivery channel; a webhook channel gets a random 256-bit HMAC secret.

    Raises ValidationError naming the field (the owner, default the actor, must be in the team).
    """
    with transaction.atomic():
        ensure_can(actor, MANAGE, team.pk)
        channel = Channel(
            team=team,
            name=name.strip(),
            kind=kind,
            owner=owner or actor,
            email_address=email_address,
            url=url,
            secret=secrets.token_hex(32) if kind == ChannelKind.WEBHOOK else "",
            created_by=actor,
        )
        _clean_channel(channel)
        if Channel.objects.filter(team=team, name=channel.name).exists():
            raise ValidationError({"name": f"{team} already has a channel named {channel.name!r}"})
        channel.save()
        record_audit_event(actor=actor, action="channel.create", obj=channel, after=snapshot(channel))
    return channel


def do_update_channel(*, channel: Channel, actor: User, **changes: Any) -> Channel:
    """Change name, owner, address or URL, or (re-)enable / disable it. Re-enabling clears the failure."""
    allowed = {"name", "owner", "email_address", "url", "is_active"}
    unknown = sorted(set(changes) - allowed)
    if unknown:
        raise ValidationError({"detail": f"unknown channel field(s): {', '.join(unknown)}"})
    with transaction.atomic():
        channel = Channel.objects.select_for_update().get(pk=channel.pk)
        ensure_can(actor, MANAGE, channel.team_id)
        before, was_active = snapshot(channel), channel.is_active
        for name, value in changes.items():
            setattr(channel, name, value)
        if changes.get("is_active") is True and not was_active:
            channel.disabled_reason, channel.disabled_at, channel.consecutive_failures = "", None, 0
        if changes.get("is_active") is False and was_active:
            channel.disabled_reason = f"disabled by {actor.get_username()}"
            channel.disabled_at = timezone.now()
        _clean_channel(channel)
        if Channel.objects.filter(team_id=channel.team_id, name=channel.name).exclude(pk=channel.pk).exists():
            raise ValidationError({"name": f"{channel.team} already has a channel named {channel.name!r}"})
        channel.save()
        record_audit_event(
            actor=actor, action="channel.update", obj=channel, before=before, after=snapshot(channel)
        )
    return channel


def do_rotate_channel_secret(*, channel: Channel, actor: User) -> Channel:
    """Give a webhook channel a new HMAC secret (the old one stops verifying at once)."""
    with transaction.atomic():
        channel = Channel.objects.select_for_update().get(pk=channel.pk)
        ensure_can(actor, MANAGE, channel.team_id)
        if channel.kind != ChannelKind.WEBHOOK:
            raise ValidationError({"kind": "only webhook channels have a secret"})
        channel.secret = secrets.token_hex(32)
        channel.save(update_fields=["secret"])
        record_audit_event(
            actor=actor, action="channel.rotate_secret", obj=channel, before=None, after={"secret": "rotated"}
        )
    return channel
