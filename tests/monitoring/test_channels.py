"""Channels: signed webhooks, Slack, email; retries with backoff; a permanent failure disables the
channel and tells its owner. Webhooks go to a local ``http.server`` on 127.0.0.1 (no network)."""

from __future__ import annotations

import datetime
import hashlib
import hmac
import socket

import pytest

from governance.models import AuditEvent
from monitoring import transports
from monitoring.actions.channels import do_create_channel, do_update_channel
from monitoring.actions.deliveries import claim_notification, deliver_due_notifications
from monitoring.actions.monitors import do_update_monitor
from monitoring.actions.policies import do_create_escalation_policy
from monitoring.models import Alert, Channel, Notification
from tests.conftest import sent_mail
from tests.monitoring.conftest import BREACH, T0, finish_check, minutes


def _policy_with(channel, owner, *, delay: int = 15):
    return do_create_escalation_policy(
        team=channel.team,
        name=f"via {channel.name}",
        levels=[{"delay_minutes": delay, "repeat": 0, "users": [owner], "channels": [channel]}],
        actor=owner,
    )


@pytest.fixture
def alert_via(monitor, scientist, owner, django_capture_on_commit_callbacks):
    """Route ``monitor``'s alerts through one channel, then breach at T0 (deliveries run on commit)."""

    def make(channel) -> Alert:
        do_update_monitor(monitor=monitor, escalation_policy=_policy_with(channel, owner), actor=scientist)
        with django_capture_on_commit_callbacks(execute=True):
            finish_check(monitor, BREACH, T0, scientist)
        return Alert.objects.get()

    return make


def test_webhook_is_json_signed_with_hmac_sha256(team, owner, receiver, alert_via, settings):
    hook = do_create_channel(
        team=team, name="ops", kind="webhook", url=f"{receiver.url}/steward", actor=owner
    )

    alert = alert_via(hook)

    (request,) = receiver.requests
    notification = Notification.objects.get()
    signature = request.headers["X-Steward-Signature"]
    timestamp = int(signature.split(",")[0].removeprefix("t="))
    expected = hmac.new(
        hook.secret.encode(), f"{timestamp}.".encode() + request.body, hashlib.sha256
    ).hexdigest()
    assert len(hook.secret) == 64
    assert signature == f"t={timestamp},v1={expected}"
    assert transports.verify(hook.secret, signature, request.body, request.received_at)
    assert (request.path, request.headers["Content-Type"]) == ("/steward", "application/json")
    assert request.headers["X-Steward-Delivery"] == str(notification.pk)
    assert request.headers["X-Steward-Event"] == "alert.notification"
    body = request.json()
    assert body["alert"]["id"] == alert.pk
    assert body["alert"]["url"] == f"{settings.STEWARD_BASE_URL}/alerts/{alert.pk}/"
    assert body["alert"]["summary"] == ["hum: wasserstein = 0.1713 (threshold 0.1)"]
    assert body["alert"]["evidence"]["drifted_columns"] == [
        {
            "column": "hum",
            "kind": "numeric",
            "method": "wasserstein",
            "score": 0.1713,
            "threshold": 0.1,
            "status": "drift",
            "message": "wasserstein 0.1713 >= 0.1",
        }
    ]
    assert body["alert"]["evidence"]["window"] == {"dataset_versions": ["bike-sharing-2012 v1"], "rows": 8734}
    assert body["escalation"] == {"round": 0, "level": 0, "repeat": 0, "targets": ["olivia"]}
    assert (notification.state, notification.response_code, notification.attempts) == ("sent", 200, 1)
    hook.refresh_from_db()
    assert (hook.last_success_at, hook.consecutive_failures) == (T0, 0)


@pytest.mark.parametrize(
    ("header", "body", "now", "expected"),
    [
        ("t=1764579600,v1={sig}", b'{"a":1}', 1764579600 + 299, True),
        ("t=1764579600,v1={sig}", b'{"a":2}', 1764579600, False),  # body changed
        ("t=1764579600,v1={sig}", b'{"a":1}', 1764579600 + 301, False),  # too old: a replay
        ("v1={sig}", b'{"a":1}', 1764579600, False),
        ("garbage", b'{"a":1}', 1764579600, False),
    ],
)
def test_verify_checks_the_signature_and_its_age(header, body, now, expected):
    sig = transports.sign("s3cret", 1764579600, b'{"a":1}').split("v1=")[1]
    at = datetime.datetime.fromtimestamp(now, datetime.UTC)

    assert transports.verify("s3cret", header.format(sig=sig), body, at) is expected


