"""A team's GDPR Art. 30 record of processing activities (issue 12), built from the registry.

Art. 30(1) asks a controller to keep, per processing activity: the purposes (b), the categories
of data subjects and personal data (c), the recipients (d), transfers to third countries (e),
the time limits for erasure (f) and a description of the security measures (g). In Steward a
dataset is one activity: its personal data are what the PII scans of its versions found, its
purposes are its description and the intended purposes of the model versions trained on it, its
recipients are who may read it (the team's members by role, the platform's auditors) and the
models trained on it. Steward states only what it knows: a version never scanned is listed as
such, and what Steward does not hold (retention periods, transfers) is said so, not invented.
"""

from __future__ import annotations

from typing import Any

from django.utils import timezone

from governance.audit.leaf import iso_timestamp
from governance.models import (
    AUDIT_EVENTS_MIN_DAYS,
    Dataset,
    Membership,
    ModelVersion,
    PiiPolicy,
    PiiScan,
    RetentionPolicy,
    Team,
)

SCHEMA = "steward-art30-record/1"
# Art. 30(1)(f) and (e): what the record says while Steward has no retention policy and sends no
# data outside the platform on its own.
NO_RETENTION = "no retention period set: versions are kept until erased by their team"
NO_TRANSFERS = "none by Steward; models and predictions leave only through its API, to authenticated users"
SECURITY = (
    "role-based access per team; every action in an append-only, hash-chained audit log with signed "
    "checkpoints; PII scans of every dataset version with a per-team policy that refuses jobs on "
    "blocked personal data"
)


def _personal_data(versions: list[Any], scans: dict[int, PiiScan]) -> dict[str, Any]:
    """The union of what the done scans of ``versions`` found, and which versions lack a done scan."""
    kinds: dict[str, set[str]] = {}
    special: dict[str, str] = {}
    quasi: set[str] = set()
    unscanned = []
    for version in versions:
        scan = scans.get(version.pk)
        if scan is None or scan.status != PiiScan.Status.DONE:
            unscanned.append({"version": version.version, "scan": scan.status if scan else "none"})
            continue
        for finding in scan.findings:
            kinds.setdefault(finding["kind"], set()).add(finding["column"])
        special.update((scan.report or {}).get("special_categories", {}))
        quasi.update((scan.report or {}).get("quasi_identifiers", []))
    return {
        "kinds": {kind: sorted(columns) for kind, columns in sorted(kinds.items())},
        "special_categories": dict(sorted(special.items())),
        "quasi_identifiers": sorted(quasi),
        "versions_without_a_done_scan": unscanned,
    }


def processing_record(team: Team) -> dict[str, Any]:
    """``team``'s Art. 30 record: ``{"schema", "controller", "generated_at", "pii_policy",
    "activities": [one per dataset, by name: {"dataset", "purposes", "personal_data",
    "recipients", "retention", "transfers", "security_measures", "versions"}]}``.

    Reads only ``team``'s rows; the caller checked that the requester may view the team. Six
    queries whatever the number of datasets (datasets with versions, scans, trained model
    versions, members, the PII policy, the retention policy with its rules)."""
    datasets = list(Dataset.objects.filter(team=team).prefetch_related("versions").order_by("name"))
    version_ids = [version.pk for dataset in datasets for version in dataset.versions.all()]
    scans = {
        scan.dataset_version_id: scan for scan in PiiScan.objects.filter(dataset_version_id__in=version_ids)
    }
    trained: dict[int, list[ModelVersion]] = {}
    for model_version in (
        ModelVersion.objects.filter(training_dataset_version_id__in=version_ids)
        .select_related("model", "training_dataset_version")
        .order_by("model__name", "version")
    ):
        trained.setdefault(model_version.training_dataset_version.dataset_id, []).append(model_version)
    members = [
        {"user": membership.user.get_username(), "role": str(membership.role)}
        for membership in Membership.objects.filter(team=team)
        .select_related("user")
        .order_by("user__username")
    ]
    policy = PiiPolicy.objects.filter(team=team).first()
    retention = _retention(RetentionPolicy.objects.filter(team=team).prefetch_related("rules").first())
    activities = []
    for dataset in datasets:
        versions = sorted(dataset.versions.all(), key=lambda version: version.version)
        models = trained.get(dataset.pk, [])
        purposes = (
            [{"source": "dataset description", "text": dataset.description}] if dataset.description else []
        )
        purposes += [
            {"source": f"intended purpose of {version}", "text": version.intended_purpose}
            for version in models
            if version.intended_purpose
        ]
        activities.append(
            {
                "dataset": dataset.name,
                "purposes": purposes,
                "personal_data": _personal_data(versions, scans),
                "recipients": {
                    "team_members": members,
                    "platform_roles": ["admin", "compliance_officer"],
                    "models_trained_on_it": [
                        {
                            "model": version.model.name,
                            "version": version.version,
                            "status": str(version.status),
                        }
                        for version in models
                    ],
                },
                "retention": retention,
                "transfers": NO_TRANSFERS,
                "security_measures": SECURITY,
                "versions": [
                    {
                        "version": version.version,
                        "sha256": version.sha256,
                        "rows": version.row_count,
                        "registered_at": iso_timestamp(version.created_at),
                    }
                    for version in versions
                ],
            }
        )
    return {
        "schema": SCHEMA,
        "controller": {"team": team.name},
        "generated_at": iso_timestamp(timezone.now()),
        "pii_policy": policy.rules if policy is not None else {},
        "activities": activities,
    }


def _retention(policy: RetentionPolicy | None) -> str:
    """Art. 30(1)(f): the team's retention policy for dataset versions, in words."""
    rules = policy.rules_by_kind() if policy is not None else {}
    parts = []
    for kind in ("datasets", "predictions"):
        periods = rules.get(kind, {})
        if periods.get("delete_after_days") is None:
            continue
        text = f"{kind}: deleted {periods['delete_after_days']} days after registration"
        if periods.get("cold_after_days") is not None:
            text += f", moved to cold storage after {periods['cold_after_days']} days unused"
        parts.append(text)
    if not parts:
        return NO_RETENTION
    audit_days = policy.audit_events_days if policy is not None else None
    kept = f"{audit_days} days" if audit_days else f"for ever (at least {AUDIT_EVENTS_MIN_DAYS} days)"
    return "; ".join(parts) + f", unless under legal hold; audit events kept {kept}"
