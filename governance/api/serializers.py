import json

from django.contrib.auth import get_user_model
from rest_framework import serializers

from governance.api.base import RestrictedPrimaryKeyRelatedField, UsernameField
from governance.models import (
    AuditEvent,
    Dataset,
    DatasetVersion,
    ModelVersion,
    RegisteredModel,
    Team,
)

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
        ]
        read_only_fields = fields


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


class RegisteredModelSerializer(serializers.ModelSerializer):
    team = RestrictedPrimaryKeyRelatedField(queryset=Team.objects.all())
    owner = serializers.SlugRelatedField(
        slug_field="username", queryset=get_user_model().objects.all(), required=False
    )
    latest_version = serializers.SerializerMethodField()
    aliases = serializers.SerializerMethodField()
    tags = TagsField(required=False, default=dict)
    status = serializers.SerializerMethodField()

    class Meta:
        model = RegisteredModel
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

    def get_latest_version(self, model) -> int | None:
        return getattr(model, "latest_version", None)

    def get_status(self, model) -> str:
        """``ready`` or ``archived`` (deleted models are not served)."""
        return "archived" if model.archived_at else "ready"

    def get_aliases(self, model) -> dict[str, int]:
        """``{"production": 3, "staging": 4}``: alias -> the version number holding it."""
        return {alias.name: alias.model_version.version for alias in model.aliases.all()}


class ModelVersionSerializer(serializers.ModelSerializer):
    model_name = serializers.CharField(source="model.name", read_only=True)
    created_by = UsernameField()
    aliases = serializers.SerializerMethodField()

    class Meta:
        model = ModelVersion
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
            "tags",
            "aliases",
            "created_by",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    def get_aliases(self, version) -> list[str]:
        """The aliases (``production``, ``staging``) this version holds."""
        return sorted(alias.name for alias in version.aliases.all())


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
    description = serializers.CharField(allow_blank=True, trim_whitespace=False)


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
