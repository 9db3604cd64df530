"""A model version's evidence (issue 12): "everything about this model version" in the audit
trail, and the signed evidence pack an auditor verifies offline with ``merkle.py verify``.

Monitoring is the top app, the only one that may import runners (jobs), lineage (the graph) and
governance (registry, audit) together, so the query that follows a version's relations lives
here; governance reaches it through ``governance.audit.subjects`` (registered in
``MonitoringConfig.ready``). The pack holds the model card (the Annex IV items Steward knows),
the lineage graph around the version, and the version's audit events as a
``steward-audit-bundle/1`` with inclusion proofs against the latest signed checkpoint, plus
digests of each item, their ``pack_sha256`` and an Ed25519 signature with the audit key.
"""

from __future__ import annotations

import base64
import json
from typing import TYPE_CHECKING, Any

from django.db.models import Q, QuerySet
from django.utils import timezone

from governance import audit_export, merkle
from governance.actions.pii import pii_gate
from governance.audit.keys import signing_key
from governance.audit.leaf import iso_timestamp
from governance.audit.proofs import latest_checkpoint, may_audit
from governance.audit.subjects import events_about_model_version
from governance.models import AuditEvent, Evaluation, ModelVersion, PiiScan, PromotionRequest
from lineage.nodes import NodeRef
from lineage.queries import PANEL_DEPTH, runs_writing, walk
from monitoring.models import Alert, DriftCheck, Monitor
from runners.models import Job

if TYPE_CHECKING:
    from django.contrib.auth.models import AnonymousUser, User


class NothingSequenced(RuntimeError):
    """No signed checkpoint exists yet, so no event of the pack could be proven."""


def _ids(queryset: QuerySet) -> list[str]:
    # AuditEvent.object_id is text (record_audit_event writes str(pk)).
    return [str(pk) for pk in queryset.values_list("pk", flat=True)]


def training_jobs(version: ModelVersion) -> QuerySet[Job]:
    """The runs that produced ``version``: the job whose output it is, the run it names
    (``source_job_id``, an MLflow run), and any run lineage records as writing it."""
    return Job.objects.filter(
        Q(output_model_version=version)
        | Q(pk=version.source_job_id)
        | Q(pk__in=runs_writing(NodeRef("model_version", version.pk)))
    ).distinct()


def model_version_subjects(version: ModelVersion) -> Q:
    """The audit events about ``version``, by relation: its own row (registration, description,
    model card, tags, archive, delete); its training dataset version's registration; its
    training jobs; the inference jobs that ran it; its monitors, drift checks and alerts; its
    promotion requests; its evaluations (issue 15; the evaluation jobs are among the jobs that
    ran it); and every alias move onto or off it (the alias row outlives the move, so the
    recorded ``model_version_id`` decides). One query per kind of related row."""
    objects: dict[str, list[str]] = {
        "modelversion": [str(version.pk)],
        "job": _ids(training_jobs(version)) + _ids(Job.objects.filter(model_version=version)),
        "monitor": _ids(Monitor.objects.filter(model_version=version)),
        "driftcheck": _ids(DriftCheck.objects.filter(model_version=version)),
        "alert": _ids(Alert.objects.filter(model_version=version)),
        "promotionrequest": _ids(PromotionRequest.objects.filter(model_version=version)),
        "evaluation": _ids(Evaluation.objects.filter(model_version=version)),
    }
    if version.training_dataset_version_id is not None:
        objects["datasetversion"] = [str(version.training_dataset_version_id)]
    subjects = Q(object_type="modelalias") & (
        Q(after__model_version_id=version.pk) | Q(before__model_version_id=version.pk)
    )
    for object_type, ids in objects.items():
        if ids:
            subjects |= Q(object_type=object_type, object_id__in=ids)
    return subjects


