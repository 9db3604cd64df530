"""PII scans of dataset versions, team PII policies, the job refusal and the
``pii_policy_satisfied`` promotion gate (issue 12 with issue 15), through the API, the page, the
worker's plain function and a real Celery worker."""

from __future__ import annotations

import datetime
import time

import pytest
from celery.contrib.testing.worker import start_worker
from django.test import Client
from django.utils import timezone

import config.celery
from governance.actions.datasets import do_create_dataset, do_register_dataset_version
from governance.actions.gates import do_set_gate_policy
from governance.actions.model_versions import do_register_model_version
from governance.actions.pii import do_set_pii_policy, run_pii_scan
from governance.models import AuditEvent, DatasetVersion, PiiScan
from governance.tasks import scan_dataset_version_pii
from runners.models import Job
from tests.conftest import ADULT

QUEUE = "steward-tests-pii"


def _scanned(version: DatasetVersion) -> PiiScan:
    scan = PiiScan.objects.get(dataset_version=version)
    assert run_pii_scan(scan.pk) == "done"
    scan.refresh_from_db()
    return scan


def test_registration_queues_a_scan_sent_only_after_commit(
    team, scientist, django_capture_on_commit_callbacks, settings
):
    settings.STEWARD_PII_SCAN_QUEUE = QUEUE
    dataset = do_create_dataset(team=team, name="adult", actor=scientist)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        version = do_register_dataset_version(
            dataset=dataset, file_path=ADULT, filename="adult.csv", source="path", actor=scientist
        )
    scan = PiiScan.objects.get(dataset_version=version)

    assert (scan.status, scan.requested_by, scan.report, scan.finished_at) == ("queued", scientist, {}, None)
    assert len(callbacks) == 1  # the send waits for the registration's commit
    assert not AuditEvent.objects.filter(action="pii.scan").exists()


def test_the_worker_function_scans_once_and_audits_as_the_system(adult_version):
    scan = PiiScan.objects.get(dataset_version=adult_version)

    assert run_pii_scan(scan.pk) == "done"
    assert run_pii_scan(scan.pk) is None  # a redelivered task finds nothing to claim
    scan.refresh_from_db()
    assert (scan.status, scan.rows_scanned, scan.reason) == ("done", 32561, "")
    assert scan.report["special_categories"] == {"race": "race_ethnicity", "sex": "sex_gender"}
    assert scan.report["k_anonymity"]["k"] == 1
    events = AuditEvent.objects.filter(action="pii.scan")
    assert [(event.actor, event.object_id, event.team_id) for event in events] == [
        (None, str(scan.pk), adult_version.dataset.team_id)
    ]
    assert events[0].after["status"] == "done"
    assert events[0].after["findings"] == [
        "age: age",
        "marital-status: marital_status",
        "native-country: native_country",
        "occupation: occupation",
        "race: race_ethnicity",
        "sex: sex_gender",
    ]


def test_a_scan_past_its_time_limit_fails_with_the_reason(adult_version, settings, client_for, scientist):
    settings.STEWARD_PII_SCAN_TIME_LIMIT_S = 1e-9
    scan = PiiScan.objects.get(dataset_version=adult_version)

    assert run_pii_scan(scan.pk) == "failed"
    body = client_for(scientist).get(f"/api/dataset-versions/{adult_version.pk}/pii/").json()
    assert (body["status"], body["reason"], body["report"]) == (
        "failed",
        "time limit of 1e-09 s reached after 0 of 15 columns",
        {},
    )
    assert AuditEvent.objects.get(action="pii.scan").after["reason"] == body["reason"]


def test_the_report_is_in_the_api_and_on_the_page(adult_version, client_for, scientist, outsider):
    _scanned(adult_version)
    client = client_for(scientist)

    body = client.get(f"/api/dataset-versions/{adult_version.pk}/pii/").json()
    assert body["status"] == "done"
    assert {(f["column"], f["kind"], f["category"]) for f in body["report"]["findings"]} == {
        ("age", "age", "quasi_identifier"),
        ("marital-status", "marital_status", "quasi_identifier"),
        ("occupation", "occupation", "quasi_identifier"),
        ("race", "race_ethnicity", "special_category"),
        ("sex", "sex_gender", "special_category"),
        ("native-country", "native_country", "quasi_identifier"),
    }
    browser = Client()
    browser.force_login(scientist)
    response = browser.get(f"/dataset-versions/{adult_version.pk}/")
    assert response.status_code == 200
    page = response.content.decode()
    assert "race_ethnicity" in page
    assert "k = 1" in page
    # Another team's user learns nothing, not even that it exists.
    assert client_for(outsider).get(f"/api/dataset-versions/{adult_version.pk}/pii/").status_code == 404


