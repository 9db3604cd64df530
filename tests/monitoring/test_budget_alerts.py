"""Budget alerts (issue 16): a team past its monthly budget gets one alert a month, escalated to its
model owners through the existing escalation, handled like any other alert.

The job costs are set on submitted jobs as test set-up (``tests/runners/test_accounting.py`` runs
jobs for real and checks their cost); the check, the alert and its escalation are under test.
"""

from __future__ import annotations

import datetime

import pytest

from governance.actions.teams import do_set_membership
from governance.models import AuditEvent, TeamRole
from monitoring import tasks
from monitoring.actions.budgets import do_check_budgets
from monitoring.models import Alert, AlertEvent, Notification
from runners.actions import do_submit_job
from runners.budgets import do_create_budget
from runners.models import Budget, Job
from tests.conftest import _user, sent_mail

MARCH = datetime.datetime(2026, 3, 20, 12, 0, tzinfo=datetime.UTC)
APRIL = datetime.datetime(2026, 4, 5, 12, 0, tzinfo=datetime.UTC)


@pytest.fixture
def second_owner(admin, team):
    user = _user("otto")
    do_set_membership(user=user, team=team, role=TeamRole.MODEL_OWNER, actor=admin)
    return user


@pytest.fixture
def budget(team, admin, owner, second_owner, settings) -> Budget:
    settings.STEWARD_CURRENCY = "EUR"
    return do_create_budget(team=team, monthly_limit="10.00", actor=admin)


@pytest.fixture
def spend(dataset_version, registered_model, scientist, training_spec):
    def ran(at: datetime.datetime, cost: float) -> Job:
        job = do_submit_job(
            kind="train",
            dataset_version=dataset_version,
            registered_model=registered_model,
            spec=training_spec,
            actor=scientist,
        )
        # Test set-up: a job submitted at ``at`` whose compute cost ``cost``.
        Job.objects.filter(pk=job.pk).update(created_at=at, state="succeeded", cost=cost)
        return job

    return ran


def test_a_budget_alert_opens_once_a_month_and_escalates_to_the_team_s_owners(
    budget, spend, mail_dir, django_capture_on_commit_callbacks
):
    spend(MARCH - datetime.timedelta(days=5), 6.0)
    with django_capture_on_commit_callbacks(execute=True):
        assert do_check_budgets(MARCH) == []  # 6 of 10: within

    spend(MARCH - datetime.timedelta(days=1), 4.5)
    with django_capture_on_commit_callbacks(execute=True):
        (alert_id,) = do_check_budgets(MARCH)
    with django_capture_on_commit_callbacks(execute=True):
        assert do_check_budgets(MARCH + datetime.timedelta(hours=1)) == []
    spend(MARCH, 1.0)  # more spend the same month: still the one alert
    with django_capture_on_commit_callbacks(execute=True):
        assert do_check_budgets(MARCH + datetime.timedelta(hours=2)) == []

    alert = Alert.objects.get()
    assert alert.pk == alert_id
    assert (alert.kind, alert.team_id, alert.model_version_id, alert.drift_check_id) == (
        "budget",
        budget.team_id,
        None,
        None,
    )
    assert (alert.dedup_key, alert.severity, alert.state) == (
        f"budget:{budget.team_id}:2026-03",
        "critical",
        "open",
    )
    assert alert.title == "Team mobility passed its 2026-03 budget: 10.50 of 10.00 EUR"
    budget.refresh_from_db()
    assert budget.breached_month == datetime.date(2026, 3, 1)
    # Without a policy, the first step goes to the team's model owners (not the admin who set it).
    assert list(Notification.objects.values_list("level", "repeat", "recipients", "state")) == [
        (0, 0, ["olivia@example.com", "otto@example.com"], "sent")
    ]
    (mail,) = sent_mail(mail_dir)
    assert mail["Subject"] == "[Steward] Team mobility passed its 2026-03 budget: 10.50 of 10.00 EUR"
    body = mail.get_content()
    assert "Team: mobility, month 2026-03" in body
    assert "new jobs are held until a model owner releases them" in body
    assert "Usage: http" in body
    assert "/usage/?month=2026-03&team=mobility" in body
    assert list(AlertEvent.objects.values_list("kind", flat=True)) == ["open", "escalate"]
    assert list(
        AuditEvent.objects.filter(object_type="alert").order_by("id").values_list("action", "actor_label")
    ) == [("alert.open", "system"), ("alert.escalate", "system")]

    # A new month, passed again: a new alert.
    spend(APRIL - datetime.timedelta(days=2), 12.0)
    with django_capture_on_commit_callbacks(execute=True):
        (april_alert,) = do_check_budgets(APRIL)
    assert Alert.objects.get(pk=april_alert).dedup_key == f"budget:{budget.team_id}:2026-04"


def test_the_beat_task_checks_the_budgets(budget, spend):
    spend(datetime.datetime.now(datetime.UTC), 11.0)

    (alert_id,) = tasks.check_budgets()

    assert Alert.objects.get(pk=alert_id).kind == "budget"
    assert tasks.check_budgets() == []


def test_a_budget_alert_is_shown_and_acknowledged_like_any_other(
    budget, spend, client, client_for, owner, outsider, fresh
):
    spend(MARCH, 25.0)
    (alert_id,) = do_check_budgets(MARCH)

    client.force_login(owner)
    detail = client.get(f"/alerts/{alert_id}/")
    listing = client.get("/alerts/")
    assert (detail.status_code, listing.status_code) == (200, 200)
    page = detail.content.decode()
    assert "team Mobility, 2026-03: 25.00 of 10.00 EUR spent" in page
    assert "New jobs are held until a model owner of the team releases them" in page
    assert "Team mobility passed its 2026-03 budget" in listing.content.decode()
    answer = client_for(owner).get(f"/api/alerts/{alert_id}/").json()
    assert (answer["kind"], answer["model_version"], answer["drift_check"]) == ("budget", None, None)
    assert client_for(outsider).get(f"/api/alerts/{alert_id}/").status_code == 404

    acknowledged = client_for(fresh(owner)).post(f"/api/alerts/{alert_id}/acknowledge/")

    assert acknowledged.status_code == 200
    assert Alert.objects.get(pk=alert_id).state == "acknowledged"


def test_a_budget_that_does_not_hold_jobs_still_alerts(budget, spend, admin):
    Budget.objects.filter(pk=budget.pk).update(holds_jobs=False)  # test set-up
    spend(MARCH, 10.0)  # reaching the limit is passing it

    (alert_id,) = do_check_budgets(MARCH)

    alert = Alert.objects.get(pk=alert_id)
    assert (alert.severity, alert.summary) == (
        "warning",
        "Job cost this month 10.00 EUR, budget 10.00 EUR; jobs still run.",
    )
