from rest_framework import serializers

from governance.api.base import RestrictedPrimaryKeyRelatedField
from governance.models import DatasetVersion, ModelVersion
from monitoring.models import Alert, DriftCheck


class DriftCheckSerializer(serializers.ModelSerializer):
    report_url = serializers.SerializerMethodField()

    class Meta:
        model = DriftCheck
        fields = [
            "id",
            "team",
            "model_version",
            "reference_dataset_version",
            "current_dataset_version",
            "columns",
            "drift_share",
            "state",
            "is_dataset_drift",
            "drifted_count",
            "drifted_fraction",
            "results",
            "sampled_rows",
            "report_url",
            "error",
            "created_at",
            "started_at",
            "finished_at",
        ]
        read_only_fields = fields

    def get_report_url(self, check) -> str | None:
        return f"/api/drift-checks/{check.pk}/report/" if check.report else None


class DriftCheckRequestSerializer(serializers.Serializer):
    model_version = RestrictedPrimaryKeyRelatedField(queryset=ModelVersion.objects.all())
    current_dataset_version = RestrictedPrimaryKeyRelatedField(queryset=DatasetVersion.objects.all())
    columns = serializers.ListField(child=serializers.CharField(), required=False, allow_empty=False)
    drift_share = serializers.FloatField(required=False, default=0.5, min_value=0.0, max_value=1.0)


class AlertSerializer(serializers.ModelSerializer):
    owner = serializers.SlugRelatedField(slug_field="username", read_only=True)
    acknowledged_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    resolved_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = Alert
        fields = [
            "id",
            "team",
            "model_version",
            "drift_check",
            "owner",
            "state",
            "severity",
            "title",
            "summary",
            "occurrences",
            "created_at",
            "last_seen_at",
            "acknowledged_by",
            "acknowledged_at",
            "resolved_by",
            "resolved_at",
        ]
        read_only_fields = fields