def test_a_rescan_is_requested_through_the_api_by_the_team_only(
    adult_version, client_for, scientist, viewer, settings
):
    scan = PiiScan.objects.get(dataset_version=adult_version)
    url = f"/api/dataset-versions/{adult_version.pk}/pii/"

    assert client_for(viewer).post(url).status_code == 403
    # Queued (its send may have been lost to a broker outage): sent again.
    resent = client_for(scientist).post(url)
    assert (resent.status_code, resent.json()["status"]) == (202, "queued")
    # Running: refused while younger than the time limit plus a minute.
    PiiScan.objects.filter(pk=scan.pk).update(status="running", started_at=timezone.now())
    running = client_for(scientist).post(url)
    assert running.status_code == 400
    assert running.json()["status"] == [f"the PII scan of {adult_version} is running (for 0 s)"]
    # A worker that died mid-scan: its scan is queued again.
    stale = timezone.now() - datetime.timedelta(seconds=settings.STEWARD_PII_SCAN_TIME_LIMIT_S + 61)
    PiiScan.objects.filter(pk=scan.pk).update(started_at=stale)
    requeued = client_for(scientist).post(url)
    assert (requeued.status_code, requeued.json()["status"]) == (202, "queued")
    assert run_pii_scan(scan.pk) == "done"
    assert AuditEvent.objects.filter(action="pii_scan.request").count() == 2


def test_owners_set_the_policy_through_the_api(team, client_for, owner, scientist):
    url = f"/api/teams/{team.pk}/pii-policy/"
    assert client_for(owner).get(url).json() == {"rules": {}}

    refused = client_for(scientist).put(url, {"rules": {"us_ssn": "block"}}, format="json")
    unknown = client_for(owner).put(url, {"rules": {"shoe_size": "block"}}, format="json")
    masked = client_for(owner).put(url, {"rules": {"email": "mask"}}, format="json")
    rules = {"default": "allow", "race_ethnicity": "block"}
    done = client_for(owner).put(url, {"rules": rules}, format="json")

    assert refused.status_code == 403
    assert unknown.status_code == 400
    assert unknown.json()["rules"][0].startswith("unknown kind 'shoe_size'; one of default, email, phone")
    # Masking is built (a protected copy jobs read: tests/governance/test_pii_transform.py).
    assert (masked.status_code, masked.json()) == (200, {"rules": {"email": "mask"}})
    assert (done.status_code, done.json()) == (200, {"rules": rules})
    first, second = AuditEvent.objects.filter(action="pii_policy.set").order_by("pk")
    assert (first.actor, first.before, first.after["rules"]) == (owner, None, {"email": "mask"})
    assert (second.before["rules"], second.after["rules"]) == ({"email": "mask"}, done.json()["rules"])


def _train(client, version, registered_model):
    body = {
        "kind": "train",
        "dataset_version": version.pk,
        "registered_model": registered_model.pk,
        "spec": {"target": "label", "features": ["age", "hours-per-week"], "epochs": 1},
    }
    return client.post("/api/jobs/", body, format="json")


def test_a_training_job_on_blocked_findings_is_refused_naming_columns_and_kinds(
    adult_version, registered_model, team, owner, scientist, client_for
):
    client = client_for(scientist)
    # No policy: allowed, as before scans existed (the scan is still queued).
    assert _train(client, adult_version, registered_model).status_code == 201
    do_set_pii_policy(team=team, rules={"race_ethnicity": "block", "sex_gender": "block"}, actor=owner)

    pending = _train(client, adult_version, registered_model)
    assert (pending.status_code, pending.json()) == (
        400,
        {
            "dataset_version": [
                f"the PII scan of {adult_version} is queued, not done; wait for it: team "
                f"{team.name}'s PII policy blocks some kinds"
            ]
        },
    )
    _scanned(adult_version)
    blocked = _train(client, adult_version, registered_model)
    assert (blocked.status_code, blocked.json()) == (
        400,
        {
            "dataset_version": [
                f"{adult_version} holds personal data team {team.name}'s PII policy blocks: "
                "column 'race' (race_ethnicity); column 'sex' (sex_gender)"
            ]
        },
    )
    assert Job.objects.count() == 1
    # The version's page says so before anyone submits (the UI's job form calls the same action).
    browser = Client()
    browser.force_login(scientist)
    page = browser.get(f"/dataset-versions/{adult_version.pk}/").content.decode()
    assert "Training and inference refused: adult v1 holds personal data team" in page
    assert "column &#x27;race&#x27; (race_ethnicity); column &#x27;sex&#x27; (sex_gender)" in page
    do_set_pii_policy(team=team, rules={"us_ssn": "block"}, actor=owner)
    assert _train(client, adult_version, registered_model).status_code == 201


@pytest.fixture
def adult_model_version(adult_version, registered_model, scientist, bike_training_result):
    """A version whose recorded training data is the adult census file (the artifact is the
    session's bike model: the gate reads the lineage, not the weights)."""
    return do_register_model_version(
        model=registered_model,
        artifact_bytes=bike_training_result.artifact,
        metrics={},
        signature=bike_training_result.signature,
        training_spec={},
        training_dataset_version=adult_version,
        source_job_id=None,
        actor=None,
        on_behalf_of=scientist,
    )


