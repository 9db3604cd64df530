"""A model version's evidence (issue 12): the audit trail's "everything about this model version"
filter, the model card fields, and the signed evidence pack, verified offline by the verifier the
site serves and failing, with the edited item named, after any tampering."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import Client

from governance.actions.aliases import do_set_alias
from governance.actions.model_versions import do_register_model_version
from governance.actions.pii import run_pii_scan
from governance.actions.promotions import do_approve_promotion, do_request_promotion
from governance.audit.leaf import iso_timestamp
from governance.audit.sequencer import sequence_audit_events
from governance.models import AuditEvent, PiiScan
from monitoring.actions.checks import do_finish_drift_check, do_request_drift_check
from tests.governance.audit_helpers import body

PURPOSE = "Hourly bike demand per station, for planning van rebalancing; not for pricing."
LIMITS = "Trained on 2011 only; drifts in 2012 (humidity, counts)."


@pytest.fixture
def evidenced(
    model_version, owner, scientist, approver, current_dataset_version, bike_drift_result, client_for
):
    """The trained version (a training job) with its model card written by the owner, an
    approved promotion to production, a drift check that opened an alert, all sequenced."""
    answer = client_for(owner).patch(
        f"/api/model-versions/{model_version.pk}/",
        {"intended_purpose": PURPOSE, "known_limitations": LIMITS},
        format="json",
    )
    assert answer.status_code == 200, answer.content
    request = do_request_promotion(model_version=model_version, alias="production", actor=scientist)
    do_approve_promotion(promotion_request=request, decision_reason="metrics reviewed", actor=approver)
    check = do_request_drift_check(
        model_version=model_version, current_dataset_version=current_dataset_version, actor=scientist
    )
    do_finish_drift_check(check.pk, result=bike_drift_result)
    sequence_audit_events()
    return model_version


def _run_verifier(tmp_path: Path, client, pack: dict) -> subprocess.CompletedProcess[str]:
    verifier = tmp_path / "merkle.py"
    verifier.write_bytes(body(client.get("/api/audit/verifier.py")))
    key = tmp_path / "steward.pem"
    key.write_bytes(body(client.get("/api/audit/public-key/")))
    path = tmp_path / "evidence.json"
    path.write_text(json.dumps(pack))
    return subprocess.run(  # noqa: S603 - our own interpreter running the downloaded verifier
        [sys.executable, "-I", str(verifier), "verify", "--public-key", str(key), str(path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )


# In commit order: the training data, the job that trained the version, the version, the owner's
# model card, the four-eyes promotion and its alias move, the drift check and the alert it opened.
EXPECTED = [
    ("dataset_version.register", "datasetversion"),
    ("job.submit", "job"),
    ("job.start", "job"),
    ("model_version.register", "modelversion"),
    ("job.succeed", "job"),
    ("model_version.update", "modelversion"),
    ("promotion_request.create", "promotionrequest"),
    ("promotion_request.approve", "promotionrequest"),
    ("model_alias.move", "modelalias"),
    ("drift_check.request", "driftcheck"),
    ("drift_check.complete", "driftcheck"),
    ("alert.open", "alert"),
]


def test_the_trail_lists_everything_about_the_version_by_relation(
    evidenced, compliance_officer, owner, client_for, registered_model, scientist, bike_training_result
):
    # Another version of the same model, and its events, are not about this one.
    client_for(scientist).patch(
        f"/api/model-versions/{evidenced.pk}/", {"description": "first"}, format="json"
    )
    sibling = do_register_model_version(
        model=registered_model,
        artifact_bytes=bike_training_result.artifact,
        metrics={},
        signature={},
        training_spec={},
        training_dataset_version=None,
        source_job_id=None,
        actor=scientist,
    )
    do_set_alias(model=registered_model, alias="staging", version=sibling, actor=scientist)

    for user in (compliance_officer, owner):
        listed = client_for(user).get("/api/audit-events/", {"model_version": evidenced.pk}).json()

        found = [(event["action"], event["object_type"]) for event in reversed(listed["results"])]
        assert found == [*EXPECTED, ("model_version.update", "modelversion")]
    browser = Client()
    browser.force_login(owner)
    page = browser.get("/audit/", {"model_version": evidenced.pk})
    assert page.status_code == 200
    assert (
        f'Everything about <a href="{evidenced.get_absolute_url()}">bike-demand v1</a>'
        in page.content.decode()
    )


def test_the_pack_verifies_offline_and_names_every_tampering(
    evidenced, compliance_officer, client_for, tmp_path
):
    client = client_for(compliance_officer)
    # The training data's PII scan (issue 12), run as the worker runs it.
    assert run_pii_scan(evidenced.training_dataset_version.pii_scan.pk) == "done"

    response = client.get(f"/api/model-versions/{evidenced.pk}/evidence/")

    assert response.status_code == 200, response.content
    assert response["Content-Disposition"] == 'attachment; filename="evidence-bike-demand-v1.json"'
    pack = json.loads(body(response))
    card = pack["model_card"]
    assert (card["intended_purpose"], card["known_limitations"]) == (PURPOSE, LIMITS)
    data = evidenced.training_dataset_version
    assert card["training_data"][0]["sha256"] == data.sha256
    assert card["training_data"][0]["rows"] == data.row_count
    assert card["training_data"][0]["columns"] == data.schema
    scan = PiiScan.objects.get(dataset_version=data)
    assert card["pii_report"] == {
        "status": "done",
        "dataset_version_id": data.pk,
        "rows_scanned": scan.rows_scanned,
        "finished_at": iso_timestamp(scan.finished_at),
        "reason": "",
        "report": scan.report,
        "policy_satisfied": True,
        "policy_verdict": f"the PII scan of {data} found no personal data by its team's policy",
    }
    assert card["metrics"] == evidenced.metrics
    assert [job["job_id"] for job in card["training_jobs"]] == [evidenced.source_job_id]
    (approval,) = card["human_oversight"]["approvals"]
    assert (
        approval["state"],
        approval["requested_by"],
        approval["decided_by"],
        approval["decision_reason"],
    ) == (
        "approved",
        "dana",
        "aaron",
        "metrics reviewed",
    )
    assert [alert["state"] for alert in card["monitoring"]["alerts"]] == ["open"]
    assert [change["action"] for change in card["changes"]] == [
        "model_version.register",
        "model_version.update",
    ]
    assert card["changes"][1]["changed"] == ["intended_purpose", "known_limitations"]
    assert {node["id"] for node in pack["lineage"]["nodes"]} >= {
        f"model_version:{evidenced.pk}",
        f"job:{evidenced.source_job_id}",
        f"dataset_version:{data.pk}",
    }
    events = pack["audit_bundle"]["events"]
    assert len(events) == AuditEvent.objects.filter(pk__in=[e["event_id"] for e in events]).count() > 10

    intact = _run_verifier(tmp_path, client, pack)
    assert intact.returncode == 0, intact.stdout + intact.stderr
    assert intact.stdout.splitlines()[-1] == (
        f"OK: evidence pack verified (parts, pack_sha256, signature, {len(events)} of {len(events)} events)"
    )

    def fails_with(edit, message: str) -> None:
        tampered = json.loads(json.dumps(pack))
        edit(tampered)
        result = _run_verifier(tmp_path, client, tampered)
        assert result.returncode == 1, result.stdout
        assert message in result.stdout, result.stdout

    fails_with(
        lambda p: p["model_card"].update(known_limitations="None."),
        "pack: FAILED: model_card.known_limitations: edited after signing",
    )
    metric = next(iter(pack["model_card"]["metrics"]))
    fails_with(
        lambda p: p["model_card"]["metrics"].update({metric: 0.99}),
        "pack: FAILED: model_card.metrics: edited after signing",
    )
    fails_with(lambda p: p["lineage"]["edges"].pop(), "pack: FAILED: lineage.edges: edited after signing")
    fails_with(
        lambda p: p["audit_bundle"]["events"][0]["leaf"].update(action="dataset.delete"),
        "inclusion proof does not reach the checkpoint root",
    )
    fails_with(
        lambda p: p["audit_bundle"]["events"][0]["leaf"].update(action="dataset.delete"),
        "pack: FAILED: audit_bundle.events: edited after signing",
    )

    def resign_nothing(p: dict) -> None:
        # An editor who also recomputes the digests and the hash still cannot sign.
        from governance import merkle

        p["model_card"]["intended_purpose"] = "Anything."
        p["digests"] = merkle.pack_digests(p)
        p["pack_sha256"] = merkle.pack_sha256(p)

    fails_with(resign_nothing, "pack signature: INVALID (does not match the public key)")
    fails_with(
        lambda p: p["signature"].update(value=p["signature"]["value"][::-1]),
        "the pack signature is invalid",
    )


def test_who_may_download_the_pack(evidenced, client_for, admin, owner, outsider):
    url = f"/api/model-versions/{evidenced.pk}/evidence/"

    assert client_for(admin).get(url).status_code == 200
    # The team sees its version but not the tree the proofs walk (export_audit_bundle).
    assert client_for(owner).get(url).status_code == 403
    assert client_for(outsider).get(url).status_code == 404
    assert client_for(outsider).get("/api/audit-events/", {"model_version": evidenced.pk}).status_code == 400


def test_the_pages_offer_the_pack_and_edit_the_card(evidenced, compliance_officer, owner):
    auditor = Client()
    auditor.force_login(compliance_officer)
    url = f"/api/model-versions/{evidenced.pk}/evidence/"
    request = evidenced.promotion_requests.get()

    version_page = auditor.get(evidenced.get_absolute_url()).content.decode()
    promotion_page = auditor.get(f"/promotions/{request.pk}/").content.decode()

    assert f'href="{url}" download>Evidence pack</a>' in version_page
    assert PURPOSE in version_page
    assert f'<dt>Evidence</dt><dd><a class="evidence-pack" href="{url}" download>' in promotion_page

    member = Client()
    member.force_login(owner)
    assert url not in member.get(evidenced.get_absolute_url()).content.decode()
    saved = member.post(
        f"/model-versions/{evidenced.pk}/card/",
        {"description": "", "intended_purpose": "Planning only.", "known_limitations": LIMITS},
    )
    assert saved.status_code == 302
    evidenced.refresh_from_db()
    assert evidenced.intended_purpose == "Planning only."
    event = AuditEvent.objects.filter(object_type="modelversion", object_id=str(evidenced.pk)).latest("id")
    assert (event.action, event.actor_label, event.after["intended_purpose"]) == (
        "model_version.update",
        "olivia",
        "Planning only.",
    )
