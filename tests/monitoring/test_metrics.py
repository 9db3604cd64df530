"""``/metrics`` for Prometheus, read from the database on each scrape, and ``manage.py grafana_sync``.

No Grafana server can be installed here, so ``grafana_sync`` runs against a local ``http.server``
that plays Grafana's HTTP API and records what it was asked; the test checks those requests.
"""

from __future__ import annotations

import datetime
import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone
from prometheus_client.utils import floatToGoString

import config.celery
from governance.models import AuditEvent, DatasetVersion, ModelVersion
from monitoring import grafana
from monitoring.models import Alert
from runners.actions import do_submit_job
from runners.budgets import do_create_budget
from runners.models import Job
from tests.conftest import free_port
from tests.monitoring.conftest import BREACH, T0, finish_check

TOKEN = "scrape-me-0123456789"


@pytest.fixture
def scrape_token(settings):
    settings.STEWARD_METRICS_TOKEN = TOKEN
    return TOKEN


# What the broker answers at the scrape, and the process's HTTP counts (issue 13): tested on
# their own, below.
BROKER_FAMILIES = ("steward_broker_up", "steward_queue_messages", "steward_workers", "steward_http_")


def _steward_lines(response) -> list[str]:
    """Steward's samples, without the broker's (their values depend on the broker's state)."""
    return [
        line
        for line in response.content.decode().splitlines()
        if line.startswith("steward_") and not line.startswith(BROKER_FAMILIES)
    ]


def _samples(response) -> dict[str, float]:
    """Every ``steward_`` sample of a scrape: {name with labels: value}."""
    found = {}
    for line in response.content.decode().splitlines():
        if line.startswith("steward_"):
            name, _, value = line.rpartition(" ")
            found[name] = float(value)
    return found


def test_metrics_report_drift_checks_alerts_notifications_and_job_durations(
    client, scrape_token, monitor, scientist, owner, dataset_version, registered_model, training_spec
):
    finish_check(monitor, BREACH, T0, scientist)
    actions_failed = monitor  # a second, failed check of the same monitor
    from monitoring.actions.checks import do_finish_drift_check, do_run_monitor

    do_finish_drift_check(do_run_monitor(monitor=actions_failed, actor=scientist).pk, error="disk full")
    for seconds, state in ((30, "succeeded"), (7200, "succeeded"), (3, "failed")):
        job = do_submit_job(
            kind="train",
            dataset_version=dataset_version,
            registered_model=registered_model,
            spec=training_spec,
            actor=scientist,
        )
        # Test set-up: jobs that ran for a known time (the runner is not under test here).
        Job.objects.filter(pk=job.pk).update(
            state=state,
            started_at=T0,
            finished_at=T0 + datetime.timedelta(seconds=seconds),
            cpu_time_s=seconds / 2,
            cost=seconds / 4,
        )
    do_create_budget(team=registered_model.team, monthly_limit="2000", actor=owner)

    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    model = 'model="bike-demand",model_version="1"'
    buckets = ["1.0", "5.0", "15.0", "60.0", "300.0", "900.0", "3600.0", "14400.0", "86400.0", "+Inf"]
    succeeded = [0, 0, 0, 1, 1, 1, 1, 2, 2, 2]
    failed = [0, 1, 1, 1, 1, 1, 1, 1, 1, 1]
    team_bytes = sum(v.size_bytes for v in DatasetVersion.objects.all()) + sum(
        v.size_bytes for v in ModelVersion.objects.all()
    )
    assert _steward_lines(response) == [
        f'steward_drift_score{{column="temp",method="wasserstein",{model}}} 0.0806',
        f'steward_drift_score{{column="hum",method="wasserstein",{model}}} 0.1713',
        f'steward_drift_threshold{{column="temp",method="wasserstein",{model}}} 0.1',
        f'steward_drift_threshold{{column="hum",method="wasserstein",{model}}} 0.1',
        f'steward_drift_column_drifted{{column="temp",method="wasserstein",{model}}} 0.0',
        f'steward_drift_column_drifted{{column="hum",method="wasserstein",{model}}} 1.0',
        f"steward_drift_dataset_drifted{{{model}}} 1.0",
        'steward_drift_checks_finished_total{outcome="succeeded"} 1.0',
        'steward_drift_checks_finished_total{outcome="failed"} 1.0',
        'steward_drift_checks_in_flight{state="queued"} 0.0',
        'steward_drift_checks_in_flight{state="running"} 0.0',
        'steward_open_alerts{severity="warning",state="open"} 1.0',
        'steward_open_alerts{severity="warning",state="acknowledged"} 0.0',
        'steward_open_alerts{severity="critical",state="open"} 0.0',
        'steward_open_alerts{severity="critical",state="acknowledged"} 0.0',
        *[
            f'steward_job_duration_seconds_bucket{{kind="train",le="{le}",state="failed"}} {float(n)}'
            for le, n in zip(buckets, failed, strict=True)
        ],
        'steward_job_duration_seconds_count{kind="train",state="failed"} 1.0',
        'steward_job_duration_seconds_sum{kind="train",state="failed"} 3.0',
        *[
            f'steward_job_duration_seconds_bucket{{kind="train",le="{le}",state="succeeded"}} {float(n)}'
            for le, n in zip(buckets, succeeded, strict=True)
        ],
        'steward_job_duration_seconds_count{kind="train",state="succeeded"} 2.0',
        'steward_job_duration_seconds_sum{kind="train",state="succeeded"} 7230.0',
        # Accounting (issue 16): totals by team and class; the budget and this month's spend.
        'steward_job_cost_total{resource_class="cpu",team="mobility"} 1808.25',
        'steward_job_cpu_seconds_total{resource_class="cpu",team="mobility"} 3616.5',
        'steward_job_gpu_seconds_total{resource_class="cpu",team="mobility"} 0.0',
        'steward_team_budget_limit{team="mobility"} 2000.0',
        'steward_team_budget_spent{team="mobility"} 1808.25',
        "steward_job_queued_oldest_age_seconds 0.0",
        "steward_job_waiting_for_window 0.0",
        "steward_job_dispatches_total 0.0",
        # OpenLineage events of Steward's runs not delivered (issue 10).
        'steward_openlineage_emit_failures_total{event_type="START"} 0.0',
        'steward_openlineage_emit_failures_total{event_type="COMPLETE"} 0.0',
        'steward_openlineage_emit_failures_total{event_type="FAIL"} 0.0',
        'steward_openlineage_emit_failures_total{event_type="ABORT"} 0.0',
        # The audit sequencer has not run: every event waits, and there is no checkpoint yet.
        f"steward_audit_unsequenced_events {float(AuditEvent.objects.count())}",
        # The artifact store (issue 12): direct mode (the default) keeps no records.
        "steward_artifact_integrity_failures_total 0.0",
        'steward_artifact_objects{state="encrypted"} 0.0',
        'steward_artifact_objects{state="plain"} 0.0',
        'steward_artifact_objects{state="shredded"} 0.0',
        'steward_artifact_bytes{state="encrypted"} 0.0',
        'steward_artifact_bytes{state="plain"} 0.0',
        # Per team and tier (retention): the hourly and 2012 files and the model, as registered.
        'steward_artifact_team_objects{team="Mobility",tier="hot"} 3.0',
        f'steward_artifact_team_bytes{{team="Mobility",tier="hot"}} {floatToGoString(team_bytes)}',
    ]
    # The monitor's severity (monitor, check and alert agree, issue 14).
    assert (monitor.severity, Alert.objects.get().severity) == ("warning", "warning")


