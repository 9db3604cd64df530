"""Issue 4's "done when", end to end through the UI and the plain task functions.

A model owner sees a monitor on the demo model fire on the 2012 predictions, gets the alert by
email and by a signed webhook (a local ``http.server``), acknowledges it in the UI, and watches an
alert nobody acknowledged escalate to the next level.
"""

from __future__ import annotations

import datetime

from django.urls import reverse
from django.utils import timezone

from governance.models import TeamRole
from monitoring import transports
from monitoring.actions.channels import do_create_channel
from monitoring.actions.checks import do_run_monitor
from monitoring.actions.monitors import do_create_monitor
from monitoring.actions.policies import do_create_escalation_policy
from monitoring.execute import execute_drift_check, predict_with_model, run_escalations
from monitoring.models import Alert, DriftCheck, Monitor, Notification
from runners.actions import do_submit_job
from runners.execute import execute_job
from tests.monitoring.conftest import read_mail


def test_a_monitor_fires_on_2012_the_owner_acknowledges_and_an_unacknowledged_alert_escalates(
    client,
    team,
    owner,
    scientist,
    dataset_version,
    registered_version,
    current_dataset_version,
    receiver,
    mail_dir,
    django_capture_on_commit_callbacks,
):
    # The data scientist predicts the 2012 rows with the model trained on 2011.
    inference = do_submit_job(
        kind="infer",
        dataset_version=dataset_version,
        model_version=registered_version,
        spec={"where": {"yr": 1}},
        actor=scientist,
    )
    assert execute_job(inference.pk) == "succeeded"
    inference.refresh_from_db()
    # The owner routes alerts: level 1 is herself by email and the team's webhook; level 2 the
    # team's data scientists, 15 minutes later.
    email = do_create_channel(team=team, name="people", kind="email", actor=owner)
    hook = do_create_channel(team=team, name="ops", kind="webhook", url=receiver.url, actor=owner)
    policy = do_create_escalation_policy(
        team=team,
        name="drift",
        levels=[
            {"delay_minutes": 15, "users": [owner], "channels": [email, hook]},
            {"delay_minutes": 15, "role": TeamRole.DATA_SCIENTIST},
        ],
        actor=owner,
    )

    # In the UI she creates a monitor on the model version and runs it.
    client.force_login(owner)
    created = client.post(
        reverse("monitor_create", args=[registered_version.pk]),
        {
            "name": "predictions",
            "source": "predictions",
            "window_versions": 1,
            "drift_share": 0.5,
            "min_sample_size": 2000,
            "check_predictions": "on",
            "check_performance": "on",
            "performance_tolerance": 0.1,
            "severity": "warning",
            "runbook_url": "https://wiki.example/runbooks/bike-demand",
            "escalation_policy": policy.pk,
            "schedule_minutes": 60,
            "auto_resolve_after": 3,
            "reopen_within_hours": 24,
        },
    )
    monitor = Monitor.objects.get()
    assert (created.status_code, created["Location"]) == (302, monitor.get_absolute_url())
    run = client.post(reverse("monitor_run", args=[monitor.pk]))
    check = DriftCheck.objects.get()
    assert run["Location"] == check.get_absolute_url()
    assert (check.current_dataset_version, check.state) == (inference.output_dataset_version, "queued")
    assert (monitor.reference_dataset_version, monitor.reference_where) == (dataset_version, {"yr": 0})

    # The worker's task runs the check (with the model runtime for prediction drift).
    with django_capture_on_commit_callbacks(execute=True):
        assert execute_drift_check(check.pk, predictor=predict_with_model, make_report=False) == "succeeded"

    alert = Alert.objects.get()
    check.refresh_from_db()
    assert (alert.monitor, alert.state, alert.severity) == (monitor, "open", "critical")
    assert [c["column"] for c in check.drifted_columns] == ["hum", "cnt"]
    assert check.is_performance_drift is True
    # By email ...
    (mail,) = mail_dir.iterdir()
    message = read_mail(mail)
    assert (message["To"], message["Subject"]) == ("olivia@example.com", f"[Steward] {alert.title}")
    assert "Runbook: https://wiki.example/runbooks/bike-demand" in message.get_content()
    # ... and by the signed webhook.
    (request,) = receiver.requests
    assert transports.verify(
        hook.secret, request.headers["X-Steward-Signature"], request.body, timezone.now()
    )
    assert request.json()["alert"]["id"] == alert.pk
    assert request.json()["alert"]["evidence"]["runbook_url"] == "https://wiki.example/runbooks/bike-demand"

    # She opens the alert, sees the evidence and her notifications, and acknowledges it.
    page = client.get(alert.get_absolute_url()).content.decode()
    assert '<tr class="drifted"><td><code>hum</code></td>' in page
    assert ">people</a> (email)" in page
    assert ">ops</a> (webhook)" in page
    acknowledged = client.post(reverse("alert_acknowledge", args=[alert.pk]))
    assert acknowledged.status_code == 302
    alert.refresh_from_db()
    assert (alert.state, alert.acknowledged_by) == ("acknowledged", owner)
    with django_capture_on_commit_callbacks(execute=True):
        quiet = run_escalations(timezone.now() + datetime.timedelta(minutes=16))
    assert quiet == {"escalated": [], "notifications": {}}

    # Another monitor fires, on uploaded 2012 batches; nobody acknowledges it.
    batches = do_create_monitor(
        model_version=registered_version,
        name="batches",
        source="dataset",
        current_dataset=current_dataset_version.dataset,
        escalation_policy=policy,
        actor=scientist,
    )
    second = do_run_monitor(monitor=batches, actor=scientist)
    with django_capture_on_commit_callbacks(execute=True):
        execute_drift_check(second.pk, make_report=False)
    unacknowledged = Alert.objects.get(monitor=batches)
    with django_capture_on_commit_callbacks(execute=True):
        too_early = run_escalations(timezone.now() + datetime.timedelta(minutes=14))
    with django_capture_on_commit_callbacks(execute=True):
        escalated = run_escalations(timezone.now() + datetime.timedelta(minutes=16))

    assert too_early["escalated"] == []
    assert escalated["escalated"] == [unacknowledged.pk]
    unacknowledged.refresh_from_db()
    assert (unacknowledged.state, unacknowledged.escalation_level) == ("open", 1)
    assert list(
        Notification.objects.filter(alert=unacknowledged)
        .order_by("id")
        .values_list("level", "kind", "recipients")
    ) == [
        (0, "webhook", ["olivia"]),
        (0, "email", ["olivia@example.com"]),
        (1, "email", ["dana@example.com"]),
    ]
    page = client.get(unacknowledged.get_absolute_url()).content.decode()
    assert "level 2 reached" in page
    assert "<td>Escalated</td>" in page
