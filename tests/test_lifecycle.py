"""The demo's whole lifecycle through a real Celery worker on the configured broker.

The worker runs in this process (a thread, solo pool) and consumes the broker that settings
name: kombu's filesystem broker under ``var/`` by default, Redis when CELERY_BROKER_URL says
so. Nothing is eager: ``run_demo`` submits through the actions and waits on the rows.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections import Counter

import pytest
from celery.contrib.testing.worker import start_worker
from django.conf import settings
from django.db import connection
from django_celery_beat.models import PeriodicTask
from django_celery_results.models import TaskResult

import config.celery
from config.demo import FEATURES, run_demo
from governance.models import AuditEvent, DatasetVersion
from lineage.models import LineageEdge
from monitoring.models import Alert, DriftCheck, Monitor, Notification, ReferenceProfile, ReportState
from tests.conftest import BIKE_HOURLY

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

# A queue of the tests' own: a development worker consuming the default queue of the same
# broker (./bin/up) must not take these tasks and run them against its own database.
QUEUE = "steward-tests"


@contextlib.contextmanager
def _routed_to(app, queue: str):
    saved = app.conf.task_routes
    app.conf.update(task_routes={"*": {"queue": queue}})
    try:
        yield
    finally:
        app.conf.update(task_routes=saved)


def _with_report(check: DriftCheck, timeout_s: float = 300.0) -> DriftCheck:
    """The check once its report task ended (succeeded or failed), read again."""
    deadline = time.monotonic() + timeout_s
    while True:
        check = DriftCheck.objects.get(pk=check.pk)
        if check.report_state not in (ReportState.QUEUED, ReportState.RUNNING) or time.monotonic() > deadline:
            return check
        time.sleep(0.5)


@pytest.fixture
def worker(settings):
    app = config.celery.app
    # Jobs go to their resource class's queue (issue 16), past the routes: the tests' own too.
    settings.STEWARD_RESOURCE_CLASSES = {"cpu": {"queue": QUEUE, "gpus": 0, "price_per_hour": 0.10}}
    with _routed_to(app, QUEUE):
        assert app.amqp.router.route({}, "runners.tasks.run_job")["queue"].name == QUEUE
        with app.connection_for_write() as conn:
            # Left-overs of an interrupted run would name jobs of another database.
            conn.default_channel.queue_declare(QUEUE)
            conn.default_channel.queue_purge(QUEUE)
        with start_worker(
            app, pool="solo", perform_ping_check=False, queues=[QUEUE], shutdown_timeout=60
        ) as w:
            yield w


def test_demo_lifecycle_through_a_real_worker(worker, mail_dir):
    # One user journey read top to bottom (issue 8 allows it past 80 lines): each step needs the last.
    if connection.vendor == "sqlite":
        # An in-memory test database would be invisible to the worker thread's connection.
        assert connection.settings_dict["NAME"] == str(settings.VAR_DIR / "test.sqlite3")
    lines: list[str] = []

    result = run_demo(say=lines.append, timeout_s=600, data_file=BIKE_HOURLY)

    training, inference, check = result.training_job, result.inference_job, result.drift_check
    version = training.output_model_version
    predictions = inference.output_dataset_version
    source = training.dataset_version

    # Training: version 1 of bike-demand, trained on the 2011 rows.
    assert (training.state, str(version)) == ("succeeded", "bike-demand v1")
    assert set(version.metrics) == {"loss", "rmse", "mae", "r2", "train_rows", "validation_rows"}
    assert (version.metrics["train_rows"], version.metrics["validation_rows"]) == (6916.0, 1729.0)
    assert [record["epoch"] for record in training.history] == list(range(1, 16))
    # Inference: the 2012 rows, with their predictions, registered as a dataset version.
    assert (inference.state, str(predictions)) == ("succeeded", "bike-demand-predictions v1")
    assert predictions.row_count == 8734
    assert predictions.column_names == [*source.column_names, "prediction"]
    # Lineage: data -> training -> model version -> inference -> predictions.
    edges = {
        (f"{e.source_type}:{e.source_id}", f"{e.target_type}:{e.target_id}", e.relation)
        for e in LineageEdge.objects.all()
    }
    assert edges == {
        (f"dataset_version:{source.pk}", f"job:{training.pk}", "input"),
        (f"job:{training.pk}", f"model_version:{version.pk}", "output"),
        (f"model_version:{version.pk}", f"job:{inference.pk}", "input"),
        (f"dataset_version:{source.pk}", f"job:{inference.pk}", "input"),
        (f"job:{inference.pk}", f"dataset_version:{predictions.pk}", "output"),
    }
    # Drift, found by the monitor's first check: humidity and the 2012 growth in demand, which
    # the model trained on 2011 underestimates (performance drift against its validation MAE).
    monitor = Monitor.objects.get()
    assert (check.monitor, monitor.reference_where, monitor.schedule_minutes) == (monitor, {"yr": 0}, 1440)
    assert PeriodicTask.objects.get(name=f"monitor-{monitor.pk}").enabled is True
    assert check.columns == [*FEATURES, "cnt"]
    assert check.window["labels"] == ["bike-demand-predictions v1"]
    assert [c["column"] for c in check.drifted_columns] == ["hum", "cnt"]
    assert (check.drifted_count, check.is_dataset_drift, check.progress) == (2, False, 1.0)
    assert check.prediction["method"] == "wasserstein"  # the worker predicted the reference rows
    assert check.performance["status"] == "drift"
    assert check.performance["metrics"]["mae"]["baseline"] == version.metrics["mae"]
    # Evidently's report, for people, comes after the verdict from a task of its own (issue 11):
    # its verdicts beside the engine's, the same on every column here.
    check = _with_report(check)
    assert check.report_state == ReportState.SUCCEEDED, check.report_error
    assert [c["is_drifted"] for c in check.evidently_results] == [c["is_drifted"] for c in check.results]
    assert (settings.ARTIFACT_ROOT / check.report).is_file()
    assert list(ReferenceProfile.objects.values_list("state", flat=True)) == ["ready", "ready"]
    alert = Alert.objects.get()
    assert (alert.owner.username, alert.state, alert.occurrences, alert.severity) == (
        "olivia",
        "open",
        1,
        "critical",
    )
    assert (alert.drift_check_id, alert.monitor, alert.escalation_level) == (check.pk, monitor, 0)
    assert list(Notification.objects.values_list("level", "repeat", "recipients", "state")) == [
        (0, 0, ["olivia@example.com"], "sent")
    ]
    (mail,) = list(mail_dir.iterdir())
    message = mail.read_text()
    assert "To: olivia@example.com" in message
    assert "Subject: [Steward] Data drift on bike-demand v1: 2 of 12 columns" in message
    (registered,) = [line for line in lines if line.startswith("registered ")]
    # Metrics as people read them: no exponent form (an MSE of 12345 was "1.23e+04").
    values = [pair.split("=")[1] for pair in registered.split(": ", 1)[1].split(", ")]
    assert values
    assert all(re.fullmatch(r"-?[\d,]+(\.\d+)?", value) for value in values), registered
    assert lines[-2] == f"drift check #{check.pk}: 2 of 12 columns drifted (hum, cnt)"
    assert lines[-1] == f"alert #{alert.pk} for olivia: {alert.title}"

    # The worker ran each task: results stored, and the rows' audit events carry the task id.
    for task_id, outcome in ((training.celery_task_id, "succeeded"), (inference.celery_task_id, "succeeded")):
        assert TaskResult.objects.get(task_id=task_id).status == "SUCCESS"
        assert TaskResult.objects.get(task_id=task_id).result == f'"{outcome}"'
    assert TaskResult.objects.get(task_id=check.celery_task_id).status == "SUCCESS"
    assert TaskResult.objects.get(task_name="monitoring.tasks.build_reference_profiles").status == "SUCCESS"
    by_task = Counter(AuditEvent.objects.exclude(task_id="").values_list("task_id", "action"))
    assert by_task == {
        (training.celery_task_id, "job.start"): 1,
        (training.celery_task_id, "model_version.register"): 1,
        (training.celery_task_id, "job.succeed"): 1,
        (inference.celery_task_id, "job.start"): 1,
        (inference.celery_task_id, "dataset.create"): 1,
        (inference.celery_task_id, "dataset_version.register"): 1,
        (inference.celery_task_id, "job.succeed"): 1,
        (check.celery_task_id, "drift_check.complete"): 1,
        (check.celery_task_id, "alert.open"): 1,
        (check.celery_task_id, "alert.escalate"): 1,  # level 1 went out once the check committed
    }
    assert set(AuditEvent.objects.exclude(task_id="").values_list("actor_label", "on_behalf_of_label")) == {
        ("system", "dana"),
        ("system", ""),  # the escalation step: the policy's, on nobody's behalf
    }

    # Every step has its audit event.
    assert Counter(AuditEvent.objects.values_list("action", flat=True)) == {
        "platform_role.grant": 2,  # admin, carl (compliance officer)
        "team.create": 1,
        "user.create": 5,
        "membership.grant": 4,  # olivia, dana, aaron, vera
        "dataset.create": 2,  # the bike data, the predictions
        "dataset_version.register": 2,
        "registered_model.create": 1,
        "job.submit": 2,
        "job.start": 2,
        "model_version.register": 1,
        "job.succeed": 2,
        "escalation_policy.create": 1,
        "monitor.create": 1,
        "drift_check.request": 1,
        "drift_check.complete": 1,
        "alert.open": 1,
        "alert.escalate": 1,
    }
    assert DatasetVersion.objects.count() == 2