def test_metrics_show_how_long_the_oldest_job_has_waited_and_the_dispatches(
    client, scrape_token, scientist, dataset_version, registered_model, training_spec, monkeypatch
):
    """Queued too long is visible (issue 16): a job the broker lost, or that no worker takes."""
    now = T0 + datetime.timedelta(hours=1)
    ages_and_sends = ((1800, 3, "queued"), (600, 1, "queued"), (7200, 2, "succeeded"))
    for age, sends, state in ages_and_sends:
        job = do_submit_job(
            kind="train",
            dataset_version=dataset_version,
            registered_model=registered_model,
            spec=training_spec,
            actor=scientist,
        )
        # Test set-up: when each job was submitted and how often its task was sent.
        Job.objects.filter(pk=job.pk).update(
            state=state, created_at=now - datetime.timedelta(seconds=age), dispatch_count=sends
        )
    # Jobs that asked for a start window (issue 16), submitted 5 hours ago: one whose window opens
    # in an hour (not waiting for a worker yet), one whose window opened 900 s ago (waiting since).
    for opens_in in (3600, -900):
        job = do_submit_job(
            kind="train",
            dataset_version=dataset_version,
            registered_model=registered_model,
            spec=training_spec,
            actor=scientist,
        )
        Job.objects.filter(pk=job.pk).update(
            created_at=now - datetime.timedelta(hours=5),
            not_before=now + datetime.timedelta(seconds=opens_in),
        )
    monkeypatch.setattr(timezone, "now", lambda: now)  # the scrape's clock

    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")

    job_lines = [
        line
        for line in _steward_lines(response)
        if line.startswith("steward_job_") and "duration" not in line
    ]
    assert job_lines[-3:] == [
        "steward_job_queued_oldest_age_seconds 1800.0",
        "steward_job_waiting_for_window 1.0",
        "steward_job_dispatches_total 6.0",
    ]


