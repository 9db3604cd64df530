import datetime
import json
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import Manager, QuerySet
from django.utils import timezone
from rest_framework import serializers

from governance.api.base import RestrictedPrimaryKeyRelatedField, UsernameField
from governance.models import (
    AuditEvent,
    Dataset,
    DatasetVersion,
    ModelAlias,
    ModelVersion,
    PiiScan,
    RegisteredModel,
    Team,
)
from governance.permissions import VIEW, restrict

# Names are checked by the name rule in the actions, never trimmed here: "model " is refused, not
# silently stored as "model" (issue 9).
UNTRIMMED = {"trim_whitespace": False}


class TeamSerializer(serializers.ModelSerializer):
    class Meta:
        model = Team
        fields = ["id", "name", "slug", "description", "protected_aliases", "created_at"]
        read_only_fields = ["slug", "protected_aliases", "created_at"]
        extra_kwargs = {"name": UNTRIMMED}


class ProtectedAliasesSerializer(serializers.Serializer):
    protected_aliases = serializers.ListField(
        child=serializers.CharField(trim_whitespace=False),
        allow_empty=True,
        max_length=100,
        help_text="Alias names that move only through an approved promotion request.",
    )


class StrictSerializer(serializers.Serializer):
    """A write body whose unknown keys are a 400 naming them (a PATCH of ``owner`` or ``team`` is
    refused, not silently ignored)."""

    def to_internal_value(self, data):
        if hasattr(data, "keys"):
            unknown = sorted(set(data.keys()) - set(self.fields))
            if unknown:
                raise serializers.ValidationError(
                    {key: ["not a field that can be changed here"] for key in unknown}
                )
        return super().to_internal_value(data)


class TagsField(serializers.JSONField):
    """``{key: value}`` tags; a JSON object, or its JSON text in a multipart form. Limits are the
    action's (``governance.limits``)."""

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if isinstance(value, str):
            try:
                value = json.loads(value) if value.strip() else {}
            except ValueError as exc:
                raise serializers.ValidationError("tags are a JSON object") from exc
        if not isinstance(value, dict):
            raise serializers.ValidationError("tags are a JSON object of string keys and string values")
        return value


class DatasetSerializer(serializers.ModelSerializer):
    team = RestrictedPrimaryKeyRelatedField(queryset=Team.objects.all())
    created_by = UsernameField()
    latest_version = serializers.SerializerMethodField()

    class Meta:
        model = Dataset
        fields = [
            "id",
            "team",
            "name",
            "description",
            "is_schema_locked",
            "created_by",
            "created_at",
            "latest_version",
        ]
        read_only_fields = ["created_by", "created_at", "is_schema_locked"]
        extra_kwargs = {"name": UNTRIMMED, "description": UNTRIMMED}

    def get_latest_version(self, dataset) -> int | None:
        return getattr(dataset, "latest_version", None)


class DatasetVersionSerializer(serializers.ModelSerializer):
    dataset_name = serializers.CharField(source="dataset.name", read_only=True)
    created_by = UsernameField()
    erased_by = UsernameField()

    class Meta:
        model = DatasetVersion
        fields = [
            "id",
            "dataset",
            "dataset_name",
            "version",
            "format",
            "original_filename",
            "sha256",
            "size_bytes",
            "row_count",
            "schema",
            "schema_change",
            "source",
            "description",
            "created_by",
            "created_at",
            "erased_at",
            "erased_by",
            "erasure_reason",
            "legal_hold_at",
            "legal_hold_reason",
        ]
        read_only_fields = fields


class DatasetVersionEraseSerializer(StrictSerializer):
    """POST .../erase/: why the version is erased (kept in its audit event)."""

    reason = serializers.CharField(trim_whitespace=False)


class DatasetUpdateSerializer(StrictSerializer):
    """PATCH of a dataset: any of ``description`` and ``is_schema_locked``."""

    description = serializers.CharField(required=False, allow_blank=True, trim_whitespace=False)
    is_schema_locked = serializers.BooleanField(required=False)


