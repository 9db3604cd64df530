"""The Celery task that delivers one OpenLineage event of Steward's own runs (issue 10).

Thin: ``lineage.openlineage.emit.send`` builds and emits; this decides retry or give up.
"""

from __future__ import annotations

from typing import Any

import requests
from celery import shared_task
from django.conf import settings

from lineage.openlineage import emit

# A receiver that is down, slow or answering 5xx/4xx: worth another try later.
RETRYABLE = (requests.RequestException, OSError)


@shared_task(bind=True, name=emit.SEND_TASK, max_retries=None, ignore_result=True)
def send_event(self: Any, payload: dict[str, Any]) -> None:
    """Emit ``payload`` (a ``RunTransition.as_json``); on a transport error retry after
    ``STEWARD_OPENLINEAGE_RETRY_BACKOFF_S`` seconds, doubling each time, up to
    ``STEWARD_OPENLINEAGE_MAX_RETRIES`` retries; then, or at once for a malformed payload,
    record the failure (``emit.record_failure``). Sending an event twice is harmless (OpenLineage
    events of a run accumulate), so a redelivered message needs no guard."""
    retries = self.request.retries
    try:
        emit.send(payload)
    except RETRYABLE as exc:
        most = settings.STEWARD_OPENLINEAGE_MAX_RETRIES
        if retries < most:
            raise self.retry(
                exc=exc, countdown=settings.STEWARD_OPENLINEAGE_RETRY_BACKOFF_S * 2**retries
            ) from exc
        emit.record_failure(payload, f"{type(exc).__name__}: {exc} (after {retries} retries)")
    except Exception as exc:
        emit.record_failure(payload, f"not sent, the event is malformed: {type(exc).__name__}: {exc}")
