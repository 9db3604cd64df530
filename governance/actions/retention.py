"""Retention and tiering (issue 12): a team's retention policy, legal holds on dataset versions,
and the daily lifecycle that applies the policies (``apply_retention``).

Per kind (``RetentionKind``): artifacts unused for ``cold_after_days`` move to the cold tier
(``governance.storage.move_to_cold``: a second store, compressed; the first read restores them);
versions registered ``delete_after_days`` ago are erased through the erasure path
(``actions.datasets.do_erase_dataset_version``: the row and its audit trail stay, the bytes are
destroyed) unless under legal hold. Audit events are never deleted here: the trail is
append-only (``AuditLeaf``'s Merkle tree); ``audit_events_days`` is the team's declared period,
refused under six months (EU AI Act Art. 12).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from governance import storage
from governance.actions.checks import ensure_can
from governance.actions.datasets import do_erase_dataset_version
from governance.audit import record_audit_event, snapshot
from governance.limits import checked_description
from governance.models import (
    AUDIT_EVENTS_MIN_DAYS,
    DatasetVersion,
    RetentionKind,
    RetentionPolicy,
    RetentionRule,
    StoredObject,
    Team,
    Tier,
)
from governance.permissions import MANAGE

if TYPE_CHECKING:
    from django.contrib.auth.models import User

logger = logging.getLogger(__name__)

# Which dataset versions each kind covers: predictions are what jobs wrote.
KIND_SOURCES = {
    RetentionKind.DATASETS: (DatasetVersion.Source.UPLOAD, DatasetVersion.Source.PATH),
    RetentionKind.PREDICTIONS: (DatasetVersion.Source.JOB,),
}
PERIODS = ("cold_after_days", "delete_after_days")
# Ten years: a longer period is almost surely a typo for something else (days, not hours).
MAX_DAYS = 3650


def retention_kind(version: DatasetVersion) -> str:
    """The retention kind of ``version``: ``predictions`` when a job wrote it, else ``datasets``."""
    return (
        RetentionKind.PREDICTIONS if version.source == DatasetVersion.Source.JOB else RetentionKind.DATASETS
    )


def check_retention_rules(rules: Any) -> dict[str, dict[str, int | None]]:
    """``rules`` as ``{kind: {"cold_after_days": n | None, "delete_after_days": m | None}}``,
    every kind a ``RetentionKind``, every period a whole number of days from 1 to 3650 or null
    (never). ValidationError on ``rules`` naming the kind and period otherwise."""
    if not isinstance(rules, dict):
        raise ValidationError({"rules": 'an object: {"datasets": {"cold_after_days": 30, ...}, ...}'})
    checked: dict[str, dict[str, int | None]] = {}
    for kind, periods in rules.items():
        if kind not in RetentionKind.values:
            raise ValidationError(
                {"rules": f"unknown kind {str(kind)[:40]!r}; kinds: {', '.join(RetentionKind.values)}"}
            )
        if not isinstance(periods, dict) or set(periods) - set(PERIODS):
            raise ValidationError({"rules": f"{kind}: an object with {' and/or '.join(PERIODS)}"})
        entry: dict[str, int | None] = {}
        for name in PERIODS:
            days = periods.get(name)
            if days is not None and (
                isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_DAYS
            ):
                raise ValidationError(
                    {"rules": f"{kind}.{name}: whole days from 1 to {MAX_DAYS}, or null (never)"}
                )
            entry[name] = days
        if kind == RetentionKind.LOGS and entry.get("cold_after_days") is not None:
            raise ValidationError(
                {
                    "rules": "logs.cold_after_days: job logs are database rows, with no cold tier; "
                    "set delete_after_days only"
                }
            )
        checked[kind] = entry
    return checked


def check_audit_events_days(days: Any) -> int | None:
    """``days`` if null (kept for ever) or a whole number of at least ``AUDIT_EVENTS_MIN_DAYS``.
    ValidationError on ``audit_events_days`` otherwise: the EU AI Act (Art. 12, Art. 19(1))
    has logs of high-risk AI systems kept at least six months."""
    if days is None:
        return None
    if isinstance(days, bool) or not isinstance(days, int):
        raise ValidationError({"audit_events_days": "whole days, or null (kept for ever)"})
    if days < AUDIT_EVENTS_MIN_DAYS:
        raise ValidationError(
            {
                "audit_events_days": f"{days} days is under six months: audit events are kept at least "
                f"{AUDIT_EVENTS_MIN_DAYS} days (EU AI Act Art. 12 and 19(1))"
            }
        )
    return days


def _policy_state(policy: RetentionPolicy | None) -> dict[str, Any] | None:
    if policy is None:
        return None
    return {**(snapshot(policy) or {}), "rules": policy.rules_by_kind()}


def do_set_retention_policy(
    *, team: Team, rules: Any, audit_events_days: Any = None, actor: User | None
) -> RetentionPolicy:
    """Set ``team``'s retention policy: ``rules`` replaces every kind's periods (a kind left out
    keeps its artifacts hot for ever); ``audit_events_days`` null keeps audit events for ever.
    Team managers (MANAGE) only; audited ``retention_policy.set`` with before and after; nothing
    when nothing changes. ValidationError (``rules``, ``audit_events_days``); PermissionDenied."""
    checked = check_retention_rules(rules)
    audit_days = check_audit_events_days(audit_events_days)
    with transaction.atomic():
        team = Team.objects.select_for_update().get(pk=team.pk)
        ensure_can(actor, MANAGE, team.pk)
        policy = RetentionPolicy.objects.select_for_update().filter(team=team).first()
        before = _policy_state(policy)
        if (
            policy is not None
            and policy.audit_events_days == audit_days
            and policy.rules_by_kind() == checked
        ):
            return policy
        if policy is None:
            policy = RetentionPolicy(team=team)
        policy.audit_events_days, policy.updated_by, policy.updated_at = audit_days, actor, timezone.now()
        policy.save()
        policy.rules.all().delete()
        RetentionRule.objects.bulk_create(
            RetentionRule(policy=policy, kind=kind, **periods) for kind, periods in checked.items()
        )
        record_audit_event(
            actor=actor,
            action="retention_policy.set",
            obj=policy,
            team_id=team.pk,
            before=before,
            after=_policy_state(policy),
        )
    return policy


def do_set_legal_hold(*, dataset_version: DatasetVersion, reason: str, actor: User | None) -> DatasetVersion:
    """Put ``dataset_version`` under legal hold: no retention policy deletes it until the hold is
    cleared (an erasure by its managers still can: the GDPR and the hold are theirs to weigh).
    Team managers only; audited ``dataset_version.legal_hold``. ValidationError: no ``reason``,
    already held, erased."""
    why = checked_description((reason or "").strip())
    if not why:
        raise ValidationError({"reason": "say why the version is held (the audit event keeps it)"})
    with transaction.atomic():
        version = (
            DatasetVersion.objects.select_for_update().select_related("dataset").get(pk=dataset_version.pk)
        )
        ensure_can(actor, MANAGE, version.dataset.team_id)
        if version.erased_at is not None:
            raise ValidationError({"detail": f"{version} was erased; there is nothing left to hold"})
        if version.legal_hold_at is not None:
            raise ValidationError(
                {
                    "detail": f"{version} is already under legal hold since "
                    f"{version.legal_hold_at:%Y-%m-%d %H:%M} UTC"
                }
            )
        version.legal_hold_at, version.legal_hold_by, version.legal_hold_reason = timezone.now(), actor, why
        version.save(update_fields=["legal_hold_at", "legal_hold_by", "legal_hold_reason"])
        record_audit_event(
            actor=actor,
            action="dataset_version.legal_hold",
            obj=version,
            before={"legal_hold_at": None},
            after={"legal_hold_at": version.legal_hold_at.isoformat(), "legal_hold_reason": why},
        )
    return version


def do_clear_legal_hold(*, dataset_version: DatasetVersion, actor: User | None) -> DatasetVersion:
    """Lift ``dataset_version``'s legal hold: its team's retention policy applies again from the
    next lifecycle run. Team managers only; audited ``dataset_version.legal_hold_clear`` with
    the hold it lifted. ValidationError when it is not held."""
    with transaction.atomic():
        version = (
            DatasetVersion.objects.select_for_update().select_related("dataset").get(pk=dataset_version.pk)
        )
        ensure_can(actor, MANAGE, version.dataset.team_id)
        if version.legal_hold_at is None:
            raise ValidationError({"detail": f"{version} is not under legal hold"})
        before = {
            "legal_hold_at": version.legal_hold_at.isoformat(),
            "legal_hold_reason": version.legal_hold_reason,
        }
        version.legal_hold_at, version.legal_hold_by, version.legal_hold_reason = None, None, ""
        version.save(update_fields=["legal_hold_at", "legal_hold_by", "legal_hold_reason"])
        record_audit_event(
            actor=actor,
            action="dataset_version.legal_hold_clear",
            obj=version,
            before=before,
            after={"legal_hold_at": None},
        )
    return version


def expires_at(version: DatasetVersion, policy: RetentionPolicy | None) -> datetime | None:
    """When the retention lifecycle deletes ``version`` under ``policy`` (its team's), or None:
    never (no period for its kind, under legal hold, already erased)."""
    if policy is None or version.erased_at is not None or version.legal_hold_at is not None:
        return None
    rule = next((rule for rule in policy.rules.all() if rule.kind == retention_kind(version)), None)
    if rule is None or rule.delete_after_days is None:
        return None
    return version.created_at + timedelta(days=rule.delete_after_days)


def _move_to_cold(key: str, *, team_id: int, kind: str, days: int) -> bool:
    """Move one object to the cold tier with its audit event, in one transaction."""
    with transaction.atomic():
        record = storage.move_to_cold(key)
        if record is None:
            return False
        storage.audit_stored_object(
            record,
            "artifact.move_to_cold",
            team_id=team_id,
            before={"tier": Tier.HOT},
            after={
                "tier": Tier.COLD,
                "kind": kind,
                "cold_after_days": days,
                "size_bytes": record.size_bytes,
                "cold_size_bytes": record.cold_size_bytes,
            },
        )
    return True


@dataclass(frozen=True)
class RetentionSubject:
    """How the lifecycle finds and deletes one kind's artifacts. ``live_keys(team_id)``: the
    storage keys of the team's live artifacts of the kind (a one-column queryset, used as an IN
    subquery); ``expire(team_id, registered_before, reason)``: delete (as the system, audited,
    honouring legal holds) those registered before then; returns ``{"deleted", "held",
    "skipped"}``. Other apps register theirs (drift reports: ``monitoring.apps``), as governance
    imports no other app."""

    live_keys: Callable[[int], QuerySet]
    expire: Callable[[int, datetime, str], dict[str, int]]


_SUBJECTS: dict[str, RetentionSubject] = {}


def register_retention_subject(kind: str, subject: RetentionSubject) -> None:
    """Make ``kind``'s artifacts subject to teams' retention rules (called from an AppConfig)."""
    _SUBJECTS[kind] = subject


def _live_versions(team_id: int, kind: str):
    return DatasetVersion.objects.filter(
        dataset__team_id=team_id, source__in=KIND_SOURCES[RetentionKind(kind)], erased_at__isnull=True
    )


def _expire_versions(kind: str) -> Callable[[int, datetime, str], dict[str, int]]:
    def expire(team_id: int, registered_before: datetime, reason: str) -> dict[str, int]:
        due = _live_versions(team_id, kind).filter(created_at__lte=registered_before)
        counts = {"deleted": 0, "held": due.filter(legal_hold_at__isnull=False).count(), "skipped": 0}
        for version in due.filter(legal_hold_at__isnull=True).order_by("pk"):
            try:
                do_erase_dataset_version(dataset_version=version, reason=reason, actor=None)
            except ValidationError as exc:
                logger.warning("retention: %s not erased: %s", version, "; ".join(exc.messages))
                counts["skipped"] += 1
            else:
                counts["deleted"] += 1
        return counts

    return expire


def _version_keys(kind: str) -> Callable[[int], QuerySet]:
    def live_keys(team_id: int) -> QuerySet:
        return _live_versions(team_id, kind).values("file")

    return live_keys


for _kind in KIND_SOURCES:
    register_retention_subject(
        _kind, RetentionSubject(live_keys=_version_keys(_kind), expire=_expire_versions(_kind))
    )


def apply_retention(now: datetime | None = None) -> dict[str, int]:
    """Apply every team's retention policy as of ``now`` (default: now); the daily beat task.

    Per rule: live artifacts of the kind registered at least ``delete_after_days`` before
    ``now`` and not under legal hold are deleted by their kind's ``RetentionSubject`` (dataset
    versions through ``do_erase_dataset_version`` by the system, one ``dataset_version.erase``
    event each); then objects of the kind unused (last read, else stored) for
    ``cold_after_days`` move to the cold tier (one ``artifact.move_to_cold`` event each; managed
    mode only: direct mode's plain files have no record to tier). One ``retention.apply`` event
    records the run's counts. Idempotent: what was done is not done again. Returns
    ``{"deleted", "moved_to_cold", "held", "skipped", "swept"}``; skipped counts deletions
    refused (the same bytes held by another live version) and objects a store could not move
    (logged; tried again next run); swept, the partial files writers killed mid-write left
    behind (``storage.sweep_leftovers``)."""
    now = now or timezone.now()
    counts = {"deleted": 0, "moved_to_cold": 0, "held": 0, "skipped": 0, "swept": 0}
    tiering = not storage.is_direct()
    rules = RetentionRule.objects.select_related("policy").order_by("policy__team_id", "kind")
    for rule in rules:
        team_id = rule.policy.team_id
        subject = _SUBJECTS.get(rule.kind)
        if subject is None:
            logger.warning("retention: no app registered the kind %r; its rule is not applied", rule.kind)
            continue
        if rule.delete_after_days is not None:
            reason = (
                f"retention policy: {rule.kind} are deleted {rule.delete_after_days} days after registration"
            )
            for name, count in subject.expire(
                team_id, now - timedelta(days=rule.delete_after_days), reason
            ).items():
                counts[name] += count
        if rule.cold_after_days is not None and tiering:
            cutoff = now - timedelta(days=rule.cold_after_days)
            unused = StoredObject.objects.filter(
                key__in=subject.live_keys(team_id), tier=Tier.HOT, shredded_at__isnull=True
            ).filter(Q(last_read_at__lt=cutoff) | Q(last_read_at__isnull=True, created_at__lt=cutoff))
            for key in unused.order_by("pk").values_list("key", flat=True):
                try:
                    moved = _move_to_cold(key, team_id=team_id, kind=rule.kind, days=rule.cold_after_days)
                except storage.ArtifactUnreadable as exc:
                    logger.warning("retention: %s not moved to the cold tier: %s", key, exc)
                    counts["skipped"] += 1
                else:
                    counts["moved_to_cold"] += int(moved)
    counts["swept"] = storage.sweep_leftovers()
    with transaction.atomic():
        record_audit_event(
            actor=None,
            action="retention.apply",
            object_type="retention",
            object_id="daily",
            object_repr="retention lifecycle",
            after={"as_of": now.isoformat(), **counts},
        )
    return counts
