"""Registry (datasets, models, their versions), teams and roles, and the audit log."""

from collections.abc import Iterator
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import F, Q
from django.urls import reverse
from django.utils import timezone

from governance.permissions import RestrictedQuerySet

if TYPE_CHECKING:
    import pandas as pd

# A SHA-256 digest as Steward stores it: 64 lowercase hex digits (hashlib's hexdigest()).
SHA256_HEX = r"^[0-9a-f]{64}$"


class TeamRole(models.TextChoices):
    MODEL_OWNER = "model_owner", "Model owner"
    DATA_SCIENTIST = "data_scientist", "Data scientist"
    APPROVER = "approver", "Approver"
    VIEWER = "viewer", "Viewer"


class PlatformRole(models.TextChoices):
    ADMIN = "admin", "Platform admin"
    COMPLIANCE_OFFICER = "compliance_officer", "Compliance officer"


def default_protected_aliases() -> list[str]:
    """Aliases that move only through an approved promotion request unless a team says otherwise."""
    return ["production"]


class Team(models.Model):
    name = models.CharField(max_length=100, unique=True)
    # governance.names.name_key(name): "Risk" and its fullwidth twin are one team name.
    name_key = models.CharField(max_length=100, unique=True)
    slug = models.SlugField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    protected_aliases = models.JSONField(
        default=default_protected_aliases,
        help_text="Alias names that move only through an approved promotion request (four eyes).",
    )
    created_at = models.DateTimeField(default=timezone.now)

    objects = RestrictedQuerySet.as_manager()
    team_scope = "pk"

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    """A user's role in one team."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=32, choices=TeamRole.choices)
    created_at = models.DateTimeField(default=timezone.now)

    objects = RestrictedQuerySet.as_manager()
    team_scope = "team"

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "team"], name="one_role_per_user_and_team"),
            models.CheckConstraint(
                condition=Q(role__in=TeamRole.values),
                name="membership_role_is_a_team_role",
                violation_error_message="unknown team role",
            ),
        ]
        ordering = ["team__name", "user__username"]

    def __str__(self) -> str:
        return f"{self.user} is {self.get_role_display()} in {self.team}"


class ExternalIdentity(models.Model):
    """The Steward login an OpenID Connect identity (issuer, subject) signs in as (issue 13).

    Made at the identity's first single sign-on; never matched by username or email, so an
    identity provider can never take over a local account that happens to share a name.
    """

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="external_identity"
    )
    issuer = models.CharField(max_length=255)
    subject = models.CharField(max_length=255)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["issuer", "subject"], name="one_login_per_external_identity"),
        ]

    def __str__(self) -> str:
        return f"{self.subject} at {self.issuer}"


class PlatformRoleGrant(models.Model):
    """A platform-wide role: admin (everything) or compliance officer (read everything)."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="platform_roles"
    )
    role = models.CharField(max_length=32, choices=PlatformRole.choices)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "role"], name="one_grant_per_platform_role"),
            models.CheckConstraint(
                condition=Q(role__in=PlatformRole.values),
                name="platform_role_grant_role_is_known",
                violation_error_message="unknown platform role",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user} is {self.get_role_display()}"


class DatasetFormat(models.TextChoices):
    CSV = "csv", "CSV"
    PARQUET = "parquet", "Parquet"


class Dataset(models.Model):
    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="datasets")
    name = models.CharField(max_length=200)
    # governance.names.name_key(name); unique per team, so "exists" tells nothing about other teams.
    name_key = models.CharField(max_length=200, db_index=True)
    description = models.TextField(blank=True)
    is_schema_locked = models.BooleanField(
        default=False, help_text="Refuse a new version whose columns differ from the latest version's."
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    objects = RestrictedQuerySet.as_manager()
    team_scope = "team"
    audit_fields = ("name", "team_id", "description", "is_schema_locked")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["team", "name_key"], name="unique_dataset_name_per_team"),
        ]
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("dataset_detail", args=[self.pk])


