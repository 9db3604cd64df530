"""Where alerts go: a team's channels and its escalation policies of ordered levels."""

from __future__ import annotations

import datetime

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from governance.models import Team, TeamRole
from governance.permissions import RestrictedQuerySet
from monitoring import escalation

# An escalation level waits 1 minute to 30 days between notifications and repeats at most 100 times.
MAX_DELAY_MINUTES = 30 * 24 * 60
MAX_REPEAT = 100


class ChannelKind(models.TextChoices):
    EMAIL = "email", "Email"
    WEBHOOK = "webhook", "Webhook (JSON, HMAC-SHA256 signed)"
    SLACK = "slack", "Slack incoming webhook"


class Channel(models.Model):
    """A delivery route of a team: an email address, a signed JSON webhook, or a Slack webhook.

    An email channel without an address mails the escalation level's target people. A channel
    that fails permanently is disabled (``is_active`` False, ``disabled_reason``) and its owner told.
    """

    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="channels")
    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=16, choices=ChannelKind.choices)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", help_text="Told when it fails."
    )
    email_address = models.EmailField(blank=True)
    url = models.URLField(max_length=500, blank=True)
    secret = models.CharField(max_length=128, blank=True, help_text="HMAC key of a webhook channel.")
    is_active = models.BooleanField(default=True)
    disabled_reason = models.TextField(blank=True)
    disabled_at = models.DateTimeField(null=True, blank=True)
    consecutive_failures = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    last_error_at = models.DateTimeField(null=True, blank=True)
    last_success_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    objects = RestrictedQuerySet.as_manager()
    team_scope = "team"
    # Never the secret: audit events are readable by compliance officers.
    audit_fields = ("name", "kind", "owner_id", "email_address", "url", "is_active", "disabled_reason")

    class Meta:
        ordering = ["team__name", "name", "id"]
        constraints = [
            models.UniqueConstraint(fields=["team", "name"], name="unique_channel_name_per_team"),
            # An email channel has no URL; a webhook or Slack channel posts to an http(s) URL, not an address.
            models.CheckConstraint(
                condition=Q(kind=ChannelKind.EMAIL, url="")
                | (
                    Q(kind__in=[ChannelKind.WEBHOOK, ChannelKind.SLACK], email_address="")
                    & (Q(url__startswith="https://") | Q(url__startswith="http://"))
                ),
                name="channel_kind_matches_address",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_kind_display().split(' ')[0].lower()})"

    def get_absolute_url(self) -> str:
        return reverse("channel_detail", args=[self.pk])

    def clean(self) -> None:
        """The rule one channel row must satisfy by itself (its check constraint). Raises ValidationError."""
        if self.kind == ChannelKind.EMAIL:
            if self.url:
                raise ValidationError({"url": "an email channel has no URL"})
        elif self.kind in (ChannelKind.WEBHOOK, ChannelKind.SLACK):
            if self.email_address:
                raise ValidationError({"email_address": "a webhook channel has no email address"})
            if not self.url.startswith(("https://", "http://")):
                raise ValidationError({"url": "a webhook needs an http(s) URL"})
        else:
            raise ValidationError({"kind": f"unknown kind {self.kind!r}; one of email, webhook, slack"})


class EscalationPolicy(models.Model):
    """Ordered levels; an open, unacknowledged alert moves through them as their delays pass."""

    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="escalation_policies")
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    objects = RestrictedQuerySet.as_manager()
    team_scope = "team"
    audit_fields = ("name", "description", "level_specs")

    class Meta:
        ordering = ["team__name", "name", "id"]
        constraints = [models.UniqueConstraint(fields=["team", "name"], name="unique_policy_name_per_team")]
        verbose_name_plural = "escalation policies"

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("escalation_policy_detail", args=[self.pk])

    @property
    def level_specs(self) -> list[dict]:
        """The levels as JSON-able dicts (what the audit log records)."""
        return [level.spec() for level in self.levels.all()]


class EscalationLevel(models.Model):
    """One rung: notify the targets through the channels, ``1 + repeat`` times, ``delay_minutes`` apart,
    then move to the next level after another ``delay_minutes`` without an acknowledgement."""

    policy = models.ForeignKey(EscalationPolicy, on_delete=models.CASCADE, related_name="levels")
    position = models.PositiveSmallIntegerField()
    delay_minutes = models.PositiveIntegerField(default=15)
    repeat = models.PositiveSmallIntegerField(default=0)
    users = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True, related_name="+")
    owners_of = models.ForeignKey(
        Team, null=True, blank=True, on_delete=models.PROTECT, related_name="+", help_text="A team's owners."
    )
    role = models.CharField(
        max_length=32, choices=TeamRole.choices, blank=True, help_text="Everyone with this role in the team."
    )
    channels = models.ManyToManyField(Channel, blank=True, related_name="levels")

    class Meta:
        ordering = ["policy_id", "position"]
        constraints = [
            models.UniqueConstraint(fields=["policy", "position"], name="unique_level_position_per_policy"),
            models.CheckConstraint(
                condition=Q(delay_minutes__gte=1, delay_minutes__lte=MAX_DELAY_MINUTES),
                name="escalation_level_delay_in_range",
            ),
            models.CheckConstraint(
                condition=Q(repeat__lte=MAX_REPEAT), name="escalation_level_repeat_in_range"
            ),
            models.CheckConstraint(
                condition=Q(role="") | Q(role__in=TeamRole.values), name="escalation_level_role_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"Level {self.position + 1} of {self.policy}"

    def spec(self) -> dict:
        """The level as a JSON-able dict (what the audit log records; user and channel ids sorted)."""
        return {
            "delay_minutes": self.delay_minutes,
            "repeat": self.repeat,
            "users": sorted(user.pk for user in self.users.all()),
            "owners_of": self.owners_of_id,
            "role": self.role,
            "channels": sorted(channel.pk for channel in self.channels.all()),
        }

    def clean(self) -> None:
        """The rules one level row must satisfy by itself (its check constraints). Raises ValidationError."""
        errors: dict[str, str] = {}
        if not 1 <= self.delay_minutes <= MAX_DELAY_MINUTES:
            errors["delay_minutes"] = f"must be a whole number of minutes from 1 to {MAX_DELAY_MINUTES}"
        if not 0 <= self.repeat <= MAX_REPEAT:
            errors["repeat"] = f"must be a whole number from 0 to {MAX_REPEAT}"
        if self.role and self.role not in TeamRole.values:
            errors["role"] = f"unknown role {self.role!r}"
        if errors:
            raise ValidationError(errors)

    def plan(self) -> escalation.Level:
        """The level as ``monitoring.escalation``'s step arithmetic sees it (delay and repeats)."""
        return escalation.Level(datetime.timedelta(minutes=self.delay_minutes), self.repeat)