class DatasetVersionCreateSerializer(serializers.Serializer):
    """Upload ``file`` (multipart) or name a server-side ``path`` under the import roots."""

    dataset = RestrictedPrimaryKeyRelatedField(queryset=Dataset.objects.all())
    file = serializers.FileField(required=False, allow_empty_file=True)
    path = serializers.CharField(required=False, max_length=1000)
    description = serializers.CharField(required=False, allow_blank=True, default="")

    def validate(self, attrs):
        if bool(attrs.get("file")) == bool(attrs.get("path")):
            raise serializers.ValidationError("send exactly one of file (an upload) or path (a server file)")
        return attrs


def iso_datetime(value: datetime.datetime | None) -> str | None:
    """``value`` as DRF's ``DateTimeField`` answers it (ISO 8601 in the current time zone, UTC
    written ``Z``), without building a field per value: the registry lists' hot path."""
    if value is None:
        return None
    text = value.astimezone(timezone.get_current_timezone()).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def _rows(data: Iterable[Any] | Manager | QuerySet) -> list[Any]:
    return list(data.all() if isinstance(data, Manager) else data)


class AliasPageSerializer(serializers.ListSerializer):
    """A page of models or versions: their aliases are read in one query for the whole page
    (``child.load_aliases``), then each row is written by the child."""

    def to_representation(self, data: Any) -> list[dict[str, Any]]:
        rows = _rows(data)
        self.child.load_aliases(rows)  # type: ignore[union-attr]
        return [self.child.to_representation(row) for row in rows]  # type: ignore[union-attr]


class _AliasesOfRows:
    """Aliases of a page of rows in one query, kept on each row as ``_api_aliases``.

    Restricted to what the requesting user may view when the serializer has the request (an
    alias is its model's team's, so a visible row's aliases are visible anyway).
    """

    context: dict[str, Any]
    alias_key = ""  # the ModelAlias field naming the row: "model_id" or "model_version_id"

    def _aliases(self) -> QuerySet:
        request = self.context.get("request") if hasattr(self, "context") else None
        queryset = ModelAlias.objects.all()
        return restrict(queryset, request.user, VIEW) if request is not None else queryset

    def load_aliases(self, rows: list[Any]) -> None:
        found: dict[int, list[tuple[str, int]]] = defaultdict(list)
        if rows:
            for key, name, number in (
                self._aliases()
                .filter(**{f"{self.alias_key}__in": [row.pk for row in rows]})
                .order_by("name")
                .values_list(self.alias_key, "name", "model_version__version")
            ):
                found[key].append((name, number))
        for row in rows:
            row._api_aliases = found.get(row.pk, [])

    def aliases_of(self, row: Any) -> list[tuple[str, int]]:
        """``[(alias, version number)]`` of ``row``, by alias name (one query unless its page
        loaded them)."""
        if not hasattr(row, "_api_aliases"):
            self.load_aliases([row])
        return row._api_aliases