class DatasetVersion(models.Model):
    """An immutable snapshot of a data file: content hash, size, row count and schema."""

    class Source(models.TextChoices):
        UPLOAD = "upload", "Uploaded"
        PATH = "path", "Registered from a server path"
        JOB = "job", "Written by a job"
        PROTECTED = "protected", "Protected copy under a PII policy"

    dataset = models.ForeignKey(Dataset, on_delete=models.PROTECT, related_name="versions")
    version = models.PositiveIntegerField()
    file = models.CharField(max_length=500, help_text="Path relative to the artifact root.")
    original_filename = models.CharField(max_length=255, blank=True)
    format = models.CharField(max_length=16, choices=DatasetFormat.choices)
    sha256 = models.CharField(max_length=64)
    size_bytes = models.PositiveBigIntegerField()
    row_count = models.PositiveBigIntegerField()
    schema = models.JSONField(help_text='Columns in file order: [{"name": ..., "dtype": ...}].')
    source = models.CharField(max_length=16, choices=Source.choices)
    schema_change = models.JSONField(
        default=dict,
        blank=True,
        help_text='Against the previous version: {"added": [...], "removed": [...], "retyped": '
        '[{"name", "from", "to"}]}; empty when the columns are the same (or for version 1).',
    )
    description = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    # Erasure (GDPR Art. 17, ``governance.actions.datasets.do_erase_dataset_version``): when, by
    # whom and why; the bytes are destroyed, the row and its audit trail stay.
    erased_at = models.DateTimeField(null=True, blank=True)
    erased_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    erasure_reason = models.TextField(blank=True)
    # Legal hold (issue 12, ``actions.retention.do_set_legal_hold``): while set, the retention
    # lifecycle never deletes the version (litigation, an authority's request).
    legal_hold_at = models.DateTimeField(null=True, blank=True)
    legal_hold_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    legal_hold_reason = models.TextField(blank=True)

    # A protected copy (issue 12, ``runners.pii_protection``): the version whose personal data it
    # masks, hashes or drops, and how, per column; jobs naming the source read this one instead.
    protects = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="protected_versions"
    )
    pii_protection = models.JSONField(
        default=dict,
        blank=True,
        help_text='What was done to the source\'s columns: {"column": "mask" | "hash" | "drop"}.',
    )

    objects = RestrictedQuerySet.as_manager()
    team_scope = "dataset__team"
    audit_fields = ("dataset_id", "version", "file", "format", "sha256", "size_bytes", "row_count", "source")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["dataset", "version"], name="unique_dataset_version_number"),
            # Numbers run 1..n (issue 2); 0 would read as "no version".
            models.CheckConstraint(
                condition=Q(version__gte=1),
                name="dataset_version_number_from_1",
                violation_error_message="version numbers start at 1",
            ),
            models.CheckConstraint(
                condition=Q(sha256__regex=SHA256_HEX),
                name="dataset_version_sha256_is_hex",
                violation_error_message="sha256 must be 64 lowercase hex digits",
            ),
        ]
        ordering = ["dataset__name", "-version"]

    # lineage.nodes.visible_nodes labels hundreds of nodes from these columns, without instances.
    lineage_label_columns = ("dataset__name", "version")
    lineage_url_name = "dataset_version_detail"

    def __str__(self) -> str:
        return self.lineage_label(self.dataset.name, self.version)

    def get_absolute_url(self) -> str:
        return reverse(self.lineage_url_name, args=[self.pk])

    @staticmethod
    def lineage_label(dataset_name: str, version: int) -> str:
        return f"{dataset_name} v{version}"

    def clean(self) -> None:
        """The schema lists each column once, by name, in file order (``datafiles.summarize``)."""
        names = [column.get("name") if isinstance(column, dict) else None for column in self.schema or []]
        if None in names or len(set(names)) != len(names):
            raise ValidationError({"schema": "each column appears once, as {name, dtype}"})

    @property
    def team(self) -> Team:
        return self.dataset.team

    @property
    def column_names(self) -> list[str]:
        return [column["name"] for column in self.schema]

    @property
    def path(self):
        """A local, readable path of the version's file (``governance.storage.local_path``).
        ArtifactErased once the version is erased; ArtifactCorrupt/ArtifactMissing when the
        store cannot give it back as registered."""
        from governance import storage

        if self.erased_at is not None:
            raise storage.ArtifactErased(
                self.file, f"{self} was erased on {self.erased_at:%Y-%m-%d %H:%M} UTC (GDPR Art. 17)"
            )
        return storage.local_path(self.file)

    def iter_frames(
        self,
        where: dict | None = None,
        *,
        columns: list[str] | None = None,
        chunk_rows: int | None = None,
        row_groups: list[int] | None = None,
    ) -> "Iterator[pd.DataFrame]":
        """The version's rows streamed in chunks of ``chunk_rows`` (``STEWARD_DATA_CHUNK_ROWS``)
        rows, cast to its stored schema (``datafiles.iter_frames``), each chunk filtered by the row
        filter ``where``; only ``columns`` (and the filter's) when given. At least one chunk, empty
        when every row is filtered out. ``row_groups``: only these row groups of a Parquet file.
        Raises RowFilterError / DataFileError as it reads, and
        what ``path`` raises. Memory: one chunk, whatever the file's length (issue 11)."""
        from governance import datafiles

        where = datafiles.check_where(where, self.column_names) if where else {}
        wanted = None if columns is None else list(dict.fromkeys([*columns, *where]))
        last = None
        for chunk in datafiles.iter_frames(
            self.path,
            self.format,
            self.original_filename or self.file,
            columns=wanted,
            chunk_rows=chunk_rows or settings.STEWARD_DATA_CHUNK_ROWS,
            dtypes=datafiles.dtypes_of(self.schema),
            row_groups=row_groups,
        ):
            last = datafiles.apply_where(chunk, where) if where else chunk
            if len(last):
                yield last
                last = None
        if last is not None:  # every row filtered out: one empty chunk with the columns
            yield last


class Tier(models.TextChoices):
    HOT = "hot", "Hot"
    COLD = "cold", "Cold (compressed; restored on first read)"


