"""Deliveries: each notification is claimed, sent outside any transaction, and its result kept.

A delivery is claimed (pending/retrying -> sending) with a conditional UPDATE, so it is sent once
however many workers deliver at the same time; its result is stored on the row
(``do_record_delivery``): retried with backoff, or failed for good, which disables the channel.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Iterable

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from governance.audit import record_audit_event, snapshot
from monitoring.models import Channel, Notification, NotificationState
from monitoring.notify import build_message, tell_channel_owner
from monitoring.transports import TRANSPORTS, DeliveryResult

logger = logging.getLogger(__name__)

STALE_SENDING = datetime.timedelta(minutes=10)
MAX_ATTEMPTS = 5
RETRY_BASE = datetime.timedelta(minutes=1)


def retry_delay(attempts: int) -> datetime.timedelta:
    """Exponential backoff after the ``attempts``-th failure: 1, 2, 4, 8 minutes."""
    return RETRY_BASE * 2 ** (attempts - 1)


def claim_notification(notification_id: int, now: datetime.datetime) -> bool:
    """pending/retrying (and due) -> sending with a conditional UPDATE; counts the attempt.

    ``next_attempt_at`` becomes the claim time while sending: ``release_stale_sending`` measures
    from it.
    """
    due = Notification.objects.filter(
        pk=notification_id,
        state__in=[NotificationState.PENDING, NotificationState.RETRYING],
        next_attempt_at__lte=now,
    )
    return bool(due.update(state=NotificationState.SENDING, attempts=F("attempts") + 1, next_attempt_at=now))


def do_record_delivery(
    notification_id: int, result: DeliveryResult, *, now: datetime.datetime
) -> Notification:
    """Store an attempt's result; schedule a retry with backoff, or fail for good.

    A permanent failure (the transport says so, or the ``MAX_ATTEMPTS``-th failure) disables the
    channel and tells its owner after commit. Channel counters are telemetry, not audited;
    disabling a channel is audited.
    """
    with transaction.atomic():
        row = Notification.objects.select_for_update().get(pk=notification_id)
        if row.state != NotificationState.SENDING:
            return row
        row.response_code = result.response_code
        if result.ok:
            row.state, row.sent_at, row.error = NotificationState.SENT, now, ""
        elif result.permanent or row.attempts >= MAX_ATTEMPTS:
            row.state, row.error = NotificationState.FAILED, result.error[:4000]
        else:
            row.state, row.error = NotificationState.RETRYING, result.error[:4000]
            row.next_attempt_at = now + retry_delay(row.attempts)
        row.save()
        if row.channel_id is None:
            return row
        if result.ok:
            Channel.objects.filter(pk=row.channel_id).update(consecutive_failures=0, last_success_at=now)
            return row
        Channel.objects.filter(pk=row.channel_id).update(
            consecutive_failures=F("consecutive_failures") + 1,
            last_error=result.error[:4000],
            last_error_at=now,
        )
        if row.state == NotificationState.FAILED:
            attempts = f"after {row.attempts} attempt{'s' if row.attempts > 1 else ''}"
            _disable_channel(row.channel_id, f"{result.error} ({attempts}, notification #{row.pk})", now)
    return row


def _disable_channel(channel_id: int, reason: str, now: datetime.datetime) -> None:
    """Disable an active channel with ``reason`` (audited); its owner is emailed after commit."""
    channel = Channel.objects.select_for_update().get(pk=channel_id)
    if not channel.is_active:
        return
    before = snapshot(channel)
    channel.is_active, channel.disabled_reason, channel.disabled_at = False, reason[:4000], now
    channel.save(update_fields=["is_active", "disabled_reason", "disabled_at"])
    record_audit_event(
        actor=None, action="channel.disable", obj=channel, before=before, after=snapshot(channel)
    )

    transaction.on_commit(lambda: tell_channel_owner(channel_id))


def release_stale_sending(now: datetime.datetime, older_than: datetime.timedelta) -> int:
    """Deliveries left ``sending`` by a worker that died go back to ``retrying`` (sent at least once
    more: receivers deduplicate by the ``X-Steward-Delivery`` id)."""
    return Notification.objects.filter(
        state=NotificationState.SENDING, next_attempt_at__lt=now - older_than
    ).update(state=NotificationState.RETRYING, next_attempt_at=now)


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