class RegisteredModelSerializer(_AliasesOfRows, serializers.ModelSerializer):
    team = RestrictedPrimaryKeyRelatedField(queryset=Team.objects.all())
    owner = serializers.SlugRelatedField(
        slug_field="username", queryset=get_user_model().objects.all(), required=False
    )
    latest_version = serializers.SerializerMethodField()
    aliases = serializers.SerializerMethodField()
    tags = TagsField(required=False, default=dict)
    status = serializers.SerializerMethodField()

    alias_key = "model_id"

    class Meta:
        model = RegisteredModel
        list_serializer_class = AliasPageSerializer
        fields = [
            "id",
            "team",
            "name",
            "owner",
            "description",
            "tags",
            "status",
            "archived_at",
            "created_at",
            "updated_at",
            "latest_version",
            "aliases",
        ]
        read_only_fields = ["created_at", "updated_at", "archived_at"]
        extra_kwargs = {"name": UNTRIMMED, "description": UNTRIMMED}

    def to_representation(self, instance: RegisteredModel) -> dict[str, Any]:
        """The fields above written out (the answer of DRF's generic path, field for field:
        tests/governance/test_api_reads_serializers.py checks it), at a fraction of its cost on
        a page of 1,000 rows."""
        return {
            "id": instance.pk,
            "team": instance.team_id,
            "name": instance.name,
            "owner": instance.owner.username,
            "description": instance.description,
            "tags": instance.tags,
            "status": self.get_status(instance),
            "archived_at": iso_datetime(instance.archived_at),
            "created_at": iso_datetime(instance.created_at),
            "updated_at": iso_datetime(instance.updated_at),
            "latest_version": self.get_latest_version(instance),
            "aliases": self.get_aliases(instance),
        }

    def get_latest_version(self, model) -> int | None:
        return getattr(model, "latest_version", None)

    def get_status(self, model) -> str:
        """``ready`` or ``archived`` (deleted models are not served)."""
        return "archived" if model.archived_at else "ready"

    def get_aliases(self, model) -> dict[str, int]:
        """``{"production": 3, "staging": 4}``: alias -> the version number holding it."""
        return dict(self.aliases_of(model))