class StoredObject(models.Model):
    """One object of the artifact store in managed mode (issue 12, ``governance.storage``): the
    content's sha256 and size, where it was put, and its data key wrapped by a key-encryption
    key (empty when stored unencrypted). Erasure clears the wrapped key (crypto-shredding); the
    row stays, so what was stored, and when it was destroyed, can still be proven."""

    key = models.CharField(
        max_length=500, unique=True, help_text="Path-like key in the store (kind/ab/sha256.suffix)."
    )
    sha256 = models.CharField(max_length=64)
    size_bytes = models.PositiveBigIntegerField()
    is_directory = models.BooleanField(default=False)
    location = models.CharField(max_length=500, blank=True, help_text="The backend it was put in.")
    kek_id = models.CharField(
        max_length=64, blank=True, help_text="The key-encryption key that wraps its data key."
    )
    wrapped_key = models.BinaryField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    shredded_at = models.DateTimeField(null=True, blank=True)
    integrity_failures = models.PositiveIntegerField(default=0)
    last_integrity_failure = models.CharField(max_length=500, blank=True)
    # Tiering (issue 12, ``governance.storage.move_to_cold``): a cold object lives gzip-compressed
    # in the cold store (``STEWARD_ARTIFACT_COLD_URL``) and nowhere hot; the first read restores it.
    tier = models.CharField(max_length=8, choices=Tier.choices, default=Tier.HOT)
    last_read_at = models.DateTimeField(
        null=True, blank=True, help_text="Last time a reader asked for it (to the hour); null: never read."
    )
    cold_size_bytes = models.PositiveBigIntegerField(
        null=True, blank=True, help_text="Its compressed size in the cold store (while cold)."
    )
    moved_to_cold_at = models.DateTimeField(null=True, blank=True)
    restored_at = models.DateTimeField(null=True, blank=True)
    last_restore_ms = models.PositiveIntegerField(
        null=True, blank=True, help_text="How long the last restore from the cold tier took."
    )

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(tier__in=["hot", "cold"]),
                name="stored_object_tier_is_known",
                violation_error_message="unknown storage tier",
            ),
        ]

    def __str__(self) -> str:
        return self.key

    @property
    def is_cold(self) -> bool:
        return self.tier == Tier.COLD

    @property
    def unused_since(self):
        """When it was last read, or stored when never read: what ``cold_after_days`` counts from."""
        return self.last_read_at or self.created_at