def may_download_evidence(user: User | AnonymousUser, version: ModelVersion) -> bool:
    """Whether ``user``, who may view ``version``, may download its evidence pack: platform
    admins and compliance officers, as for the audit bundle (``export_audit_bundle`` in
    docs/permissions.md), since its inclusion proofs name leaf indexes and the tree size,
    which count every team's events."""
    return may_audit(user)


def _when(value: Any) -> str | None:
    return iso_timestamp(value) if value is not None else None


def _username(user: Any) -> str | None:
    return user.get_username() if user is not None else None


def _training_data(version: ModelVersion) -> list[dict[str, Any]]:
    data = version.training_dataset_version
    if data is None:
        return []
    return [
        {
            "dataset_version_id": data.pk,
            "dataset": data.dataset.name,
            "version": data.version,
            "sha256": data.sha256,
            "size_bytes": data.size_bytes,
            "rows": data.row_count,
            "columns": data.schema,
            "format": str(data.format),
            "registered_at": _when(data.created_at),
            "registered_by": _username(data.created_by),
        }
    ]


def _pii_report(version: ModelVersion) -> dict[str, Any]:
    """The PII scan of the version's training data (issue 12) as the pack states it: the scan's
    status and report (examples masked), and the team policy's verdict on it, in the words of the
    ``pii_policy_satisfied`` gate. ``status`` is ``"no_training_data"`` when the version names no
    training dataset version and ``"not_scanned"`` when that version has no scan."""
    data = version.training_dataset_version
    if data is None:
        return {"status": "no_training_data", "dataset_version_id": None}
    scan = PiiScan.objects.filter(dataset_version=data).first()
    is_satisfied, verdict = pii_gate(data)
    if scan is None:
        return {"status": "not_scanned", "dataset_version_id": data.pk, "policy_verdict": verdict}
    return {
        "status": str(scan.status),
        "dataset_version_id": data.pk,
        "rows_scanned": scan.rows_scanned,
        "finished_at": _when(scan.finished_at),
        "reason": scan.reason,
        "report": scan.report,
        "policy_satisfied": is_satisfied,
        "policy_verdict": verdict,
    }


def _evaluations(version: ModelVersion) -> list[dict[str, Any]]:
    """The version's evaluations (issue 15), oldest first: who measured (Steward's job or the
    client, self-reported), on which data, against which champion, and the metric values (the
    intervals, slices and fairness stay on the evaluation's page and API)."""
    return [
        {
            "evaluation_id": evaluation.pk,
            "source": str(evaluation.source),
            "dataset_version_id": evaluation.dataset_version_id,
            "job_id": evaluation.job_id,
            "champion_version_id": evaluation.champion_version_id,
            "primary_metric": evaluation.primary_metric,
            "metrics": {
                name: entry.get("value") for name, entry in (evaluation.results.get("metrics") or {}).items()
            },
            "recorded_at": _when(evaluation.created_at),
        }
        for evaluation in Evaluation.objects.filter(model_version=version).order_by("pk")
    ]


def _approvals(version: ModelVersion) -> list[dict[str, Any]]:
    requests = (
        PromotionRequest.objects.filter(model_version=version)
        .select_related("requested_by", "decided_by")
        .order_by("created_at", "pk")
    )
    return [
        {
            "promotion_request_id": request.pk,
            "alias": request.alias,
            "state": str(request.state),
            "requested_by": _username(request.requested_by),
            "requested_at": _when(request.created_at),
            "reason": request.reason,
            "decided_by": _username(request.decided_by),
            "decided_at": _when(request.decided_at),
            "decision_reason": request.decision_reason,
            "acknowledged_alerts": request.acknowledged_alerts,
        }
        for request in requests
    ]


