from rest_framework import serializers

from governance.api.base import RestrictedPrimaryKeyRelatedField, UsernameField
from governance.models import DatasetVersion, ModelVersion, RegisteredModel
from runners.models import Job, JobKind


class JobSerializer(serializers.ModelSerializer):
    created_by = UsernameField()

    class Meta:
        model = Job
        fields = [
            "id",
            "team",
            "kind",
            "spec",
            "state",
            "progress",
            "metrics",
            "history",
            "log_tail",
            "error",
            "device",
            "resource_class",
            "gpus",
            "is_cancel_requested",
            "dataset_version",
            "registered_model",
            "model_version",
            "output_model_version",
            "output_dataset_version",
            "created_by",
            "created_at",
            "started_at",
            "finished_at",
            "celery_task_id",
            "attempt",
            "dispatch_count",
            "dispatched_at",
            "dispatch_error",
            "limits",
            "wall_time_s",
            "cpu_time_s",
            "peak_rss_mb",
            "rows_read",
            "bytes_read",
            "gpu_time_s",
            "peak_gpu_mem_mb",
        ]
        read_only_fields = fields


class JobSubmitSerializer(serializers.Serializer):
    """Training: ``registered_model`` + ``spec`` {target, features, ...}; inference: ``model_version``."""

    kind = serializers.ChoiceField(choices=JobKind.choices)
    dataset_version = RestrictedPrimaryKeyRelatedField(queryset=DatasetVersion.objects.all())
    registered_model = RestrictedPrimaryKeyRelatedField(
        queryset=RegisteredModel.objects.all(), required=False, allow_null=True
    )
    model_version = RestrictedPrimaryKeyRelatedField(
        queryset=ModelVersion.objects.all(), required=False, allow_null=True
    )
    spec = serializers.JSONField(required=False, default=dict)
