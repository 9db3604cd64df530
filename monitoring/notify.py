"""What a notification says: its subject, text, webhook payload and Slack body; and the email that
tells a channel's owner it was disabled.

Below the actions (issue 8: no import cycle): ``monitoring.actions.deliveries`` claims, sends
through ``monitoring.transports`` and records; this module only composes and mails.
"""

from __future__ import annotations

import json
import logging

from django.conf import settings
from django.core.mail import send_mail

from monitoring.models import AlertKind, Channel, Notification
from monitoring.transports import Message

logger = logging.getLogger(__name__)

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
    is_budget = alert.kind == AlertKind.BUDGET
    links = [
        ("Alert", alert_url),
        ("Drift check", evidence.get("check_url", "")),
        ("Evidently report", evidence.get("report_url", "")),
        ("Usage", evidence.get("usage_url", "")),
        ("Runbook", alert.runbook_url),
    ]
    lines = [f"{alert.title}{suffix}", "", f"Severity: {alert.get_severity_display()}"]
    if is_budget:
        lines.append(f"Team: {evidence.get('team', '')}, month {evidence.get('month', '')}")
    else:
        lines.append(f"Model version: {alert.model_version}")
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
        "Spend (this month, budget):" if is_budget else "Findings (method = score, threshold):",
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
            "kind": alert.kind,
            "model_version": str(alert.model_version) if alert.model_version_id else None,
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