def _monitoring(version: ModelVersion) -> dict[str, Any]:
    monitors = Monitor.objects.filter(model_version=version).order_by("pk")
    checks = DriftCheck.objects.filter(model_version=version).order_by("created_at", "pk")
    alerts = (
        Alert.objects.filter(model_version=version)
        .select_related("acknowledged_by", "resolved_by")
        .order_by("created_at", "pk")
    )
    return {
        "monitors": [
            {
                "monitor_id": monitor.pk,
                "name": monitor.name,
                "source": str(monitor.source),
                "reference_dataset_version_id": monitor.reference_dataset_version_id,
                "columns": monitor.columns,
                "methods": monitor.methods,
                "thresholds": monitor.thresholds,
                "drift_share": monitor.drift_share,
                "severity": str(monitor.severity),
            }
            for monitor in monitors
        ],
        "drift_checks": [
            {
                "drift_check_id": check.pk,
                "monitor_id": check.monitor_id,
                "state": str(check.state),
                "reference_dataset_version_id": check.reference_dataset_version_id,
                "current_dataset_version_id": check.current_dataset_version_id,
                "is_dataset_drift": check.is_dataset_drift,
                "drifted_count": check.drifted_count,
                "drifted_fraction": check.drifted_fraction,
                "created_at": _when(check.created_at),
                "finished_at": _when(check.finished_at),
            }
            for check in checks
        ],
        "alerts": [
            {
                "alert_id": alert.pk,
                "kind": str(alert.kind),
                "state": str(alert.state),
                "severity": str(alert.severity),
                "title": alert.title,
                "drift_check_id": alert.drift_check_id,
                "occurrences": alert.occurrences,
                "opened_at": _when(alert.created_at),
                "acknowledged_by": _username(alert.acknowledged_by),
                "acknowledged_at": _when(alert.acknowledged_at),
                "resolved_by": _username(alert.resolved_by),
                "resolved_at": _when(alert.resolved_at),
            }
            for alert in alerts
        ],
    }


def _changes(version: ModelVersion, viewer: User | AnonymousUser) -> list[dict[str, Any]]:
    events = (
        AuditEvent.objects.restrict(viewer)
        .filter(object_type="modelversion", object_id=str(version.pk))
        .order_by("timestamp", "pk")
    )
    return [
        {
            "event_id": event.pk,
            "timestamp": iso_timestamp(event.timestamp),
            "action": event.action,
            "actor": event.actor_label,
            "on_behalf_of": event.on_behalf_of_label or None,
            "changed": sorted(
                key
                for key in set(event.before or {}) | set(event.after or {})
                if (event.before or {}).get(key) != (event.after or {}).get(key)
            ),
        }
        for event in events
    ]


def model_card(version: ModelVersion, viewer: User | AnonymousUser) -> dict[str, Any]:
    """The Annex IV items Steward knows of ``version``, from its rows: what it is, the owner's
    intended purpose and known limitations, training data fingerprints, the training data's PII
    report and the policy's verdict on it, metrics, params, signature, training jobs, approvals
    (who, when, why), monitors, drift checks and alerts, and the version's own changes."""
    model = version.model
    return {
        "model": {
            "name": model.name,
            "team": model.team.name,
            "owner": _username(model.owner),
            "version": version.version,
            "status": str(version.status),
            "flavor": str(version.flavor),
            "artifact_sha256": version.sha256,
            "size_bytes": version.size_bytes,
            "source": version.source,
            "description": version.description,
            "tags": version.tags,
            "registered_at": _when(version.created_at),
            "registered_by": _username(version.created_by),
        },
        "intended_purpose": version.intended_purpose,
        "known_limitations": version.known_limitations,
        "training_data": _training_data(version),
        "pii_report": _pii_report(version),
        "metrics": version.metrics,
        "params": version.training_spec,
        "signature": version.signature,
        "training_jobs": [
            {
                "job_id": job.pk,
                "kind": str(job.kind),
                "state": str(job.state),
                "dataset_version_id": job.dataset_version_id,
                "submitted_by": _username(job.created_by),
                "submitted_at": _when(job.created_at),
                "finished_at": _when(job.finished_at),
            }
            for job in training_jobs(version).select_related("created_by").order_by("pk")
        ],
        "evaluations": _evaluations(version),
        "human_oversight": {"approvals": _approvals(version)},
        "monitoring": _monitoring(version),
        "changes": _changes(version, viewer),
    }