def test_metrics_need_the_token_or_a_platform_wide_role(
    client, scrape_token, owner, admin, compliance_officer, fresh
):
    answers = {"anonymous": client.get("/metrics").status_code}
    answers["wrong token"] = client.get("/metrics", HTTP_AUTHORIZATION="Bearer nope").status_code
    for name, user in (("team member", owner), ("admin", admin), ("compliance officer", compliance_officer)):
        client.force_login(fresh(user))
        answers[name] = client.get("/metrics").status_code
        client.logout()

    # Team members would learn other teams' model and column names from these numbers.
    assert answers == {
        "anonymous": 401,
        "wrong token": 401,
        "team member": 401,
        "admin": 200,
        "compliance officer": 200,
    }
    assert client.get("/metrics")["WWW-Authenticate"] == 'Bearer realm="steward-metrics"'


def test_without_a_configured_token_no_bearer_is_accepted(client, settings, db):
    settings.STEWARD_METRICS_TOKEN = ""

    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 401


def test_metrics_cost_the_same_queries_for_any_number_of_rows(
    client, scrape_token, monitor, scientist, django_assert_num_queries
):
    for minute in range(3):
        finish_check(monitor, BREACH, T0 + datetime.timedelta(minutes=minute), scientist)

    # 1 newest check per model version, 2 checks by state, 3 open alerts, 4 notifications,
    # 5 job durations, 6 usage by team and class, 7 budgets with this month's spend,
    # 8 oldest queued job and dispatches, 9 undelivered OpenLineage events by type, 10 predictions
    # by version, 11 the newest sequenced audit event, 12 events above it, 13 the newest checkpoint,
    # 14 the artifact store's totals, 15-17 the keys of live dataset and model versions and of
    # tracked runs' files by team, 18 the store's records (tier and sizes by key), 19 the teams'
    # names for their labels
    with django_assert_num_queries(19):
        response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")

    assert response.status_code == 200


def test_http_requests_are_counted_and_timed_by_url_pattern(client, scrape_token, scientist):
    def scrape() -> dict[str, float]:
        return _samples(client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}"))

    models = 'method="GET",route="models/",status="200"'
    unmatched = 'method="GET",route="<unmatched>",status="404"'
    before = scrape()
    client.force_login(scientist)
    for _ in range(3):
        assert client.get("/models/").status_code == 200
    assert client.get("/no/such/page/").status_code == 404
    brewed = client.generic("BREW", "/models/").status_code
    after = scrape()

    def delta(name: str) -> float:
        return after.get(name, 0.0) - before.get(name, 0.0)

    assert delta(f"steward_http_requests_total{{{models}}}") == 3.0
    assert delta(f"steward_http_requests_total{{{unmatched}}}") == 1.0
    # Methods outside HTTP's usual set count as "other": a client cannot add label values.
    assert delta(f'steward_http_requests_total{{method="other",route="models/",status="{brewed}"}}') == 1.0
    assert delta('steward_http_request_duration_seconds_count{method="GET",route="models/"}') == 3.0
    assert (
        delta('steward_http_request_duration_seconds_bucket{le="+Inf",method="GET",route="models/"}') == 3.0
    )


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_metrics_count_waiting_messages_live_workers_and_a_broker_that_is_down(
    client, scrape_token, settings, tmp_path, monkeypatch
):
    """Issue 13: the real broker's queues and a real worker, then a broker nobody listens on."""
    app = config.celery.app
    waiting, idle = f"metrics-waiting-{uuid.uuid4().hex[:8]}", f"metrics-idle-{uuid.uuid4().hex[:8]}"
    settings.STEWARD_RESOURCE_CLASSES = {
        "cpu": {"queue": waiting, "gpus": 0, "price_per_hour": 0.1},
        "idle": {"queue": idle, "gpus": 0, "price_per_hour": 0.1},
    }
    for n in range(3):  # nobody consumes this queue: they wait
        app.send_task("runners.tasks.run_job", args=[10**9 + n], queue=waiting)

    def scrape() -> dict[str, float]:
        response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
        assert response.status_code == 200
        return _samples(response)

    env = os.environ | {"CELERY_BROKER_URL": app.conf.broker_url}
    worker = subprocess.Popen(  # noqa: S603 - our interpreter running Celery, on the idle queue only
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "config.celery",
            "worker",
            "--pool",
            "solo",
            "-Q",
            idle,
            "-n",
            f"metrics-{uuid.uuid4().hex[:6]}@%h",
            "--without-gossip",
            "--without-mingle",
        ],
        env=env,
        stdout=(tmp_path / "worker.log").open("wb"),
        stderr=subprocess.STDOUT,
        cwd=settings.BASE_DIR,
    )
    try:
        before = scrape()
        deadline = time.monotonic() + 60
        with_worker = scrape()
        while with_worker["steward_workers"] < 1 and time.monotonic() < deadline:
            time.sleep(0.5)
            with_worker = scrape()
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)
        with app.connection_for_write() as connection:
            connection.default_channel.queue_purge(waiting)

    assert before["steward_broker_up"] == 1.0
    assert before[f'steward_queue_messages{{queue="{waiting}"}}'] == 3.0
    assert before[f'steward_queue_messages{{queue="{idle}"}}'] == 0.0
    assert with_worker["steward_workers"] == 1.0
    assert with_worker[f'steward_queue_messages{{queue="{waiting}"}}'] == 3.0  # not its queue

    nowhere = f"redis://127.0.0.1:{free_port()}/0"
    monkeypatch.setenv("CELERY_BROKER_URL", nowhere)
    monkeypatch.setattr(app.conf, "broker_url", nowhere)
    down = scrape()
    assert down["steward_broker_up"] == 0.0
    assert not [name for name in down if name.startswith(("steward_queue_messages", "steward_workers"))]