class PiiScan(models.Model):
    """The personal-data scan of one dataset version (issue 12): queued when the version is
    registered, run by a background task on a bounded sample (``governance.pii.scan_frame``),
    done with its report or failed with the reason. Written only by ``actions.pii``; each run's
    outcome is audited (``pii.scan``). A version without a done scan has unresolved PII."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    dataset_version = models.OneToOneField(DatasetVersion, on_delete=models.PROTECT, related_name="pii_scan")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    reason = models.TextField(blank=True, help_text="Why the scan failed.")
    report = models.JSONField(
        default=dict, blank=True, help_text="governance.pii.scan_frame's report: findings, k-anonymity, ..."
    )
    rows_scanned = models.PositiveBigIntegerField(null=True, blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = RestrictedQuerySet.as_manager()
    team_scope = "dataset_version__dataset__team"
    audit_fields = ("dataset_version_id", "status", "reason", "rows_scanned")

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=["queued", "running", "done", "failed"]),
                name="pii_scan_status_is_known",
                violation_error_message="unknown PII scan status",
            ),
            models.CheckConstraint(
                condition=~Q(status="failed") | ~Q(reason=""),
                name="pii_scan_failure_has_reason",
                violation_error_message="a failed PII scan says why",
            ),
        ]

    def __str__(self) -> str:
        return f"PII scan of {self.dataset_version}"

    @property
    def team(self) -> Team:
        return self.dataset_version.dataset.team

    @property
    def findings(self) -> list[dict]:
        return list((self.report or {}).get("findings", []))


class PiiPolicy(models.Model):
    """What a team lets jobs do with each kind of personal data (issue 12): ``rules`` maps a
    kind (``governance.pii.ALL_KINDS``) or ``"default"`` to ``block`` or ``allow``. No row:
    everything is allowed (as before PII scans existed). Set by ``actions.pii.do_set_pii_policy``."""

    team = models.OneToOneField(Team, on_delete=models.PROTECT, related_name="pii_policy")
    rules = models.JSONField(default=dict, help_text='{"default": "allow", "us_ssn": "block", ...}')
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    updated_at = models.DateTimeField(default=timezone.now)

    objects = RestrictedQuerySet.as_manager()
    team_scope = "team"
    audit_fields = ("team_id", "rules")

    def __str__(self) -> str:
        return f"PII policy of {self.team.name}"


class RetentionKind(models.TextChoices):
    """What a retention rule applies to. Dataset versions are ``datasets`` when uploaded or
    registered from a path, ``predictions`` when a job wrote them (inference outputs, a code
    run's declared outputs: ``DatasetVersion.Source.JOB``); ``reports`` are drift checks'
    evidently reports (monitoring registers them: ``actions.retention.RetentionSubject``);
    ``logs`` are jobs' output logs (runners registers them; rows in the database, so they have
    no cold tier, only deletion)."""

    DATASETS = "datasets", "Datasets"
    PREDICTIONS = "predictions", "Predictions (job outputs)"
    REPORTS = "reports", "Drift reports"
    LOGS = "logs", "Job logs"


# EU AI Act Art. 12 and Art. 19(1): logs of a high-risk system are kept at least six months.
AUDIT_EVENTS_MIN_DAYS = 183


class RetentionPolicy(models.Model):
    """A team's retention (issue 12): per kind, days unused before its artifacts move to the
    cold tier and days after registration before they are deleted (``RetentionRule``), and how
    long its audit events are kept (never under ``AUDIT_EVENTS_MIN_DAYS``; null: for ever).
    No row: everything is kept hot for ever. Set by ``actions.retention.do_set_retention_policy``;
    applied daily by ``actions.retention.apply_retention``."""

    team = models.OneToOneField(Team, on_delete=models.PROTECT, related_name="retention_policy")
    audit_events_days = models.PositiveIntegerField(
        null=True, blank=True, help_text="Days audit events are kept (at least 183); null: for ever."
    )
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    updated_at = models.DateTimeField(default=timezone.now)

    objects = RestrictedQuerySet.as_manager()
    team_scope = "team"
    audit_fields = ("team_id", "audit_events_days")

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(audit_events_days__isnull=True) | Q(audit_events_days__gte=AUDIT_EVENTS_MIN_DAYS),
                name="retention_audit_events_at_least_six_months",
                violation_error_message="audit events are kept at least 183 days (EU AI Act Art. 12)",
            ),
        ]

    def __str__(self) -> str:
        return f"retention policy of {self.team.name}"

    def rules_by_kind(self) -> dict[str, dict[str, int | None]]:
        """``{kind: {"cold_after_days": n | None, "delete_after_days": m | None}}``."""
        return {
            rule.kind: {"cold_after_days": rule.cold_after_days, "delete_after_days": rule.delete_after_days}
            for rule in sorted(self.rules.all(), key=lambda rule: rule.kind)
        }


class RetentionRule(models.Model):
    """One kind's periods in a team's ``RetentionPolicy``; null days: never."""

    policy = models.ForeignKey(RetentionPolicy, on_delete=models.CASCADE, related_name="rules")
    kind = models.CharField(max_length=16, choices=RetentionKind.choices)
    cold_after_days = models.PositiveIntegerField(null=True, blank=True)
    delete_after_days = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["policy", "kind"], name="unique_retention_rule_kind"),
            models.CheckConstraint(
                condition=Q(cold_after_days__isnull=True) | Q(cold_after_days__gte=1),
                name="retention_cold_after_at_least_a_day",
            ),
            models.CheckConstraint(
                condition=Q(delete_after_days__isnull=True) | Q(delete_after_days__gte=1),
                name="retention_delete_after_at_least_a_day",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind}: cold after {self.cold_after_days}, delete after {self.delete_after_days}"


class RegisteredModel(models.Model):
    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="registered_models")
    name = models.CharField(max_length=200)
    # governance.names.name_key(name); unique per team (no cross-team existence oracle).
    name_key = models.CharField(max_length=200, db_index=True)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="owned_models")
    description = models.TextField(blank=True)
    tags = models.JSONField(default=dict, blank=True, help_text="MLflow-style tags: {key: value}, strings.")
    archived_at = models.DateTimeField(null=True, blank=True)
    # Soft delete: the row stays for the audit trail, jobs and lineage; the name is free again.
    deleted_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now, db_index=True)

    objects = RestrictedQuerySet.as_manager()
    team_scope = "team"
    audit_fields = ("name", "team_id", "owner_id", "description", "tags", "archived_at", "deleted_at")

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["team", "name_key"],
                condition=Q(deleted_at__isnull=True),
                name="unique_model_name_per_team",
            ),
        ]
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("model_detail", args=[self.pk])


class ModelVersion(models.Model):
    """An immutable trained artifact with its metrics, signature and the run that produced it."""

    class Status(models.TextChoices):
        READY = "ready", "Ready"
        ARCHIVED = "archived", "Archived"
        # Soft delete (MLflow's semantics): the number is never reused and the row stays for the
        # audit trail and lineage, but it is gone from lists, searches and aliases.
        DELETED = "deleted", "Deleted"

    class Flavor(models.TextChoices):
        STEWARD_TABULAR = "steward_tabular", "Steward tabular (torch state dict + preprocessing)"
        PYTORCH_STATE_DICT = "pytorch_state_dict", "PyTorch state dict"
        MLFLOW_MODEL = "mlflow_model", "MLflow model directory (MLmodel)"
        ONNX = "onnx", "ONNX"
        UNKNOWN = "unknown", "Unknown"

    model = models.ForeignKey(RegisteredModel, on_delete=models.PROTECT, related_name="versions")
    version = models.PositiveIntegerField()
    artifact = models.CharField(max_length=500, help_text="Path relative to the artifact root.")
    sha256 = models.CharField(max_length=64)
    size_bytes = models.PositiveBigIntegerField()
    metrics = models.JSONField(default=dict)
    signature = models.JSONField(
        default=dict, help_text='{"task": ..., "target": ..., "features": [...], "categorical": [...]}'
    )
    training_spec = models.JSONField(default=dict)
    training_dataset_version = models.ForeignKey(
        DatasetVersion, null=True, on_delete=models.PROTECT, related_name="trained_model_versions"
    )
    # The run lives in runners/, which governance must not import; lineage holds the typed edge.
    source_job_id = models.PositiveBigIntegerField(null=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.READY)
    flavor = models.CharField(max_length=32, choices=Flavor.choices, default=Flavor.STEWARD_TABULAR)
    flavor_details = models.JSONField(
        default=dict, blank=True, help_text="What detection read: MLmodel flavors, loader module, files."
    )
    executes_code = models.BooleanField(
        default=False,
        help_text="Loading it runs code (pickle/cloudpickle): only ever loaded inside a job's subprocess.",
    )
    is_directory = models.BooleanField(default=False, help_text="The artifact is a directory, not one file.")
    source = models.CharField(
        max_length=1000,
        blank=True,
        help_text="Where it came from: an upload, a path, an MLflow URI.",
    )
    description = models.TextField(blank=True)
    # The model card's Annex IV items the owner writes (issue 12): per version, since a retrained
    # version may serve another purpose or carry other limits than the one before it.
    intended_purpose = models.TextField(blank=True, help_text="What this version is for, and for whom.")
    known_limitations = models.TextField(
        blank=True, help_text="Where it must not be used, known failure modes, data it was not trained on."
    )
    tags = models.JSONField(default=dict, blank=True, help_text="MLflow-style tags: {key: value}, strings.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now, db_index=True)

    objects = RestrictedQuerySet.as_manager()
    team_scope = "model__team"
    audit_fields = (
        "model_id",
        "version",
        "artifact",
        "sha256",
        "metrics",
        "training_dataset_version_id",
        "source_job_id",
        "status",
        "flavor",
        "executes_code",
        "description",
        "intended_purpose",
        "known_limitations",
        "tags",
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["model", "version"], name="unique_model_version_number"),
            models.CheckConstraint(
                condition=Q(version__gte=1),
                name="model_version_number_from_1",
                violation_error_message="version numbers start at 1",
            ),
            models.CheckConstraint(
                condition=Q(sha256__regex=SHA256_HEX),
                name="model_version_sha256_is_hex",
                violation_error_message="sha256 must be 64 lowercase hex digits",
            ),
        ]
        ordering = ["model__name", "-version"]

    # lineage.nodes.visible_nodes labels hundreds of nodes from these columns, without instances.
    lineage_label_columns = ("model__name", "version")
    lineage_url_name = "model_version_detail"

    def __str__(self) -> str:
        return self.lineage_label(self.model.name, self.version)

    def get_absolute_url(self) -> str:
        return reverse(self.lineage_url_name, args=[self.pk])

    @staticmethod
    def lineage_label(model_name: str, version: int) -> str:
        return f"{model_name} v{version}"

    @property
    def team(self) -> Team:
        return self.model.team

    @property
    def path(self):
        """A local, readable path of the artifact (a file or a directory;
        ``governance.storage.local_path``)."""
        from governance import storage

        return storage.local_path(self.artifact)


class Evaluation(models.Model):
    """One evaluation of a model version on a dataset version (issue 15): the evaluation engine's
    spec and results (``runners.evaluation``: ``EvaluationSpec.to_dict()``,
    ``EvaluationResult.to_dict()``), and, when a champion held the target alias, the champion's
    results on the same rows and the differences (``Comparison.to_dict()["differences"]``).

    Written only by ``actions.evaluations.do_record_evaluation``; immutable after. A self-reported
    evaluation (logged with the MLflow client) is shown but never satisfies a promotion gate.
    """

    class Source(models.TextChoices):
        STEWARD = "steward", "Evaluated by Steward"
        SELF_REPORTED = "self_reported", "Self-reported"

    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="evaluations")
    model_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="evaluations")
    dataset_version = models.ForeignKey(
        DatasetVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="evaluations"
    )
    # The evaluation job lives in runners/, which governance must not import (as source_job_id).
    job_id = models.PositiveBigIntegerField(null=True, blank=True)
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.STEWARD)
    spec = models.JSONField(default=dict, help_text="The EvaluationSpec as JSON (EvaluationSpec.to_dict()).")
    results = models.JSONField(help_text="EvaluationResult.to_dict(): metrics with intervals, curves, ...")
    champion_version = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="champion_evaluations"
    )
    champion_results = models.JSONField(null=True, blank=True)
    comparison = models.JSONField(
        null=True,
        blank=True,
        help_text='Per metric: {"candidate", "champion", "difference", "ci_low", "ci_high", "is_worse", ..}.',
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    objects = RestrictedQuerySet.as_manager()
    team_scope = "team"
    audit_fields = (
        "team_id",
        "model_version_id",
        "dataset_version_id",
        "job_id",
        "source",
        "champion_version_id",
    )

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(source__in=["steward", "self_reported"]),
                name="evaluation_source_is_known",
                violation_error_message="unknown evaluation source",
            ),
            # Steward evaluates on a registered dataset version; a self-reported one may name none.
            models.CheckConstraint(
                condition=Q(source="self_reported") | Q(dataset_version__isnull=False),
                name="evaluation_by_steward_has_dataset_version",
                violation_error_message="an evaluation by Steward names its dataset version",
            ),
            models.CheckConstraint(
                condition=Q(champion_version__isnull=True) | ~Q(champion_version=F("model_version")),
                name="evaluation_champion_is_another_version",
                violation_error_message="a version is not its own champion",
            ),
        ]
        indexes = [models.Index(fields=["model_version", "-created_at"], name="evaluation_version_idx")]
        ordering = ["-created_at", "-id"]

    # lineage.nodes.visible_nodes labels nodes from these columns, without instances.
    lineage_label_columns = ("pk", "model_version__model__name", "model_version__version")
    lineage_url_name = "evaluation_detail"

    def __str__(self) -> str:
        return self.lineage_label(self.pk, self.model_version.model.name, self.model_version.version)

    def get_absolute_url(self) -> str:
        return reverse(self.lineage_url_name, args=[self.pk])

    @staticmethod
    def lineage_label(pk: int | None, model_name: str, version: int) -> str:
        return f"Evaluation #{pk} of {ModelVersion.lineage_label(model_name, version)}"

    @property
    def is_self_reported(self) -> bool:
        return self.source == self.Source.SELF_REPORTED

    @property
    def primary_metric(self) -> str | None:
        """The primary metric's name as the engine reported it (None for a self-reported one
        that did not say)."""
        value = self.results.get("primary_metric") if isinstance(self.results, dict) else None
        return value if isinstance(value, str) else None


class AuditEventQuerySet(RestrictedQuerySet):
    def update(self, **kwargs):
        raise PermissionError("audit events are append-only")

    def delete(self):
        raise PermissionError("audit events are append-only")


class AuditEvent(models.Model):
    """Who (on behalf of whom) did what to which object, with before/after snapshots.

    Written only by ``governance.audit.record_audit_event`` inside the transaction of the change.
    """

    timestamp = models.DateTimeField(default=timezone.now, db_index=True)
    # PROTECT, not SET_NULL: deleting a user must not rewrite the events (and their leaves) that
    # name them; erase their personal details with governance.audit.erasure.do_erase_personal_data instead.
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.PROTECT, related_name="+")
    # Text snapshots survive renames of the user rows.
    actor_label = models.CharField(max_length=150)
    on_behalf_of = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.PROTECT, related_name="+"
    )
    on_behalf_of_label = models.CharField(max_length=150, blank=True)
    action = models.CharField(max_length=64, db_index=True)
    object_type = models.CharField(max_length=64, db_index=True)
    object_id = models.CharField(max_length=64, db_index=True)
    object_repr = models.CharField(max_length=300)
    team = models.ForeignKey(Team, null=True, on_delete=models.PROTECT, related_name="+")
    before = models.JSONField(null=True)
    after = models.JSONField(null=True)
    request_id = models.CharField(max_length=64, blank=True)
    task_id = models.CharField(max_length=255, blank=True)

    objects = AuditEventQuerySet.as_manager()
    team_scope = "team"

    class Meta:
        ordering = ["-timestamp", "-id"]
        indexes = [models.Index(fields=["object_type", "object_id"], name="audit_object_idx")]

    def __str__(self) -> str:
        return f"{self.actor_label} {self.action} {self.object_repr}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise PermissionError("audit events are append-only")
        super().save(*args, **kwargs)

    def get_absolute_url(self) -> str:
        return reverse("audit_event_detail", args=[self.pk])

    # The page of each kind of object an event can name, for links from the trail.
    OBJECT_PAGES = {
        "dataset": "dataset_detail",
        "datasetversion": "dataset_version_detail",
        "registeredmodel": "model_detail",
        "modelversion": "model_version_detail",
        "job": "job_detail",
        "driftcheck": "drift_check_detail",
        "alert": "alert_detail",
        "evaluation": "evaluation_detail",
    }

    def object_url(self) -> str | None:
        """The page of the object the event names, when it has one (it may since be deleted:
        the page then answers 404)."""
        page = self.OBJECT_PAGES.get(self.object_type)
        return reverse(page, args=[int(self.object_id)]) if page and self.object_id.isdigit() else None

    def role_change(self) -> str:
        """ "viewer → model_owner" for a grant that changed a role ("" otherwise): a change of
        role is recorded as a grant with the old role before it."""
        if self.action == "membership.grant" and self.before and self.after and "role" in self.before:
            return f"{self.before['role']} → {self.after.get('role')}"
        return ""

    def delete(self, *args, **kwargs):
        raise PermissionError("audit events are append-only")


class AuditLeaf(models.Model):
    """An audit event's position in the Merkle tree (RFC 9162), assigned by the sequencer.

    Append-only like the events. Leaf indexes are contiguous from 0 in commit order as the
    sequencer sees it, independent of event ids (which need not commit in order).
    """

    leaf_index = models.PositiveBigIntegerField(primary_key=True)
    event = models.OneToOneField(AuditEvent, on_delete=models.PROTECT, related_name="leaf")
    leaf_hash = models.CharField(max_length=64, help_text="Hex SHA-256(0x00 || canonical JSON of the leaf).")
    personal_commitment = models.CharField(
        max_length=64, help_text="The leaf's commitment to the personal details; outlives their erasure."
    )
    sequenced_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["leaf_index"]

    def __str__(self) -> str:
        return f"leaf {self.leaf_index} = event {self.event_id}"


class AuditTreeNode(models.Model):
    """The hash of a complete subtree of 2**level leaves starting at leaf index * 2**level.

    A complete subtree never changes, so each node is written once by the sequencer; proofs
    read O(log n) of them instead of rehashing the tree.
    """

    level = models.PositiveSmallIntegerField()
    index = models.PositiveBigIntegerField()
    hash = models.CharField(max_length=64)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["level", "index"], name="unique_audit_tree_node")]

    def __str__(self) -> str:
        return f"node ({self.level}, {self.index})"


class AuditCheckpoint(models.Model):
    """A signed statement of the tree: (size, root hash, time), Ed25519 over canonical JSON."""

    tree_size = models.PositiveBigIntegerField(unique=True)
    root_hash = models.CharField(max_length=64)
    timestamp = models.DateTimeField()
    signature = models.CharField(max_length=128, help_text="Base64 Ed25519 signature of the checkpoint body.")
    key_id = models.CharField(max_length=64, help_text="Hex SHA-256 of the signing public key (PEM).")

    class Meta:
        ordering = ["-tree_size"]

    def __str__(self) -> str:
        return f"checkpoint at tree size {self.tree_size}"


class AuditPersonalData(models.Model):
    """The salt of an event leaf's commitment to its personal details, and the event's tag.

    The leaf hashes a salted commitment to the personal fields instead of the fields, so
    erasing a person (deleting this salt, redacting the event's personal fields) leaves the tree
    and every proof intact. The tag (``governance.audit.keys.event_tag``) is an HMAC, under a key derived
    from the signing key, of the hash of the leaf the event will get (its id, every field, and
    through this salt its personal details): the sequencer only gives leaves to events that
    carry a valid one, so a row inserted, copied or altered with database access alone is
    refused instead of notarised.
    """

    event = models.OneToOneField(
        AuditEvent, primary_key=True, on_delete=models.PROTECT, related_name="personal_data"
    )
    salt = models.CharField(max_length=64, unique=True, help_text="Hex, 32 random bytes.")
    tag = models.CharField(max_length=64, blank=True, help_text="Hex HMAC-SHA256; see audit_tree.event_tag.")

    def __str__(self) -> str:
        return f"personal data of event {self.event_id}"


class AuditRejection(models.Model):
    """An event the sequencer refused to give a leaf: its tag is missing or wrong, so Steward did
    not write it as it stands (a row inserted or altered in the database). Kept, append-only, so
    that ``audit_verify`` and the audit trail keep reporting it."""

    event = models.OneToOneField(
        AuditEvent, primary_key=True, on_delete=models.PROTECT, related_name="rejection"
    )
    reason = models.CharField(max_length=200)
    rejected_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"event {self.event_id} refused: {self.reason}"


class TokenScope(models.TextChoices):
    USER = "user", "Everything its user may do"
    JOB = "job", "One code run"
    PREDICT = "predict", "Predict with one model"


class ApiToken(models.Model):
    """A per-user API token, stored as a SHA-256 hash; the secret is shown once at creation."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=12, db_index=True, help_text="First characters, to recognise it.")
    key_hash = models.CharField(max_length=64, unique=True)
    is_read_only = models.BooleanField(default=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    # What the token may do (issue 17): everything its user may (``user``); only what one code
    # run was given and only to that run (``job``: ``job_id`` is the runners.Job, a plain id as
    # governance imports no other app; made when the run starts, revoked when it ends); or only
    # predict with one model (``predict``: ``registered_model``).
    scope = models.CharField(max_length=8, choices=TokenScope.choices, default=TokenScope.USER)
    job_id = models.PositiveBigIntegerField(null=True, blank=True)
    registered_model = models.ForeignKey(
        "RegisteredModel", null=True, blank=True, on_delete=models.CASCADE, related_name="prediction_tokens"
    )

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(scope__in=TokenScope.values), name="api_token_scope_valid"),
            models.CheckConstraint(
                condition=~Q(scope=TokenScope.JOB) | Q(job_id__isnull=False),
                name="api_token_job_scope_has_job",
            ),
            models.CheckConstraint(
                condition=~Q(scope=TokenScope.PREDICT) | Q(registered_model__isnull=False),
                name="api_token_predict_scope_has_model",
            ),
            models.CheckConstraint(
                condition=Q(key_hash__regex=SHA256_HEX),
                name="api_token_key_hash_is_sha256_hex",
                violation_error_message="key_hash must be a SHA-256 hex digest",
            ),
            models.CheckConstraint(
                condition=Q(revoked_at__isnull=True) | Q(revoked_at__gte=F("created_at")),
                name="api_token_revoked_after_creation",
                violation_error_message="a token cannot be revoked before it was created",
            ),
        ]
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…) of {self.user}"

    def clean(self) -> None:
        """A token expires after it was created (``do_create_api_token`` refuses a past expiry).

        Not a database constraint: an expiry is a point in time, and tests move it into the past.
        """
        if self.expires_at is not None and self.created_at and self.expires_at <= self.created_at:
            raise ValidationError({"expires_at": "the expiry must be after the token's creation"})


