"""Issue 14, a hostile review: odd check results, alert filters, the promotion acknowledgement
through every door, the approvers' mail, the audit event page and proof, the charts."""

from __future__ import annotations

import base64

import pytest
from django.core import mail
from django.core.mail import BadHeaderError

from governance.actions import promotions
from governance.actions.promotions import do_request_promotion
from governance.actions.teams import do_set_membership
from governance.audit import record_audit_event
from governance.models import AuditEvent, PromotionRequest
from governance.tasks import notify_approvers
from monitoring.actions.checks import CheckOutcome, do_finish_drift_check, do_request_drift_check
from monitoring.models import Alert
from tests.conftest import PASSWORD, _user
from tests.monitoring.conftest import BREACH, HUM_DRIFT, T0, TEMP_OK, finish_check

pytestmark = pytest.mark.django_db


# 1. Verdicts and alert titles.


def test_odd_results_still_give_a_title(monitor, scientist):
    odd = CheckOutcome(
        results=[],
        is_dataset_drift=False,
        drifted_count=0,
        drifted_fraction=0.0,
        prediction={
            "column": "prediction",
            "method": "psi",
            "score": 0.5,
            "threshold": 0.1,
            "is_drifted": True,
        },
        performance={
            "metrics": {"m" * 500: {"current": 2.0, "baseline": 0.0, "change": None, "is_degraded": True}}
        },
        is_performance_drift=True,
    )
    finish_check(monitor, odd, T0, scientist)
    alert = Alert.objects.get()
    assert len(alert.title) == 300
    assert alert.title.startswith("Prediction drift on ")


def test_a_check_whose_monitor_was_deleted_still_shows(client, monitor, scientist, owner):
    check = finish_check(monitor, BREACH, T0, scientist)
    monitor.delete()
    check.refresh_from_db()
    assert check.monitor is None
    client.force_login(owner)
    assert client.get(check.get_absolute_url()).status_code == 200
    assert client.get(Alert.objects.get().get_absolute_url()).status_code == 200


# 2. The alert list's state filter.


@pytest.mark.parametrize("value", ["bogus", "unresolved'--", "", "OPEN"])
def test_a_bad_state_filter_is_400_not_500(client, client_for, monitor, scientist, owner, value):
    finish_check(monitor, BREACH, T0, scientist)
    client.force_login(owner)
    assert client.get("/alerts/", {"state": value}).status_code in (200, 400)
    assert client_for(owner).get("/api/alerts/", {"state": value}).status_code in (200, 400)


def test_another_teams_alerts_are_never_listed(client, client_for, monitor, scientist, outsider):
    alert = finish_check(monitor, BREACH, T0, scientist) and Alert.objects.get()
    client.force_login(outsider)
    for state in ("unresolved", "open", ""):
        assert f"/alerts/{alert.pk}/" not in client.get("/alerts/", {"state": state}).content.decode()
        assert client_for(outsider).get("/api/alerts/", {"state": state}).json()["results"] == []


# 3. The acknowledgement and the approvers' mail.


@pytest.fixture
def critical_alert(registered_version, current_dataset_version, scientist):
    check = do_request_drift_check(
        model_version=registered_version, current_dataset_version=current_dataset_version, actor=scientist
    )
    do_finish_drift_check(check.pk, result=BREACH)
    return Alert.objects.get()


@pytest.mark.parametrize("value", [None, [True], {"a": 1}, "maybe"])
def test_an_odd_acknowledgement_is_a_400(client_for, scientist, registered_version, critical_alert, value):
    answer = client_for(scientist).post(
        "/api/promotion-requests/",
        {"model_version": registered_version.pk, "acknowledge_alerts": value},
        format="json",
    )
    assert answer.status_code == 400
    assert "acknowledge_alerts" in answer.json()
    assert not PromotionRequest.objects.exists()


def test_the_mlflow_set_alias_refuses_with_a_400(client, scientist, registered_version, critical_alert):
    basic = base64.b64encode(f"{scientist.username}:{PASSWORD}".encode()).decode()
    answer = client.post(
        "/api/2.0/mlflow/registered-models/alias",
        {
            "name": registered_version.model.name,
            "alias": "production",
            "version": str(registered_version.version),
        },
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Basic {basic}",
    )
    assert answer.status_code == 400, answer.content
    assert answer.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert not PromotionRequest.objects.exists()