# grafana_sync against a stand-in for Grafana's HTTP API ---------------------------------------


class FakeGrafana(http.server.BaseHTTPRequestHandler):
    """Plays the few Grafana endpoints grafana_sync uses; ``existing`` holds datasource uids."""

    requests: list[tuple[str, str, str, dict | None]]
    existing: set[str]

    def _answer(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _record(self) -> dict | None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        self.requests.append((self.command, self.path, self.headers.get("Authorization", ""), body))
        return body

    def do_GET(self):
        self._record()
        uid = self.path.rsplit("/", 1)[-1]
        if self.path.startswith("/api/datasources/uid/") and uid in self.existing:
            self._answer(200, {"uid": uid, "id": 7})
        else:
            self._answer(404, {"message": "Data source not found"})

    def do_POST(self):
        body = self._record()
        if self.path == "/api/datasources":
            self.existing.add(body["uid"])
            self._answer(200, {"id": 7, "message": "Datasource added"})
        elif self.path == "/api/dashboards/db":
            self._answer(200, {"status": "success", "url": "/d/steward-monitoring/steward", "version": 3})
        else:
            self._answer(404, {"message": "Not found"})

    def do_PUT(self):
        self._record()
        self._answer(200, {"message": "Datasource updated"})

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_grafana():
    handler = type("Handler", (FakeGrafana,), {"requests": [], "existing": set()})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", handler
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_grafana_sync_creates_then_updates_the_datasource_and_the_dashboard(fake_grafana, capsys):
    url, grafana_api = fake_grafana
    options = {"grafana_url": url, "token": "glsa_test", "prometheus_url": "http://prometheus:9090"}

    call_command("grafana_sync", **options)
    call_command("grafana_sync", **options)

    spec = {
        "uid": "steward-prometheus",
        "name": "Steward Prometheus",
        "type": "prometheus",
        "access": "proxy",
        "url": "http://prometheus:9090",
        "isDefault": False,
        "jsonData": {"httpMethod": "POST", "timeInterval": "30s"},
    }
    dashboard = {
        "dashboard": grafana.dashboard_spec(),
        "overwrite": True,
        "message": "manage.py grafana_sync",
    }
    bearer = "Bearer glsa_test"
    assert grafana_api.requests == [
        ("GET", "/api/datasources/uid/steward-prometheus", bearer, None),
        ("POST", "/api/datasources", bearer, spec),
        ("POST", "/api/dashboards/db", bearer, dashboard),
        ("GET", "/api/datasources/uid/steward-prometheus", bearer, None),
        ("PUT", "/api/datasources/uid/steward-prometheus", bearer, spec),
        ("POST", "/api/dashboards/db", bearer, dashboard),
    ]
    panels = dashboard["dashboard"]["panels"]
    assert {p["targets"][0]["expr"].split("(")[0] for p in panels} >= {'steward_drift_score{model=~"$model"}'}
    assert all(p["datasource"]["uid"] == "steward-prometheus" for p in panels)
    assert capsys.readouterr().out.splitlines() == [
        f"datasource steward-prometheus created (Prometheus at http://prometheus:9090); "
        f"dashboard steward-monitoring at {url}/d/steward-monitoring/steward (version 3)",
        f"datasource steward-prometheus updated (Prometheus at http://prometheus:9090); "
        f"dashboard steward-monitoring at {url}/d/steward-monitoring/steward (version 3)",
    ]


def test_grafana_sync_reports_a_refusal(fake_grafana):
    url, grafana_api = fake_grafana
    grafana_api.do_GET = lambda self: (self._record(), self._answer(401, {"message": "invalid API key"}))

    with pytest.raises(CommandError) as raised:
        call_command("grafana_sync", grafana_url=url, token="wrong", prometheus_url="http://p:9090")

    assert str(raised.value) == f"Grafana at {url} refused: HTTP 401: Unauthorized"
