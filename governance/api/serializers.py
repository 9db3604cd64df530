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


class TeamSerializer(serializers.ModelSerializer):
    class Meta:
        model = Team
        fields = ["id", "name", "slug", "description", "created_at"]
        read_only_fields = ["slug", "created_at"]


class DatasetSerializer(serializers.ModelSerializer):
    team = RestrictedPrimaryKeyRelatedField(queryset=Team.objects.all())
    created_by = UsernameField()
    latest_version = serializers.SerializerMethodField()

    class Meta:
        model = Dataset
        fields = ["id", "team", "name", "description", "created_by", "created_at", "latest_version"]
        read_only_fields = ["created_by", "created_at"]

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

    class Meta:
        model = RegisteredModel
        fields = ["id", "team", "name", "owner", "description", "created_at", "latest_version", "aliases"]
        read_only_fields = ["created_at"]

    def get_latest_version(self, model) -> int | None:
        return getattr(model, "latest_version", None)

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
            "aliases",
            "created_by",
            "created_at",
        ]
        read_only_fields = fields

    def get_aliases(self, version) -> list[str]:
        """The aliases (``production``, ``staging``) this version holds."""
        return sorted(alias.name for alias in version.aliases.all())


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
