"""Issue 14, the approver's context: a version with an unresolved critical alert is asked for only
with an explicit acknowledgement, which is stored, audited and shown to the approver, through
every door (API, web page, the alias endpoint); approvers are emailed each request once, also
when the mail server was down the first time.
"""

from __future__ import annotations

import pytest
from django.core import mail
from django.urls import reverse

from governance.actions.promotions import do_request_promotion
from governance.models import AuditEvent, PromotionRequest
from governance.tasks import notify_approvers
from monitoring.actions.alerts import do_acknowledge_alert
from monitoring.actions.checks import do_finish_drift_check, do_request_drift_check
from monitoring.actions.monitors import do_create_monitor
from monitoring.models import Alert, CurrentSource
from tests.monitoring.conftest import BREACH, T0, finish_check

pytestmark = pytest.mark.django_db


@pytest.fixture
def critical_alert(registered_version, current_dataset_version, scientist):
    """The alert a hand-run check opens when the dataset drifted: critical (no monitor)."""
    check = do_request_drift_check(
        model_version=registered_version, current_dataset_version=current_dataset_version, actor=scientist
    )
    do_finish_drift_check(check.pk, result=BREACH)
    alert = Alert.objects.get()
    assert alert.severity == "critical"
    return alert


def test_the_api_asks_for_an_acknowledgement_then_records_it(
    client_for, scientist, approver, registered_version, critical_alert
):
    client = client_for(scientist)
    events = AuditEvent.objects.count()

    refused = client.post("/api/promotion-requests/", {"model_version": registered_version.pk}, format="json")

    assert refused.status_code == 400
    message = refused.json()["acknowledge_alerts"][0]
    assert f"#{critical_alert.pk} {critical_alert.title}" in message
    assert (PromotionRequest.objects.count(), AuditEvent.objects.count()) == (0, events)

    made = client.post(
        "/api/promotion-requests/",
        {"model_version": registered_version.pk, "acknowledge_alerts": True},
        format="json",
    )
    assert made.status_code == 201, made.json()
    acknowledged = [{"id": critical_alert.pk, "title": critical_alert.title, "state": "open"}]
    assert made.json()["acknowledged_alerts"] == acknowledged
    event = AuditEvent.objects.get(action="promotion_request.create")
    assert (event.actor, event.after["acknowledged_alerts"]) == (scientist, acknowledged)


def test_the_web_form_lists_the_alerts_and_needs_the_box_ticked(
    client, scientist, approver, registered_version, critical_alert
):
    client.force_login(scientist)
    url = reverse("promotion_request_create", args=[registered_version.pk])
    # The version's page lists them beside its request form already.
    version_page = client.get(registered_version.get_absolute_url()).content.decode()
    assert "Unresolved critical alerts:" in version_page
    assert f'<a href="/alerts/{critical_alert.pk}/">alert #{critical_alert.pk}</a>' in version_page

    refused = client.post(url, {"alias": "production", "reason": "better on 2012"})

    assert refused.status_code == 400
    page = refused.content.decode()
    assert "Unresolved critical alerts" in page
    assert f'href="/alerts/{critical_alert.pk}/"' in page
    assert "read them, then request again acknowledging them" in page
    assert "(acknowledge_alerts)" not in page  # the API's field name meant nothing on the page
    assert not PromotionRequest.objects.exists()

    # One box per alert, by id: ticking an alert acknowledges that alert.
    assert f'name="acknowledge_alerts" value="{critical_alert.pk}"' in page
    made = client.post(
        url, {"alias": "production", "reason": "better on 2012", "acknowledge_alerts": [critical_alert.pk]}
    )
    promotion = PromotionRequest.objects.get()
    assert made["Location"] == reverse("promotion_detail", args=[promotion.pk])

    client.force_login(approver)
    shown = client.get(made["Location"]).content.decode()
    assert "Acknowledged alerts" in shown
    assert f'<a href="/alerts/{critical_alert.pk}/">alert #{critical_alert.pk}</a>' in shown


def test_the_alias_endpoint_refuses_a_protected_alias_with_a_critical_alert(
    client_for, scientist, registered_version, critical_alert
):
    answer = client_for(scientist).put(
        f"/api/models/{registered_version.model_id}/aliases/production/",
        {"version": registered_version.version},
        format="json",
    )
    assert answer.status_code == 400
    assert f"#{critical_alert.pk}" in answer.json()["acknowledge_alerts"][0]
    assert not PromotionRequest.objects.exists()


def test_an_acknowledged_alert_still_counts_until_it_is_resolved(
    client_for, scientist, owner, registered_version, critical_alert
):
    do_acknowledge_alert(alert=critical_alert, actor=owner)
    answer = client_for(scientist).post(
        "/api/promotion-requests/", {"model_version": registered_version.pk}, format="json"
    )
    # Acknowledging the alert stops its escalation; it is still unresolved and still critical.
    assert answer.status_code == 400
    assert f"#{critical_alert.pk} {critical_alert.title}" in answer.json()["acknowledge_alerts"][0]


def test_approvers_are_emailed_once_per_request(
    scientist, approver, owner, admin, registered_version, settings
):
    promotion = do_request_promotion(
        model_version=registered_version, reason="better on 2012", actor=scientist
    )

    assert notify_approvers() == 1

    (message,) = mail.outbox
    assert message.to == [approver.email]  # the team's approvers only, never the requester
    assert message.subject == f"[Steward] Promotion to decide: {registered_version} to production"
    assert f"/promotions/{promotion.pk}/" in message.body
    assert "better on 2012" in message.body
    event = AuditEvent.objects.get(action="promotion_request.notify")
    assert event.after["notified"] == [approver.email]
    # Beat runs it every minute: nothing is sent twice.
    assert notify_approvers() == 0
    assert len(mail.outbox) == 1