def test_slack_gets_its_text_payload(team, owner, receiver, alert_via):
    slack = do_create_channel(team=team, name="slack", kind="slack", url=receiver.url, actor=owner)

    alert = alert_via(slack)

    (request,) = receiver.requests
    assert "X-Steward-Signature" not in request.headers
    assert request.json() == {
        "text": f"*{alert.title}*\n• hum: wasserstein = 0.1713 (threshold 0.1)\n"
        f"<http://127.0.0.1:8000/alerts/{alert.pk}/|Alert> · "
        f"<http://127.0.0.1:8000/drift-checks/{alert.drift_check_id}/|Drift check>"
    }


def test_an_email_channel_with_an_address_mails_that_address(team, owner, alert_via, mail_dir):
    oncall = do_create_channel(
        team=team, name="oncall", kind="email", email_address="oncall@example.com", actor=owner
    )

    alert = alert_via(oncall)

    (message,) = sent_mail(mail_dir)
    assert (message["To"], message["Subject"]) == ("oncall@example.com", f"[Steward] {alert.title}")
    assert list(Notification.objects.values_list("recipients", "state")) == [(["oncall@example.com"], "sent")]


def test_a_failing_webhook_is_retried_with_backoff_and_its_error_shown(
    team, owner, receiver, alert_via, django_capture_on_commit_callbacks
):
    receiver.statuses = [500, 502, 200]
    hook = do_create_channel(team=team, name="ops", kind="webhook", url=receiver.url, actor=owner)
    alert_via(hook)
    notification = Notification.objects.get()
    assert (notification.state, notification.attempts, notification.response_code) == ("retrying", 1, 500)
    assert notification.error == f"HTTP 500 from {receiver.url}: no_service"
    assert notification.next_attempt_at == T0 + minutes(1)

    too_soon = deliver_due_notifications(T0 + minutes(0.5))
    second = deliver_due_notifications(T0 + minutes(1))
    notification.refresh_from_db()
    assert (too_soon, second) == ({}, {notification.pk: "retrying"})
    assert notification.next_attempt_at == T0 + minutes(1) + minutes(2)  # backoff doubles
    hook.refresh_from_db()
    assert (hook.consecutive_failures, hook.last_error, hook.is_active) == (
        2,
        f"HTTP 502 from {receiver.url}: no_service",
        True,
    )

    third = deliver_due_notifications(T0 + minutes(3))

    notification.refresh_from_db()
    hook.refresh_from_db()
    assert third == {notification.pk: "sent"}
    assert (notification.attempts, notification.error, notification.sent_at) == (3, "", T0 + minutes(3))
    assert (hook.consecutive_failures, hook.last_success_at) == (0, T0 + minutes(3))
    assert len(receiver.requests) == 3


def test_five_failures_disable_the_channel_and_tell_its_owner(
    team, owner, receiver, alert_via, mail_dir, django_capture_on_commit_callbacks
):
    receiver.statuses = [503]
    hook = do_create_channel(team=team, name="ops", kind="webhook", url=receiver.url, actor=owner)
    alert_via(hook)
    at = T0
    for backoff in (1, 2, 4, 8):
        at += minutes(backoff)
        with django_capture_on_commit_callbacks(execute=True):
            deliver_due_notifications(at)

    notification = Notification.objects.get()
    hook.refresh_from_db()
    assert (notification.state, notification.attempts) == ("failed", 5)
    assert (hook.is_active, hook.disabled_at) == (False, T0 + minutes(15))
    assert hook.disabled_reason == (
        f"HTTP 503 from {receiver.url}: no_service (after 5 attempts, notification #{notification.pk})"
    )
    assert len(receiver.requests) == 5
    (message,) = [m for m in sent_mail(mail_dir) if "Channel" in m["Subject"]]
    assert (message["To"], message["Subject"]) == ("olivia@example.com", "[Steward] Channel ops was disabled")
    assert hook.disabled_reason in message.get_content()
    assert list(
        AuditEvent.objects.filter(object_type="channel").order_by("id").values_list("action", "actor_label")
    ) == [("channel.create", "olivia"), ("channel.disable", "system")]
    # Nothing more is tried.
    assert deliver_due_notifications(T0 + minutes(60)) == {}


def test_a_gone_webhook_fails_at_once(team, owner, receiver, alert_via, mail_dir):
    receiver.statuses = [404]
    hook = do_create_channel(team=team, name="ops", kind="webhook", url=receiver.url, actor=owner)

    alert_via(hook)

    hook.refresh_from_db()
    assert list(Notification.objects.values_list("state", "attempts", "response_code")) == [
        ("failed", 1, 404)
    ]
    notification = Notification.objects.get()
    assert (hook.is_active, hook.disabled_reason) == (
        False,
        f"HTTP 404 from {receiver.url}: no_service (after 1 attempt, notification #{notification.pk})",
    )


