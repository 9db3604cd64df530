"""How a notification leaves Steward: email, a signed JSON webhook, or a Slack incoming webhook.

One class per channel kind (Healthchecks' ``hc/api/transports.py``); each ``send`` returns a
``DeliveryResult`` and never raises for a delivery problem. A failure is *permanent* (not retried;
the channel is disabled) when retrying cannot help: an HTTP 4xx other than 408 and 429, a redirect
(never followed: a webhook URL must be the endpoint), or an email address the server refuses.
Timeouts, connection errors and 5xx answers are retried with backoff.

Webhook signature (generic JSON webhooks), after Stripe's scheme::

    X-Steward-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + raw body)>

The receiver recomputes the HMAC over the exact bytes received, compares in constant time, and
rejects a ``t`` more than 5 minutes from its clock (replays). ``X-Steward-Delivery`` is the
notification id: the same for every retry of one delivery, so receivers can deduplicate.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import json
import smtplib
import urllib.error
import urllib.request
from dataclasses import dataclass

from django.conf import settings
from django.core.mail import send_mail

from monitoring.models import Channel, ChannelKind

TIMEOUT_S = 10
SIGNATURE_HEADER = "X-Steward-Signature"
DELIVERY_HEADER = "X-Steward-Delivery"
EVENT_HEADER = "X-Steward-Event"
USER_AGENT = "Steward-Alerts/1"
RETRYABLE_4XX = frozenset({408, 429})


@dataclass(frozen=True)
class DeliveryResult:
    """A transport's answer: ``permanent`` failures are not retried and disable the channel."""

    ok: bool
    response_code: int | None = None
    error: str = ""
    permanent: bool = False


@dataclass(frozen=True)
class Message:
    """One notification's content: an email subject and body, the webhook payload, Slack's text."""

    subject: str
    text: str
    payload: dict
    slack: dict
    delivery_id: int
    event: str


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``X-Steward-Signature`` value for ``body`` sent at ``timestamp`` (unix seconds)."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify(secret: str, header: str, body: bytes, now: datetime.datetime, tolerance_s: int = 300) -> bool:
    """Receiver side of ``sign``: True when the signature matches and ``t`` is within tolerance."""
    try:
        fields = dict(part.split("=", 1) for part in header.split(","))
        timestamp = int(fields["t"])
    except (ValueError, KeyError):
        return False
    if abs(now.timestamp() - timestamp) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), f"t={timestamp},v1={fields.get('v1', '')}")


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None  # urllib then raises HTTPError with the 3xx code


_opener = urllib.request.build_opener(_NoRedirects)


def post_json(url: str, body: bytes, headers: dict[str, str]) -> DeliveryResult:
    """POST ``body`` as JSON; classify the answer. Redirects are not followed."""
    request = urllib.request.Request(  # noqa: S310 - the URL is validated as http(s) on the channel
        url,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "User-Agent": USER_AGENT, **headers},
    )
    try:
        with _opener.open(request, timeout=TIMEOUT_S) as response:
            return DeliveryResult(ok=True, response_code=response.status)
    except urllib.error.HTTPError as exc:
        detail = exc.read(500).decode("utf-8", "replace").strip()
        error = f"HTTP {exc.code} from {url}" + (f": {detail}" if detail else "")
        permanent = 300 <= exc.code < 500 and exc.code not in RETRYABLE_4XX
        return DeliveryResult(ok=False, response_code=exc.code, error=error, permanent=permanent)
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return DeliveryResult(ok=False, error=f"could not reach {url}: {reason}")


class Transport:
    def send(self, channel: Channel | None, recipients: list[str], message: Message) -> DeliveryResult:
        raise NotImplementedError


class EmailTransport(Transport):
    def send(self, channel, recipients, message):
        if not recipients:
            return DeliveryResult(ok=False, error="no recipient has an email address", permanent=True)
        try:
            send_mail(f"[Steward] {message.subject}", message.text, settings.DEFAULT_FROM_EMAIL, recipients)
        except smtplib.SMTPRecipientsRefused as exc:
            refused = ", ".join(sorted(exc.recipients))
            return DeliveryResult(ok=False, error=f"the mail server refused {refused}", permanent=True)
        except (OSError, smtplib.SMTPException) as exc:
            return DeliveryResult(ok=False, error=f"sending email failed: {exc}")
        return DeliveryResult(ok=True)


class WebhookTransport(Transport):
    def send(self, channel, recipients, message):
        body = json.dumps(message.payload, sort_keys=True, separators=(",", ":")).encode()
        timestamp = int(datetime.datetime.now(datetime.UTC).timestamp())
        headers = {
            SIGNATURE_HEADER: sign(channel.secret, timestamp, body),
            DELIVERY_HEADER: str(message.delivery_id),
            EVENT_HEADER: message.event,
        }
        return post_json(channel.url, body, headers)


class SlackTransport(Transport):
    def send(self, channel, recipients, message):
        return post_json(channel.url, json.dumps(message.slack).encode(), {})


TRANSPORTS: dict[str, Transport] = {
    ChannelKind.EMAIL: EmailTransport(),
    ChannelKind.WEBHOOK: WebhookTransport(),
    ChannelKind.SLACK: SlackTransport(),
}