class ModelAlias(models.Model):
    """A movable name (``production``, ``staging``) on exactly one version of a model."""

    model = models.ForeignKey(RegisteredModel, on_delete=models.PROTECT, related_name="aliases")
    # MLflow's alias rule (letters, digits, _ and -; not "latest", not "v<digits>"), checked in the action.
    name = models.CharField(max_length=255)
    model_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="aliases")
    updated_at = models.DateTimeField(default=timezone.now)

    objects = RestrictedQuerySet.as_manager()
    team_scope = "model__team"
    audit_fields = ("model_id", "name", "model_version_id")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["model", "name"], name="one_version_per_alias")]
        ordering = ["model__name", "name"]

    def __str__(self) -> str:
        return f"{self.model.name}@{self.name}"


class PromotionGatePolicy(models.Model):
    """The conditions a version must meet before an approver moves one of the team's protected
    aliases to it (issue 15's promotion gates): ``conditions`` is a list of ``{"kind", ...}``
    checked by ``actions.gates.check_conditions`` and evaluated by ``actions.gates.gate_results``.

    A row per (team, alias) rather than a JSON field on Team: each policy has its own audit
    trail, API row and page, is restricted like every team-owned row, and the protected list
    (four eyes) stays a separate decision from what a version must show (gates). No row: the
    alias needs four eyes only, exactly as before gates existed.
    """

    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="gate_policies")
    alias = models.CharField(max_length=255)
    # governance.names.name_key(alias), unique per team: "Production" and "production" are one
    # protected alias (actions.checks.is_protected_alias), so they can have only one policy.
    alias_key = models.CharField(max_length=255)
    conditions = models.JSONField(
        default=list, help_text='[{"kind": "metric_bound", "metric": "f1", "min": 0.5}, ...]'
    )
    # The evaluation a promotion request starts when the candidate has none young enough (issue
    # 15): {"dataset": <dataset id>, "task", "target", "positive_label"?, "sensitive_attributes"?,
    # "slice_columns"?}, checked by ``actions.gates.check_evaluation_setting``; {} starts none.
    evaluation = models.JSONField(
        default=dict,
        blank=True,
        help_text='{"dataset": 3, "task": "classification", "target": "label", ...} or {} (none).',
    )
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    updated_at = models.DateTimeField(default=timezone.now)

    objects = RestrictedQuerySet.as_manager()
    team_scope = "team"
    audit_fields = ("team_id", "alias", "conditions")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["team", "alias_key"], name="one_gate_policy_per_alias_key")
        ]
        ordering = ["team__name", "alias"]

    def __str__(self) -> str:
        return f"Gates of {self.alias} in {self.team.name}"

    def get_absolute_url(self) -> str:
        return reverse("gate_policy_detail", args=[self.pk])


