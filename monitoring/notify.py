"""Delivering notifications: the periodic escalation pass and each delivery with its recorded result.

``run_escalations(now)`` is what beat runs every minute (``monitoring.tasks.escalate_alerts``): it
claims every due escalation step (``do_escalate_alert``), then retries deliveries whose backoff
has passed. Each delivery is claimed (pending/retrying -> sending) with a conditional UPDATE, so
a notification is sent once however many workers run this at the same time; its result is stored
on the row (``do_record_delivery``). Network I/O happens outside any database transaction.
"""

from __future__ import annotations

import datetime
import json
import logging
from collections.abc import Iterable

from django.conf import settings
from django.core.mail import send_mail
from django.utils import timezone

from monitoring.actions import (
    DeliveryResult,
    claim_notification,
    do_escalate_alert,
    do_record_delivery,
    release_stale_sending,
)
from monitoring.models import Channel, Notification, NotificationState
from monitoring.queries import due_alert_ids
from monitoring.transports import TRANSPORTS, Message

logger = logging.getLogger(__name__)

STALE_SENDING = datetime.timedelta(minutes=10)
EVENT = "alert.notification"


def _link(path: str) -> str:
    return settings.STEWARD_BASE_URL.rstrip("/") + path


def build_message(notification: Notification) -> Message:
    """The subject, text, webhook payload and Slack body of one notification."""
    alert = notification.alert
    evidence = alert.evidence or {}
    suffix = ""
    if notification.repeat:
        suffix = f" (reminder {notification.repeat}, level {notification.level + 1})"
    elif notification.level:
        suffix = f" (escalated to level {notification.level + 1})"
    window = evidence.get("window") or {}
    reference = evidence.get("reference") or {}
    alert_url = _link(alert.get_absolute_url())
    links = [
        ("Alert", alert_url),
        ("Drift check", evidence.get("check_url", "")),
        ("Evidently report", evidence.get("report_url", "")),
        ("Runbook", alert.runbook_url),
    ]
    lines = [
        f"{alert.title}{suffix}",
        "",
        f"Severity: {alert.get_severity_display()}",
        f"Model version: {alert.model_version}",
    ]
    if evidence.get("monitor"):
        lines.append(f"Monitor: {evidence['monitor']}")
    if window.get("dataset_versions"):
        rows = f" ({window['rows']:,} rows)" if window.get("rows") is not None else ""
        lines.append(f"Window: {', '.join(window['dataset_versions'])}{rows}")
    if reference.get("dataset_version"):
        where = f" where {json.dumps(reference['where'], sort_keys=True)}" if reference.get("where") else ""
        lines.append(f"Reference: {reference['dataset_version']}{where}")
    lines += [
        f"Seen {alert.occurrences} time(s); escalation level {notification.level + 1}",
        "",
        "Findings (method = score, threshold):",
        alert.summary,
        "",
        *(f"{label}: {url}" for label, url in links if url),
    ]
    payload = {
        "event": EVENT,
        "delivery_id": notification.pk,
        "alert": {
            "id": alert.pk,
            "url": alert_url,
            "title": alert.title,
            "state": alert.state,
            "severity": alert.severity,
            "model_version": str(alert.model_version),
            "model_version_id": alert.model_version_id,
            "monitor_id": alert.monitor_id,
            "occurrences": alert.occurrences,
            "created_at": alert.created_at.isoformat(),
            "last_seen_at": alert.last_seen_at.isoformat(),
            "runbook_url": alert.runbook_url,
            "summary": alert.summary.splitlines(),
            "evidence": evidence,
        },
        "escalation": {
            "round": notification.round,
            "level": notification.level,
            "repeat": notification.repeat,
            "targets": notification.recipients,
        },
    }
    slack_lines = [f"*{alert.title}*{suffix}", *(f"• {line}" for line in alert.summary.splitlines())]
    slack_lines.append(" · ".join(f"<{url}|{label}>" for label, url in links if url))
    return Message(
        subject=f"{alert.title}{suffix}",
        text="\n".join(lines) + "\n",
        payload=payload,
        slack={"text": "\n".join(slack_lines)},
        delivery_id=notification.pk,
        event=EVENT,
    )


def deliver_notification(notification_id: int, *, now: datetime.datetime | None = None) -> str:
    """Send one due notification if this worker claims it; returns its state afterwards."""
    now = now or timezone.now()
    if not claim_notification(notification_id, now):
        return Notification.objects.values_list("state", flat=True).get(pk=notification_id)
    row = Notification.objects.select_related("channel", "alert__model_version__model").get(
        pk=notification_id
    )
    if row.channel is not None and not row.channel.is_active:
        result = DeliveryResult(ok=False, error=f"channel {row.channel.name} is disabled", permanent=True)
    else:
        try:
            result = TRANSPORTS[row.kind].send(row.channel, row.recipients, build_message(row))
        except Exception as exc:  # a bug must not leave the row "sending": record it, retry later
            logger.exception("notification %s: delivery raised", notification_id)
            result = DeliveryResult(ok=False, error=f"internal error: {type(exc).__name__}: {exc}")
    return do_record_delivery(notification_id, result, now=now).state


def deliver_notifications(ids: Iterable[int], *, now: datetime.datetime | None = None) -> dict[int, str]:
    """Deliver each notification in turn; ``{id: state}``."""
    return {pk: deliver_notification(pk, now=now) for pk in ids}


def deliver_due_notifications(now: datetime.datetime | None = None) -> dict[int, str]:
    """Retry deliveries whose backoff has passed (and any pending ones a dead worker left)."""
    now = now or timezone.now()
    release_stale_sending(now, STALE_SENDING)
    due = Notification.objects.filter(
        state__in=[NotificationState.PENDING, NotificationState.RETRYING], next_attempt_at__lte=now
    ).order_by("next_attempt_at", "id")
    return deliver_notifications(list(due.values_list("pk", flat=True)), now=now)


def run_escalations(now: datetime.datetime | None = None) -> dict:
    """One pass of the escalation task: claim due steps, then retry due deliveries.

    Returns ``{"escalated": [alert ids], "notifications": {id: state}}``; the new steps' deliveries
    ran on commit of their claims and are included.
    """
    now = now or timezone.now()
    escalated, states = [], {}
    for alert_id in due_alert_ids(now):
        ids = do_escalate_alert(alert_id, now=now)
        if ids:
            escalated.append(alert_id)
            states.update(Notification.objects.filter(pk__in=ids).values_list("pk", "state"))
    states.update(deliver_due_notifications(now))
    return {"escalated": escalated, "notifications": states}


def tell_channel_owner(channel_id: int) -> bool:
    """Email the owner of a channel that was disabled, with the reason; False (logged) if it failed."""
    channel = Channel.objects.select_related("owner", "team").get(pk=channel_id)
    if not channel.owner.email:
        logger.warning(
            "channel %s was disabled; its owner %s has no email address", channel_id, channel.owner
        )
        return False
    body = (
        f"Steward stopped using the {channel.get_kind_display()} channel {channel.name!r} of team "
        f"{channel.team}:\n\n{channel.disabled_reason}\n\n"
        f"Fix it and enable it again: {_link(channel.get_absolute_url())}\n"
        "Escalation levels that used only this channel now email their targets directly.\n"
    )
    try:
        send_mail(
            f"[Steward] Channel {channel.name} was disabled",
            body,
            settings.DEFAULT_FROM_EMAIL,
            [channel.owner.email],
        )
    except OSError:
        logger.exception("channel %s: telling its owner %s failed", channel_id, channel.owner.email)
        return False
    return True
