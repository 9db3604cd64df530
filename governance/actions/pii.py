"""PII scans of dataset versions and each team's PII policy (issue 12), and the one rule that
decides whether a job may read a version (``pii_refusal``) or a promotion gate passes
(``pii_gate``).

A scan is queued with each new dataset version (``queue_pii_scan``, inside the registration's
transaction) and sent to a worker once committed; the worker runs ``run_pii_scan``, which claims
the row with a conditional UPDATE (a redelivered task does nothing), reads a bounded sample of the
file and stores the report of ``governance.pii.scan_frame``, or the reason it failed; the outcome
is audited as ``pii.scan`` by the system (actor None).

A team's policy says, per kind (``governance.pii.ALL_KINDS``) or by ``default``, ``block``,
``mask``, ``hash`` (keyed HMAC-SHA256, so joins still work), ``drop`` or ``allow``. A team without
a policy allows everything, as before scans existed. A version whose findings are all allowed or
protected (mask, hash, drop; ``protection_plan``) is read by jobs through its protected copy, a
derived dataset version that ``runners.pii_protection`` makes (it records the lineage edge, which
governance may not import); ``pii_refusal`` refuses the source itself and accepts a copy made
under rules at least as strict as the team's current ones.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from governance import datafiles, pii
from governance.actions.checks import ensure_can
from governance.audit import record_audit_event, snapshot
from governance.models import DatasetVersion, PiiPolicy, PiiScan, Team
from governance.permissions import CHANGE, MANAGE

if TYPE_CHECKING:
    from django.contrib.auth.models import User

logger = logging.getLogger(__name__)

SCAN_TASK = "governance.tasks.scan_dataset_version_pii"
BLOCK, ALLOW, MASK, HASH, DROP = "block", "allow", "mask", "hash", "drop"
RULES = (BLOCK, MASK, HASH, DROP, ALLOW)
PROTECTIONS = (MASK, HASH, DROP)
DEFAULT = "default"
RULES_IN_WORDS = "block, mask, hash, drop, allow"


# --- scans ---------------------------------------------------------------------------------


def queue_pii_scan(version: DatasetVersion, *, requested_by: User | None) -> PiiScan:
    """Queue the scan of a newly registered ``version`` (the caller's transaction, which records
    the registration's audit event) and send it to a worker once committed."""
    scan = PiiScan.objects.create(dataset_version=version, requested_by=requested_by)
    scan_id = scan.pk
    transaction.on_commit(lambda: enqueue_pii_scan(scan_id))
    return scan


def enqueue_pii_scan(scan_id: int) -> bool:
    """Send the scan task by name to ``STEWARD_PII_SCAN_QUEUE`` (tasks sit above actions). A
    broker outage is logged and leaves the scan queued: ``do_request_pii_scan`` sends it again.
    True if it was sent."""
    from celery import current_app

    try:
        current_app.send_task(SCAN_TASK, args=[scan_id], queue=settings.STEWARD_PII_SCAN_QUEUE, retry=False)
    except Exception:
        logger.warning("could not enqueue PII scan %s; request it again", scan_id, exc_info=True)
        return False
    return True


def do_request_pii_scan(*, dataset_version: DatasetVersion, actor: User) -> PiiScan:
    """Scan ``dataset_version`` again (a failed scan, a version registered before scans existed,
    a send lost to a broker outage, a worker that died mid-scan): its scan row back to queued,
    audited ``pii_scan.request``, sent once committed (a second delivery of a queued scan finds
    nothing to claim). ValidationError while a scan is running and younger than its time limit
    plus a minute; PermissionDenied without the right to change the dataset's team."""
    with transaction.atomic():
        ensure_can(actor, CHANGE, dataset_version.dataset.team_id)
        scan = PiiScan.objects.select_for_update().filter(dataset_version=dataset_version).first()
        before = snapshot(scan)
        now = timezone.now()
        if scan is None:
            scan = PiiScan(dataset_version=dataset_version)
        elif scan.status == PiiScan.Status.RUNNING and scan.started_at is not None:
            running_s = (now - scan.started_at).total_seconds()
            if running_s <= settings.STEWARD_PII_SCAN_TIME_LIMIT_S + 60:
                raise ValidationError(
                    {"status": f"the PII scan of {dataset_version} is running (for {running_s:.0f} s)"}
                )
        scan.status, scan.reason, scan.report, scan.rows_scanned = PiiScan.Status.QUEUED, "", {}, None
        scan.requested_by, scan.created_at = actor, now
        scan.started_at = scan.finished_at = None
        scan.save()
        record_audit_event(
            actor=actor, action="pii_scan.request", obj=scan, before=before, after=snapshot(scan)
        )
        scan_id = scan.pk
        transaction.on_commit(lambda: enqueue_pii_scan(scan_id))
    return scan


def scan_limits(version: DatasetVersion) -> pii.Limits:
    """The settings' bounds on one scan, with a sampling seed from the file's hash."""
    return pii.Limits(
        max_rows=settings.STEWARD_PII_SCAN_MAX_ROWS,
        time_limit_s=settings.STEWARD_PII_SCAN_TIME_LIMIT_S,
        k_threshold=settings.STEWARD_PII_K_THRESHOLD,
        seed=pii.seed_of(version.sha256),
    )


def run_pii_scan(scan_id: int) -> str | None:
    """Run queued scan ``scan_id`` (the worker's plain function): claim it (queued -> running,
    conditional UPDATE), scan its version's file within ``scan_limits``, then mark it done with
    the report or failed with the reason (an unreadable file, the time limit, a detector's
    error), audited ``pii.scan``. Returns the final status, or None when there was nothing to
    claim (already claimed, finished, or gone): safe to run twice."""
    now = timezone.now()
    claimed = PiiScan.objects.filter(pk=scan_id, status=PiiScan.Status.QUEUED).update(
        status=PiiScan.Status.RUNNING, started_at=now
    )
    if not claimed:
        return None
    scan = PiiScan.objects.select_related("dataset_version__dataset").get(pk=scan_id)
    version = scan.dataset_version
    report: dict[str, Any] | None = None
    reason = ""
    try:
        limits = scan_limits(version)
        # Issue 11: only the sample the scan reads is held, taken while the file streams by.
        sample, rows = datafiles.sample_frames(version.iter_frames(), limits.max_rows, limits.seed)
        report = pii.scan_frame(sample, limits, rows_total=rows)
    except pii.ScanTimeout as exc:
        reason = str(exc)
    except (datafiles.DataFileError, OSError) as exc:
        reason = f"could not read the file: {exc}"
    except Exception as exc:  # a detector's bug must fail the scan with its reason, not hang it
        logger.exception("PII scan %s failed", scan_id)
        reason = f"{type(exc).__name__}: {exc}"
    if report is not None and (problem := datafiles.unstorable(report)):
        report, reason = None, f"the report cannot be stored: {problem}"
    with transaction.atomic():
        scan = PiiScan.objects.select_for_update().get(pk=scan_id)
        if scan.status != PiiScan.Status.RUNNING:
            return None
        before = snapshot(scan)
        scan.finished_at = timezone.now()
        if report is not None:
            scan.status, scan.report, scan.rows_scanned = PiiScan.Status.DONE, report, report["rows_scanned"]
        else:
            scan.status, scan.reason = PiiScan.Status.FAILED, reason[:2000]
        scan.save(update_fields=["status", "report", "rows_scanned", "reason", "finished_at"])
        after = snapshot(scan) or {}
        if report is not None:
            # What was found, in the event itself: a compliance officer reads it from the trail.
            after["findings"] = sorted(f"{f['column']}: {f['kind']}" for f in report["findings"])
        record_audit_event(actor=None, action="pii.scan", obj=scan, before=before, after=after)
    return scan.status


# --- policies ------------------------------------------------------------------------------


def check_pii_rules(rules: Any) -> dict[str, str]:
    """``rules`` validated: an object mapping ``default`` or a kind of ``governance.pii.ALL_KINDS``
    to one of ``RULES``. ValidationError on ``rules`` naming the key and what is wrong."""
    if not isinstance(rules, dict):
        raise ValidationError(
            {"rules": f'an object of kind -> one of {RULES_IN_WORDS}, e.g. {{"us_ssn": "hash"}}'}
        )
    checked = {}
    for kind, rule in rules.items():
        if kind != DEFAULT and kind not in pii.ALL_KINDS:
            raise ValidationError(
                {"rules": f"unknown kind {str(kind)[:60]!r}; one of {DEFAULT}, {', '.join(pii.ALL_KINDS)}"}
            )
        if rule not in RULES:
            raise ValidationError({"rules": f"{kind}: {str(rule)[:60]!r} is not one of {RULES_IN_WORDS}"})
        checked[str(kind)] = str(rule)
    return checked


def do_set_pii_policy(*, team: Team, rules: dict[str, Any], actor: User | None) -> PiiPolicy:
    """Set ``team``'s PII policy (``check_pii_rules``). The team's managers (MANAGE) only;
    audited ``pii_policy.set`` with the rules before and after; nothing when they do not change.
    ValidationError for invalid rules; PermissionDenied without MANAGE."""
    checked = check_pii_rules(rules)
    with transaction.atomic():
        team = Team.objects.select_for_update().get(pk=team.pk)
        ensure_can(actor, MANAGE, team.pk)
        policy = PiiPolicy.objects.select_for_update().filter(team=team).first()
        before = snapshot(policy)
        if policy is None:
            policy = PiiPolicy(team=team)
        elif policy.rules == checked:
            return policy
        policy.rules, policy.updated_by, policy.updated_at = checked, actor, timezone.now()
        policy.save()
        record_audit_event(
            actor=actor,
            action="pii_policy.set",
            obj=policy,
            team_id=team.pk,
            before=before,
            after=snapshot(policy),
        )
    return policy


def team_rules(team_id: int) -> dict[str, str]:
    """The rules of team ``team_id``'s PII policy, {} without one (everything allowed)."""
    policy = PiiPolicy.objects.filter(team_id=team_id).first()
    return dict(policy.rules) if policy is not None else {}


def rule_of(kind: str, rules: dict[str, str]) -> str:
    """The rule ``rules`` give ``kind``: its own, else the default, else allow."""
    return rules.get(kind, rules.get(DEFAULT, ALLOW))


def is_blocked(kind: str, rules: dict[str, str]) -> bool:
    """Whether ``rules`` block ``kind`` (its own rule, else the default, else allow)."""
    return rule_of(kind, rules) == BLOCK


def protection_plan(scan: PiiScan, rules: dict[str, str]) -> dict[str, tuple[str, str]]:
    """What ``rules`` ask of a done ``scan``'s columns: ``{column: (rule, kind)}`` for each column
    holding a kind whose rule is mask, hash or drop; a column holding several such kinds gets the
    strictest rule (drop > mask > hash; ``governance.pii.PROTECTION_STRENGTH``) and the kind that
    asked for it. Columns in report order; {} when nothing is to be protected."""
    plan: dict[str, tuple[str, str]] = {}
    for finding in scan.findings:
        rule = rule_of(finding["kind"], rules)
        if rule not in PROTECTIONS:
            continue
        held = plan.get(finding["column"])
        if held is None or pii.PROTECTION_STRENGTH[rule] > pii.PROTECTION_STRENGTH[held[0]]:
            plan[finding["column"]] = (rule, finding["kind"])
    return plan


def describe_plan(plan: dict[str, Any]) -> str:
    """ "column 'race' (hash); column 'sex' (mask)", columns sorted (a stored plan is jsonb, whose
    keys keep no order): ``plan`` values are rules or (rule, kind)."""
    return "; ".join(
        f"column {column!r} ({rule if isinstance(rule, str) else rule[0]})"
        for column, rule in sorted(plan.items())
    )


def hash_key() -> bytes:
    """The key of the ``hash`` rule: ``STEWARD_PII_HASH_KEY``, or one derived from ``SECRET_KEY``
    with HKDF-SHA256 (RFC 5869, extract then one block of expand) so that the hashes are not
    HMACs under the secret key itself."""
    if settings.STEWARD_PII_HASH_KEY:
        return settings.STEWARD_PII_HASH_KEY.encode("utf-8")
    prk = hmac.new(b"steward.pii", settings.SECRET_KEY.encode("utf-8"), hashlib.sha256).digest()
    return hmac.new(prk, b"pii hash key\x01", hashlib.sha256).digest()


def is_protected_enough(version: DatasetVersion, plan: dict[str, tuple[str, str]]) -> bool:
    """Whether protected copy ``version`` applied, to each column of ``plan``, a rule at least as
    strict as the plan's (a copy masked when the policy now says hash still hides enough)."""
    applied = version.pii_protection or {}
    return all(
        column in applied and pii.PROTECTION_STRENGTH[applied[column]] >= pii.PROTECTION_STRENGTH[rule]
        for column, (rule, _) in plan.items()
    )


def blocked_findings(scan: PiiScan, rules: dict[str, str]) -> list[dict[str, Any]]:
    """The findings of a done ``scan`` that ``rules`` block, in report order."""
    return [finding for finding in scan.findings if is_blocked(finding["kind"], rules)]


def describe_findings(findings: list[dict[str, Any]]) -> str:
    """ "column 'ssn' (us_ssn); column 'race' (race_ethnicity)", columns in report order."""
    by_column: dict[str, list[str]] = {}
    for finding in findings:
        by_column.setdefault(finding["column"], []).append(finding["kind"])
    return "; ".join(f"column {column!r} ({', '.join(kinds)})" for column, kinds in by_column.items())


def _scan_state(version: DatasetVersion) -> tuple[PiiScan | None, str]:
    scan = PiiScan.objects.filter(dataset_version=version).first()
    if scan is None:
        return None, f"{version} has no PII scan (registered before scans, or never queued); request one"
    if scan.status == PiiScan.Status.FAILED:
        return scan, f"the PII scan of {version} failed ({scan.reason}); request it again"
    if scan.status != PiiScan.Status.DONE:
        return scan, f"the PII scan of {version} is {scan.status}, not done; wait for it"
    return scan, ""


def pii_refusal(version: DatasetVersion) -> str | None:
    """Why a job may not read ``version`` under its team's PII policy, or None when it may: the
    policy blocks a kind the scan found (the message names columns and kinds); it blocks or
    protects any kind and the scan is missing, queued, running or failed (unresolved); it masks,
    hashes or drops a kind the scan found (the message names the columns: jobs read the
    protected copy instead, ``runners.pii_protection``). A protected copy is judged by its
    source's scan: refused when that holds blocked findings, or when the copy is less strict than
    the current policy. A team without a policy, or one that allows everything, lets every
    version be read."""
    rules = team_rules(version.dataset.team_id)
    team = version.dataset.team.name
    source = version.protects if version.protects is not None else version
    if source is version and all(rule == ALLOW for rule in rules.values()):
        return None
    scan, unresolved = _scan_state(source)
    if unresolved or scan is None:
        acts = "blocks" if any(rule == BLOCK for rule in rules.values()) else "protects"
        return f"{unresolved}: team {team}'s PII policy {acts} some kinds"
    blocked = blocked_findings(scan, rules)
    if blocked:
        return f"{source} holds personal data team {team}'s PII policy blocks: {describe_findings(blocked)}"
    plan = protection_plan(scan, rules)
    if source is not version:
        if is_protected_enough(version, plan):
            return None
        return (
            f"{version} was protected under older rules ({describe_plan(version.pii_protection)}); "
            f"team {team}'s PII policy now asks for {describe_plan(plan)}: submit the job on {source} "
            "to read a current protected copy"
        )
    if plan:
        return (
            f"{version} holds personal data team {team}'s PII policy protects: {describe_plan(plan)}; "
            "jobs read its protected copy (submit the job again to use it)"
        )
    return None


def protection_needed(version: DatasetVersion) -> dict[str, tuple[str, str]]:
    """The plan (``protection_plan``) a protected copy of ``version`` must follow for a job to
    read it: {} when ``version`` is itself a protected copy, when its team's policy protects
    nothing it holds, or when the scan is unresolved or holds blocked findings (``pii_refusal``
    refuses those; no copy helps)."""
    if version.protects_id is not None:
        return {}
    rules = team_rules(version.dataset.team_id)
    if not any(rule in PROTECTIONS for rule in rules.values()):
        return {}
    scan, unresolved = _scan_state(version)
    if unresolved or scan is None or blocked_findings(scan, rules):
        return {}
    return protection_plan(scan, rules)


def pii_gate(version: DatasetVersion | None) -> tuple[bool, str]:
    """The ``pii_policy_satisfied`` promotion gate on a training dataset version: passed when it
    has a done scan and no finding its team's policy blocks; the detail names the blocked columns
    and kinds, or says the scan is missing, pending or failed."""
    if version is None:
        return False, "the version names no training dataset version: its data cannot be shown PII-clean"
    if version.protects_id is not None:
        why = pii_refusal(version)
        if why:
            return False, why
        applied = describe_plan(version.pii_protection)
        return (
            True,
            f"{version} is the protected copy of {version.protects} ({applied}) its team's policy asks for",
        )
    scan, unresolved = _scan_state(version)
    if unresolved or scan is None:
        return False, unresolved
    rules = team_rules(version.dataset.team_id)
    blocked = blocked_findings(scan, rules)
    if blocked:
        return False, (
            f"{version} holds personal data its team's PII policy blocks: {describe_findings(blocked)}"
        )
    plan = protection_plan(scan, rules)
    if plan:
        return False, (
            f"{version} holds personal data its team's PII policy protects ({describe_plan(plan)}): "
            "the model read it unprotected; train on the protected copy"
        )
    kinds = sorted({finding["kind"] for finding in scan.findings})
    found = f"found {', '.join(kinds)}, all allowed" if kinds else "found no personal data"
    return True, f"the PII scan of {version} {found} by its team's policy"