def test_an_approver_with_a_broken_address_does_not_stop_the_mail(
    scientist, approver, admin, team, registered_version, model_version
):
    # An address as an identity provider may send it (the SSO claim is stored as given).
    approver.email = "aaron@example.com\nBcc: everyone@example.com"
    approver.save()
    second = _user("beth")
    do_set_membership(user=second, team=team, role="approver", actor=admin)
    first = do_request_promotion(model_version=registered_version, actor=scientist)
    later = do_request_promotion(model_version=model_version, actor=scientist)

    assert notify_approvers() == 2
    assert sorted(message.to for message in mail.outbox) == [[second.email]] * 2
    for request in (first, later):
        request.refresh_from_db()
        assert request.approvers_notified_at is not None


def test_a_mail_django_cannot_compose_does_not_stop_the_others(
    scientist, approver, registered_version, model_version, monkeypatch
):
    first = do_request_promotion(model_version=registered_version, actor=scientist)
    later = do_request_promotion(model_version=model_version, actor=scientist)
    send = promotions.send_mail

    def refuse_the_first(**message):
        if str(registered_version) in message["subject"]:
            raise BadHeaderError("Header values can't contain newlines")
        return send(**message)

    monkeypatch.setattr(promotions, "send_mail", refuse_the_first)

    assert notify_approvers() == 1
    first.refresh_from_db()
    later.refresh_from_db()
    assert (first.approvers_notified_at, later.approvers_notified_at is not None) == (None, True)
    assert len(mail.outbox) == 1


# 4. The audit event page and its proof.


def test_huge_and_odd_ids_are_404(client, compliance_officer, scientist):
    client.force_login(compliance_officer)
    for path in ("/audit/99999999999999999999/", "/audit/99999999999999999999/proof.json"):
        assert client.get(path).status_code == 404
    client.force_login(scientist)
    assert client.get("/audit/99999999999999999999/proof.json").status_code == 403
    assert client.get("/audit/abc/proof.json").status_code == 404


def test_a_recorded_id_out_of_range_is_shown_bare(
    client, compliance_officer, team, scientist, registered_version
):
    record_audit_event(
        actor=scientist,
        action="model_version.update",
        obj=registered_version,
        before={"model_id": 10**30, "source_job_id": -1, "dataset_version_id": "x"},
        after={"model_id": 2**63, "source_job_id": 1.5},
    )
    event = AuditEvent.objects.latest("id")
    for viewer in (compliance_officer, scientist):
        client.force_login(viewer)
        assert client.get(f"/audit/{event.pk}/").status_code == 200


# 5. Charts with odd figures and names.


def test_charts_take_odd_scores_and_hostile_names(client, monitor, scientist, owner):
    hostile = "</script><script>alert(1)</script>"
    odd = CheckOutcome(
        results=[
            # JSON columns hold no NaN or infinity (the engine stores them as null).
            dict(HUM_DRIFT, column=hostile, score=None, threshold=0.1),
            dict(HUM_DRIFT, column="negative", score=-1.0, threshold=0.0),
            dict(HUM_DRIFT, column="huge", score=1e308, threshold=1e-308),
            *(dict(TEMP_OK, column=f"c{i}") for i in range(300)),
        ],
        is_dataset_drift=True,
        drifted_count=3,
        drifted_fraction=0.01,
        prediction={"column": "prediction"},
        performance={"metrics": {}},
        is_performance_drift=False,
    )
    check = finish_check(monitor, odd, T0, scientist)
    client.force_login(owner)
    for path in (
        check.get_absolute_url(),
        monitor.get_absolute_url(),
        f"{monitor.get_absolute_url()}?column={hostile}",
        f"{monitor.get_absolute_url()}?column=huge",
        Alert.objects.get().get_absolute_url(),
    ):
        answer = client.get(path)
        assert answer.status_code == 200, path
        assert "<script>alert(1)" not in answer.content.decode()