def test_an_unreachable_webhook_is_retried(team, owner, alert_via):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    hook = do_create_channel(
        team=team, name="ops", kind="webhook", url=f"http://127.0.0.1:{port}/", actor=owner
    )

    alert_via(hook)

    notification = Notification.objects.get()
    assert (notification.state, notification.response_code) == ("retrying", None)
    assert notification.error.startswith(f"could not reach http://127.0.0.1:{port}/: ")
    assert Channel.objects.get().is_active is True


def test_enabling_a_disabled_channel_clears_its_failure(team, owner):
    hook = do_create_channel(
        team=team, name="ops", kind="webhook", url="https://example.invalid/", actor=owner
    )
    Channel.objects.filter(pk=hook.pk).update(
        is_active=False, disabled_reason="HTTP 404", consecutive_failures=5
    )

    hook = do_update_channel(channel=hook, is_active=True, actor=owner)

    assert (hook.is_active, hook.disabled_reason, hook.disabled_at, hook.consecutive_failures) == (
        True,
        "",
        None,
        0,
    )


@pytest.mark.parametrize(
    ("kind", "fields", "errors"),
    [
        ("webhook", {"url": "ftp://example.com/"}, {"url": ["a webhook needs an http(s) URL"]}),
        ("pager", {}, {"kind": ["unknown kind 'pager'; one of email, webhook, slack"]}),
        ("email", {"name": " "}, {"name": ["a channel needs a name"]}),
    ],
)
def test_channel_input_is_checked(team, owner, kind, fields, errors):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError) as raised:
        do_create_channel(team=team, **({"name": "x", "kind": kind, "actor": owner} | fields))

    assert raised.value.message_dict == errors
    assert Channel.objects.count() == 0


def test_the_owner_must_be_in_the_team(team, owner, outsider):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError) as raised:
        do_create_channel(team=team, name="x", kind="email", owner=outsider, actor=owner)

    assert raised.value.message_dict == {"owner": ["the owner must be a member of the team"]}


# Through the API ------------------------------------------------------------------------------


def test_api_answers_the_secret_once_on_creation(client_for, team, owner, viewer):
    client = client_for(owner)

    created = client.post(
        "/api/channels/",
        {"team": team.pk, "name": "ops", "kind": "webhook", "url": "https://hooks.example/x"},
    )
    listed = client_for(viewer).get("/api/channels/")
    rotated = client.post(f"/api/channels/{created.json()['id']}/rotate-secret/")

    channel = Channel.objects.get()
    assert created.status_code == 201
    assert len(created.json()["secret"]) == 64
    assert created.json()["secret"] != rotated.json()["secret"] == channel.secret
    assert created.json()["owner"] == "olivia"
    assert "secret" not in listed.json()["results"][0]
    assert rotated.status_code == 200
    assert list(
        AuditEvent.objects.filter(object_type="channel").order_by("id").values_list("action", "after")
    ) == [
        (
            "channel.create",
            {
                "name": "ops",
                "kind": "webhook",
                "owner_id": owner.pk,
                "email_address": "",
                "url": "https://hooks.example/x",
                "is_active": True,
                "disabled_reason": "",
            },
        ),
        ("channel.rotate_secret", {"secret": "rotated"}),
    ]


def test_only_model_owners_manage_channels_and_outsiders_see_none(
    client_for, team, owner, scientist, outsider
):
    channel = do_create_channel(team=team, name="ops", kind="email", actor=owner)
    events = AuditEvent.objects.count()

    create = client_for(scientist).post("/api/channels/", {"team": team.pk, "name": "mine", "kind": "email"})
    change = client_for(scientist).patch(f"/api/channels/{channel.pk}/", {"is_active": False}, format="json")
    hidden = client_for(outsider).get(f"/api/channels/{channel.pk}/")
    listed = client_for(outsider).get("/api/channels/")

    assert (create.status_code, create.json()) == (403, {"detail": "you may not manage objects of this team"})
    assert change.status_code == 403
    assert hidden.status_code == 404
    assert listed.json()["results"] == []
    assert list(Channel.objects.values_list("name", "is_active")) == [("ops", True)]
    assert AuditEvent.objects.count() == events


def test_a_delivery_left_sending_by_a_dead_worker_is_sent_again_later(team, owner, receiver, alert_via):
    hook = do_create_channel(team=team, name="ops", kind="webhook", url=receiver.url, actor=owner)
    alert_via(hook)
    notification = Notification.objects.get()
    # A worker claimed the retry at T0 + 5 min and died before recording the result.
    Notification.objects.filter(pk=notification.pk).update(state="retrying", next_attempt_at=T0 + minutes(5))
    assert claim_notification(notification.pk, T0 + minutes(5)) is True

    still_sending = deliver_due_notifications(T0 + minutes(14))
    released = deliver_due_notifications(T0 + minutes(16))

    notification.refresh_from_db()
    assert (still_sending, released) == ({}, {notification.pk: "sent"})
    assert (notification.attempts, len(receiver.requests)) == (3, 2)
