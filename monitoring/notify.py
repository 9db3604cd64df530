"""Telling a model's owner about an alert, by email through Django's email backend."""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.mail import send_mail

from monitoring.models import Alert

logger = logging.getLogger(__name__)


def send_alert_email(alert_id: int) -> bool:
    """Email the alert's evidence to its owner; False (logged) when the owner has no address."""
    alert = Alert.objects.select_related("owner", "drift_check", "model_version__model").get(pk=alert_id)
    if not alert.owner.email:
        logger.warning("alert %s: owner %s has no email address", alert_id, alert.owner)
        return False
    base = settings.STEWARD_BASE_URL.rstrip("/")
    body = (
        f"{alert.title}\n\nSeverity: {alert.get_severity_display()}\n"
        f"Drifted columns (method = score, threshold):\n{alert.summary}\n\n"
        f"Alert: {base}{alert.get_absolute_url()}\n"
        f"Drift check and evidently report: {base}{alert.drift_check.get_absolute_url()}\n"
    )
    try:
        send_mail(f"[Steward] {alert.title}", body, settings.DEFAULT_FROM_EMAIL, [alert.owner.email])
    except OSError:
        # The alert row is committed and shown in the UI; a mail outage must not undo or hide it.
        logger.exception("alert %s: sending email to %s failed", alert_id, alert.owner.email)
        return False
    return True