class PromotionRequest(models.Model):
    """A request to move an alias to a version; approved by an approver other than the requester."""

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        APPROVED = "approved", "Approved"
        REJECTED = "rejected", "Rejected"
        CANCELLED = "cancelled", "Cancelled"

    model_version = models.ForeignKey(
        ModelVersion, on_delete=models.PROTECT, related_name="promotion_requests"
    )
    alias = models.CharField(max_length=255, default="production")
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    reason = models.TextField(blank=True)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    decision_reason = models.TextField(blank=True)
    acknowledged_alerts = models.JSONField(
        default=list,
        blank=True,
        help_text='The unresolved critical alerts the requester acknowledged: [{"id", "title", "state"}].',
    )
    approvers_notified_at = models.DateTimeField(
        null=True, blank=True, help_text="When the team's approvers were emailed (actions.promotions)."
    )
    # Promotion gates (issue 15): what the gates said when the request was made, then at each
    # decision; the evaluation they read. An override of failing gates is recorded by a first
    # approver with a written reason and moves the alias only when a second approver approves.
    gate_results = models.JSONField(
        default=list,
        blank=True,
        help_text='[{"kind", "passed", "detail"}] at the last check (actions.gates).',
    )
    evaluation = models.ForeignKey(
        "Evaluation", null=True, blank=True, on_delete=models.PROTECT, related_name="promotion_requests"
    )
    override_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    override_reason = models.TextField(blank=True)
    override_at = models.DateTimeField(null=True, blank=True)
    # The evaluation job the request started (its gate policy's ``evaluation`` setting, issue 15):
    # a plain id, as ModelVersion.source_job_id (governance does not import runners), or why it
    # could not be started.
    evaluation_job_id = models.PositiveBigIntegerField(null=True, blank=True)
    evaluation_job_error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    decided_at = models.DateTimeField(null=True, blank=True)

    objects = RestrictedQuerySet.as_manager()
    team_scope = "model_version__model__team"
    audit_fields = (
        "model_version_id",
        "alias",
        "state",
        "reason",
        "requested_by_id",
        "decided_by_id",
        "decision_reason",
        "acknowledged_alerts",
    )
    # Added to its audit snapshots only when the alias has gates (actions.promotions), so a team
    # without a gate policy records exactly what it did before issue 15.
    gate_audit_fields = ("gate_results", "evaluation_id", "override_by_id", "override_reason")

    class Meta:
        constraints = [
            # An override of failing gates needs two approvers besides the requester (issue 15).
            models.CheckConstraint(
                condition=Q(override_by__isnull=True) | ~Q(override_by=F("requested_by")),
                name="promotion_override_not_by_requester",
                violation_error_message="the requester may not override the gates of their own request",
            ),
            models.CheckConstraint(
                condition=~Q(state="approved")
                | Q(override_by__isnull=True)
                | ~Q(decided_by=F("override_by")),
                name="promotion_override_second_approver",
                violation_error_message="a second approver, not the one who overrode, approves an override",
            ),
            # Pending until decided: who decided and when are set exactly when it is not pending.
            models.CheckConstraint(
                condition=(Q(state="pending") & Q(decided_by__isnull=True) & Q(decided_at__isnull=True))
                | (~Q(state="pending") & Q(decided_by__isnull=False) & Q(decided_at__isnull=False)),
                name="promotion_decided_iff_not_pending",
                violation_error_message="a decided request names who decided and when, a pending one not",
            ),
            # Four eyes (issue 3): the requester never approves or rejects; only they cancel.
            models.CheckConstraint(
                condition=~Q(state__in=["approved", "rejected"]) | ~Q(decided_by=F("requested_by")),
                name="promotion_four_eyes",
                violation_error_message="the requester may not decide their own promotion request",
            ),
            models.CheckConstraint(
                condition=~Q(state="cancelled") | Q(decided_by=F("requested_by")),
                name="promotion_cancelled_by_requester",
                violation_error_message="only the requester may cancel a promotion request",
            ),
        ]
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"Promote {self.model_version} to {self.alias}"