def test_a_mail_server_that_is_down_leaves_the_request_for_the_next_run(
    scientist, approver, registered_version, settings
):
    do_request_promotion(model_version=registered_version, actor=scientist)
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", 9  # nothing listens on discard

    assert notify_approvers() == 0
    assert PromotionRequest.objects.get().approvers_notified_at is None
    assert not AuditEvent.objects.filter(action="promotion_request.notify").exists()

    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    assert notify_approvers() == 1
    assert [message.to for message in mail.outbox] == [[approver.email]]


def test_an_alert_raised_after_the_page_was_read_is_not_acknowledged_unseen(
    client, scientist, registered_version, current_dataset_version, critical_alert
):
    client.force_login(scientist)
    url = reverse("promotion_request_create", args=[registered_version.pk])
    assert f'value="{critical_alert.pk}"' in client.get(url).content.decode()
    # While she reads, a critical monitor breaches: a second alert, one she has not seen.
    monitor = do_create_monitor(
        model_version=registered_version,
        name="critical",
        source=CurrentSource.DATASET,
        current_dataset=current_dataset_version.dataset,
        severity="critical",
        actor=scientist,
    )
    finish_check(monitor, BREACH, T0, scientist)
    raised = Alert.objects.exclude(pk=critical_alert.pk).get()

    refused = client.post(url, {"alias": "production", "acknowledge_alerts": [critical_alert.pk]})

    assert refused.status_code == 400
    page = refused.content.decode()
    assert f"(#{raised.pk} {raised.title})" in page  # only the unseen one is named
    assert f"#{critical_alert.pk} " not in page.split("errorlist")[1]
    assert not PromotionRequest.objects.exists()
    # The page now offers both boxes; ticking both makes the request.
    assert f'value="{raised.pk}"' in page
    made = client.post(url, {"alias": "production", "acknowledge_alerts": [critical_alert.pk, raised.pk]})
    assert made.status_code == 302
    assert {a["id"] for a in PromotionRequest.objects.get().acknowledged_alerts} == {
        critical_alert.pk,
        raised.pk,
    }


def test_a_script_acknowledges_the_alert_ids_it_read_and_one_raised_since_is_refused_by_name(
    client_for, scientist, registered_version, current_dataset_version, critical_alert
):
    client = client_for(scientist)
    query = {"model_version": registered_version.pk, "severity": "critical", "state": "unresolved"}
    read = [row["id"] for row in client.get("/api/alerts/", query).json()["results"]]
    assert read == [critical_alert.pk]
    # Between the script's read and its request, a critical monitor breaches.
    monitor = do_create_monitor(
        model_version=registered_version,
        name="critical",
        source=CurrentSource.DATASET,
        current_dataset=current_dataset_version.dataset,
        severity="critical",
        actor=scientist,
    )
    finish_check(monitor, BREACH, T0, scientist)
    raised = Alert.objects.exclude(pk=critical_alert.pk).get()
    events = AuditEvent.objects.count()

    refused = client.post(
        "/api/promotion-requests/",
        {"model_version": registered_version.pk, "acknowledge_alerts": read},
        format="json",
    )

    assert refused.status_code == 400
    (message,) = refused.json()["acknowledge_alerts"]
    assert message == (
        f"{registered_version} has unresolved critical alerts (#{raised.pk} {raised.title}); "
        "read them, then request again acknowledging them"
    )
    assert (PromotionRequest.objects.count(), AuditEvent.objects.count()) == (0, events)
    made = client.post(
        "/api/promotion-requests/",
        {"model_version": registered_version.pk, "acknowledge_alerts": [*read, raised.pk]},
        format="json",
    )
    assert made.status_code == 201, made.json()
    assert sorted(alert["id"] for alert in made.json()["acknowledged_alerts"]) == sorted(
        [critical_alert.pk, raised.pk]
    )
    event = AuditEvent.objects.get(action="promotion_request.create")
    assert sorted(alert["id"] for alert in event.after["acknowledged_alerts"]) == sorted(
        [critical_alert.pk, raised.pk]
    )


@pytest.mark.parametrize("value", [[0], [-3], ["x"], [1.5], [[1]]])
def test_an_alert_id_list_with_a_non_id_is_a_400(
    client_for, scientist, registered_version, critical_alert, value
):
    answer = client_for(scientist).post(
        "/api/promotion-requests/",
        {"model_version": registered_version.pk, "acknowledge_alerts": value},
        format="json",
    )

    assert (answer.status_code, answer.json()) == (
        400,
        {"acknowledge_alerts": [f"true, false, or a list of alert ids (integers); got {value!r}"]},
    )
    assert not PromotionRequest.objects.exists()


def test_the_alias_door_says_where_the_alerts_can_be_acknowledged(
    client_for, scientist, registered_version, critical_alert
):
    answer = client_for(scientist).put(
        f"/api/models/{registered_version.model_id}/aliases/production/",
        {"version": registered_version.version},
        format="json",
    )
    assert answer.status_code == 400
    assert "this door cannot acknowledge them" in answer.json()["acknowledge_alerts"][0]
    assert "POST /api/promotion-requests/" in answer.json()["acknowledge_alerts"][0]