def test_the_pii_gate_through_a_promotion_request(
    adult_model_version, adult_version, team, owner, scientist, approver, client_for
):
    gates = [{"kind": "pii_policy_satisfied"}]
    do_set_gate_policy(team=team, alias="production", conditions=gates, actor=owner)
    do_set_pii_policy(team=team, rules={"race_ethnicity": "block"}, actor=owner)

    def request_promotion():
        response = client_for(scientist).post(
            "/api/promotion-requests/", {"model_version": adult_model_version.pk}, format="json"
        )
        assert response.status_code == 201
        return response.json()

    pending = request_promotion()
    assert pending["gate_results"] == [
        {
            "kind": "pii_policy_satisfied",
            "passed": False,
            "detail": f"the PII scan of {adult_version} is queued, not done; wait for it",
            "condition": {"kind": "pii_policy_satisfied"},
        }
    ]
    client_for(scientist).post(f"/api/promotion-requests/{pending['id']}/cancel/", {}, format="json")

    _scanned(adult_version)
    blocked = request_promotion()
    detail = (
        f"{adult_version} holds personal data its team's PII policy blocks: column 'race' (race_ethnicity)"
    )
    assert blocked["gate_results"] == [
        {"kind": "pii_policy_satisfied", "passed": False, "detail": detail, "condition": gates[0]}
    ]
    approval = client_for(approver).post(f"/api/promotion-requests/{blocked['id']}/approve/", format="json")
    assert (approval.status_code, approval.json()) == (
        400,
        {
            "gates": [
                f"gate pii_policy_satisfied fails: {detail}. Approval is refused while a gate fails; an "
                "approver may override with a written reason (override_reason), which a second approver "
                "must then approve"
            ]
        },
    )
    client_for(scientist).post(f"/api/promotion-requests/{blocked['id']}/cancel/", {}, format="json")

    do_set_pii_policy(team=team, rules={"us_ssn": "block"}, actor=owner)
    passing = request_promotion()
    assert passing["gate_results"] == [
        {
            "kind": "pii_policy_satisfied",
            "passed": True,
            "detail": f"the PII scan of {adult_version} found age, marital_status, native_country, "
            "occupation, race_ethnicity, sex_gender, all allowed by its team's policy",
            "condition": {"kind": "pii_policy_satisfied"},
        }
    ]
    approved = client_for(approver).post(f"/api/promotion-requests/{passing['id']}/approve/", format="json")
    assert approved.status_code == 200


@pytest.fixture
def pii_worker(settings):
    """A real Celery worker (thread, solo pool) on the configured broker, on the scans' own queue."""
    settings.STEWARD_PII_SCAN_QUEUE = QUEUE
    app = config.celery.app
    with app.connection_for_write() as conn:
        conn.default_channel.queue_declare(QUEUE)
        conn.default_channel.queue_purge(QUEUE)
    with start_worker(app, pool="solo", perform_ping_check=False, queues=[QUEUE], shutdown_timeout=30):
        yield app


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_an_upload_is_scanned_by_a_real_worker(pii_worker, team, scientist, client_for):
    assert scan_dataset_version_pii.name == "governance.tasks.scan_dataset_version_pii"
    dataset = do_create_dataset(team=team, name="adult", actor=scientist)
    with ADULT.open("rb") as handle:
        response = client_for(scientist).post(
            "/api/dataset-versions/", {"dataset": dataset.pk, "file": handle}, format="multipart"
        )
    assert response.status_code == 201
    version_id = response.json()["id"]
    deadline = time.monotonic() + 60
    while PiiScan.objects.get(dataset_version_id=version_id).status != "done" and time.monotonic() < deadline:
        time.sleep(0.2)

    body = client_for(scientist).get(f"/api/dataset-versions/{version_id}/pii/").json()
    assert (body["status"], body["rows_scanned"]) == ("done", 32561)
    assert body["report"]["special_categories"] == {"race": "race_ethnicity", "sex": "sex_gender"}
    assert AuditEvent.objects.filter(action="pii.scan", actor=None).count() == 1


def test_an_inference_job_waits_for_the_scan_when_the_policy_blocks_by_default(
    dataset_version, registered_version, team, owner, scientist, client_for
):
    do_set_pii_policy(team=team, rules={"default": "block"}, actor=owner)
    body = {"kind": "infer", "dataset_version": dataset_version.pk, "model_version": registered_version.pk}
    client = client_for(scientist)

    pending = client.post("/api/jobs/", {**body, "spec": {}}, format="json")
    assert (pending.status_code, pending.json()) == (
        400,
        {
            "dataset_version": [
                f"the PII scan of {dataset_version} is queued, not done; wait for it: team "
                f"{team.name}'s PII policy blocks some kinds"
            ]
        },
    )
    scan = _scanned(dataset_version)
    # The bike rentals hold no personal data: with the scan done, even "block everything" allows them.
    assert scan.report["findings"] == []
    accepted = client.post("/api/jobs/", {**body, "spec": {}}, format="json")
    assert (accepted.status_code, Job.objects.get().kind) == (201, "infer")