class ModelVersionSerializer(_AliasesOfRows, serializers.ModelSerializer):
    model_name = serializers.CharField(source="model.name", read_only=True)
    created_by = UsernameField()
    aliases = serializers.SerializerMethodField()

    alias_key = "model_version_id"

    class Meta:
        model = ModelVersion
        list_serializer_class = AliasPageSerializer
        fields = [
            "id",
            "model",
            "model_name",
            "version",
            "status",
            "sha256",
            "size_bytes",
            "metrics",
            "signature",
            "training_spec",
            "training_dataset_version",
            "source_job_id",
            "flavor",
            "flavor_details",
            "executes_code",
            "is_directory",
            "source",
            "description",
            "intended_purpose",
            "known_limitations",
            "tags",
            "aliases",
            "created_by",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    def to_representation(self, instance: ModelVersion) -> dict[str, Any]:
        """The fields above written out, as ``RegisteredModelSerializer.to_representation``."""
        created_by = instance.created_by
        return {
            "id": instance.pk,
            "model": instance.model_id,
            "model_name": instance.model.name,
            "version": instance.version,
            "status": str(instance.status),
            "sha256": instance.sha256,
            "size_bytes": instance.size_bytes,
            "metrics": instance.metrics,
            "signature": instance.signature,
            "training_spec": instance.training_spec,
            "training_dataset_version": instance.training_dataset_version_id,
            "source_job_id": instance.source_job_id,
            "flavor": str(instance.flavor),
            "flavor_details": instance.flavor_details,
            "executes_code": instance.executes_code,
            "is_directory": instance.is_directory,
            "source": instance.source,
            "description": instance.description,
            "intended_purpose": instance.intended_purpose,
            "known_limitations": instance.known_limitations,
            "tags": instance.tags,
            "aliases": self.get_aliases(instance),
            "created_by": created_by.username if created_by is not None else None,
            "created_at": iso_datetime(instance.created_at),
            "updated_at": iso_datetime(instance.updated_at),
        }

    def get_aliases(self, version) -> list[str]:
        """The aliases (``production``, ``staging``) this version holds."""
        return [name for name, _number in self.aliases_of(version)]


class RegisteredModelUpdateSerializer(StrictSerializer):
    """PATCH of a model: a new ``name`` (a rename) and/or ``description``; tags have their own
    endpoints (``PUT/DELETE .../tags/<key>/``)."""

    name = serializers.CharField(required=False, trim_whitespace=False)
    description = serializers.CharField(required=False, allow_blank=True, trim_whitespace=False)


class ModelVersionCreateSerializer(serializers.Serializer):
    """Register a version of ``model`` from an uploaded ``artifact`` (multipart: a model file, or a
    directory as a .tar, .tar.gz, .tgz or .zip archive) or from a ``source`` (a path under the
    server's import folders, or a URI a resolver serves)."""

    model = RestrictedPrimaryKeyRelatedField(queryset=RegisteredModel.objects.filter(deleted_at__isnull=True))
    artifact = serializers.FileField(required=False, allow_empty_file=True)
    source = serializers.CharField(required=False, max_length=1000)
    description = serializers.CharField(required=False, allow_blank=True, default="", trim_whitespace=False)
    tags = TagsField(required=False, default=dict)

    def validate(self, attrs):
        if bool(attrs.get("artifact")) == bool(attrs.get("source")):
            raise serializers.ValidationError(
                "send exactly one of artifact (an upload) or source (a server path or URI)"
            )
        return attrs


class ModelVersionUpdateSerializer(StrictSerializer):
    """PATCH of a version: its ``description`` and the model card's ``intended_purpose`` and
    ``known_limitations`` (issue 12); at least one of them."""

    description = serializers.CharField(required=False, allow_blank=True, trim_whitespace=False)
    intended_purpose = serializers.CharField(required=False, allow_blank=True, trim_whitespace=False)
    known_limitations = serializers.CharField(required=False, allow_blank=True, trim_whitespace=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if not attrs:
            raise serializers.ValidationError(
                "send at least one of description, intended_purpose, known_limitations"
            )
        return attrs


class TagValueSerializer(serializers.Serializer):
    value = serializers.CharField(allow_blank=True, trim_whitespace=False)


class AliasTargetSerializer(serializers.Serializer):
    version = serializers.IntegerField(min_value=1, help_text="The version number the alias points at.")


class AliasProtectedSerializer(serializers.Serializer):
    detail = serializers.CharField()
    promotion_request = serializers.IntegerField(help_text="The pending request that will move the alias.")
    approvers = serializers.ListField(child=serializers.CharField())


class AuditEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = AuditEvent
        fields = [
            "id",
            "timestamp",
            "actor_label",
            "on_behalf_of_label",
            "action",
            "object_type",
            "object_id",
            "object_repr",
            "team",
            "before",
            "after",
            "request_id",
            "task_id",
        ]
        read_only_fields = fields


class PiiScanSerializer(serializers.ModelSerializer):
    """A dataset version's PII scan (issue 12): status, the reason it failed, the report
    (``governance.pii.scan_frame``: findings with masked examples, k-anonymity) and when."""

    class Meta:
        model = PiiScan
        fields = [
            "id",
            "dataset_version",
            "status",
            "reason",
            "rows_scanned",
            "report",
            "created_at",
            "started_at",
            "finished_at",
        ]
        read_only_fields = fields


class PiiPolicySerializer(serializers.Serializer):
    rules = serializers.JSONField(
        help_text='Kind (or "default") -> "block" or "allow", e.g. {"default": "allow", "us_ssn": "block", '
        '"race_ethnicity": "block"}; no policy allows everything.'
    )


class RetentionPolicySerializer(serializers.Serializer):
    """A team's retention policy (issue 12)."""

    audit_events_days = serializers.IntegerField(
        allow_null=True,
        required=False,
        default=None,
        help_text="Days the team's audit events are kept: at least 183 (EU AI Act Art. 12); null: for ever.",
    )
    rules = serializers.JSONField(
        help_text='Kind -> periods in days (null: never), e.g. {"datasets": {"cold_after_days": 30, '
        '"delete_after_days": 365}, "predictions": {"cold_after_days": 7, "delete_after_days": 90}}; '
        "a kind left out stays hot for ever."
    )


class LegalHoldSerializer(StrictSerializer):
    """POST .../legal-hold/: why the version is held (kept in its audit event)."""

    reason = serializers.CharField(trim_whitespace=False)