def evidence_pack(
    version: ModelVersion, viewer: User | AnonymousUser, *, verifier_url: str, public_key_url: str
) -> dict[str, Any]:
    """The signed evidence pack of ``version`` as ``viewer`` may see it (the caller checked
    ``may_download_evidence``): ``{"format", "generated_at", "generated_by", "how_to_verify",
    "verifier", "model_version", "model_card", "lineage", "audit_bundle", "digests",
    "pack_sha256", "signature"}`` (``merkle.verify_evidence_pack`` reads it).

    The bundle holds the events about the version (``model_version_subjects``) that the latest
    checkpoint covers, with their proofs against it, so no consistency proof is needed; events
    sequenced later are counted in its ``unsequenced_events_not_included``. Raises
    NothingSequenced before the first checkpoint, and as ``signing_key`` does.
    """
    checkpoint = latest_checkpoint()
    if checkpoint is None:
        raise NothingSequenced("nothing is sequenced yet: no checkpoint to prove the events against")
    events = events_about_model_version(AuditEvent.objects.restrict(viewer), version)
    bundle_text = "".join(
        audit_export.bundle_chunks(
            events.filter(leaf__leaf_index__lt=checkpoint.tree_size).select_related("leaf", "personal_data"),
            checkpoint,
            filters={"model_version": str(version.pk)},
            verifier_url=verifier_url,
            public_key_url=public_key_url,
            unsequenced=events.exclude(leaf__leaf_index__lt=checkpoint.tree_size).count(),
        )
    )
    graph = walk(viewer, NodeRef("model_version", version.pk), "both", PANEL_DEPTH)
    pack: dict[str, Any] = {
        "format": merkle.EVIDENCE_PACK_FORMAT,
        "generated_at": iso_timestamp(timezone.now()),
        "generated_by": _username(viewer),
        "how_to_verify": (
            f"Download the verifier from {verifier_url} and the public key from {public_key_url} (or "
            "from the operator) as steward.pem, save this file as evidence.json and run: python3 "
            "merkle.py verify --public-key steward.pem evidence.json. It checks every item against "
            "its signed digest, pack_sha256, the pack's Ed25519 signature, the checkpoint's "
            "signature and each event's inclusion proof. Python 3.10+ and 'cryptography'; no network."
        ),
        "verifier": {"url": verifier_url, "sha256": audit_export.verifier_sha256()},
        "model_version": {
            "id": version.pk,
            "model": version.model.name,
            "version": version.version,
            "team": version.model.team.name,
        },
        "model_card": model_card(version, viewer),
        "lineage": {"root": graph["root"], "nodes": graph["nodes"], "edges": graph["edges"]},
        "audit_bundle": json.loads(bundle_text),
    }
    # Through JSON once, so that what is hashed is exactly what the verifier will read back.
    pack = json.loads(json.dumps(pack, ensure_ascii=False))
    pack["digests"] = merkle.pack_digests(pack)
    pack["pack_sha256"] = merkle.pack_sha256(pack)
    key = signing_key()
    signature = merkle.sign_checkpoint(key.private_key, merkle.pack_signing_body(pack["pack_sha256"]))
    pack["signature"] = {
        "algorithm": "Ed25519",
        "key_id": key.key_id,
        "value": base64.b64encode(signature).decode("ascii"),
    }
    return pack


def evidence_filename(version: ModelVersion) -> str:
    """``evidence-<model>-v<n>.json``, the model's name reduced to characters safe in a header."""
    safe = "".join(c if c.isascii() and (c.isalnum() or c in "-_.") else "_" for c in version.model.name)
    return f"evidence-{safe}-v{version.version}.json"
