"""Serializers of the monitoring API. They parse and render; the actions validate business rules."""

from django.contrib.auth import get_user_model
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from governance.api.base import RestrictedPrimaryKeyRelatedField, UsernameField
from governance.models import Dataset, DatasetVersion, ModelVersion, Team, TeamRole
from governance.permissions import VIEW
from monitoring.engine.check import COLUMN_KINDS
from monitoring.engine.multivariate import TESTS as MULTIVARIATE_TESTS
from monitoring.models import (
    MONITOR_FIELDS,
    Alert,
    AlertEvent,
    Channel,
    ChannelKind,
    CurrentSource,
    DriftCheck,
    EscalationLevel,
    EscalationPolicy,
    Monitor,
    Notification,
    Severity,
)
from monitoring.models.monitors import PERFORMANCE_TESTS


@extend_schema_field(OpenApiTypes.INT)
class VisibleUserField(serializers.PrimaryKeyRelatedField):
    """A user id among the members of the teams the requester may view (others: "does not exist")."""

    def get_queryset(self):
        user = self.context["request"].user
        teams = Team.objects.restrict(user, VIEW)
        return get_user_model().objects.filter(memberships__team__in=teams).distinct()


class DriftCheckSerializer(serializers.ModelSerializer):
    report_url = serializers.SerializerMethodField()

    class Meta:
        model = DriftCheck
        fields = [
            "id",
            "team",
            "model_version",
            "monitor",
            "reference_dataset_version",
            "reference_where",
            "current_dataset_version",
            "window",
            "columns",
            "config",
            "drift_share",
            "state",
            "progress",
            "stage",
            "is_dataset_drift",
            "drifted_count",
            "drifted_fraction",
            "results",
            "prediction",
            "performance",
            "is_performance_drift",
            "multivariate",
            "evidently_results",
            "sampled_rows",
            "groups",
            "report_url",
            "report_state",
            "report_error",
            "error",
            "retrain_job_id",
            # Delivery (issue 16): why a check still waits, and how often it was sent and run.
            "attempt",
            "dispatch_count",
            "dispatched_at",
            "dispatch_error",
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
    # The engine's options (issue 11); their values are validated by the engine (400 naming the field).
    min_sample_size = serializers.IntegerField(required=False, min_value=1, max_value=1_000_000_000)
    methods = serializers.DictField(
        child=serializers.CharField(), required=False, help_text="Column -> method."
    )
    thresholds = serializers.DictField(
        child=serializers.FloatField(), required=False, help_text="Column -> threshold."
    )
    column_kinds = serializers.DictField(
        child=serializers.ChoiceField(choices=COLUMN_KINDS),
        required=False,
        help_text="Column -> kind, overriding the rule (integers with at most 20 values are categories); "
        '"text" (documents) and "embedding" (vectors) columns are compared by MMD on raw rows; a name '
        'of kind "image" (not a column) is a Steward vision model\'s image, its input columns, compared '
        "through the model's penultimate layer.",
    )
    weights = serializers.DictField(
        child=serializers.FloatField(min_value=0.0),
        required=False,
        help_text="Column -> weight in the share.",
    )
    multiple_testing = serializers.ChoiceField(choices=["none", "bh"], required=False)
    performance_test = serializers.ChoiceField(choices=list(PERFORMANCE_TESTS), required=False)
    top_k = serializers.IntegerField(required=False, min_value=1, max_value=1000)
    multivariate = serializers.ListField(
        child=serializers.ChoiceField(choices=list(MULTIVARIATE_TESTS)),
        required=False,
        help_text="Multivariate drift tests to run beside the columns (none by default).",
    )
    multivariate_max_rows = serializers.IntegerField(
        required=False, min_value=100, max_value=1_000_000, help_text="Rows sampled per side (default 5000)."
    )
    make_report = serializers.BooleanField(
        required=False, default=True, help_text="Build the evidently report after the verdict."
    )
    # Windows and segments (issue 11); their values are validated by the engine (400 naming the field).
    time_window = serializers.JSONField(
        required=False,
        allow_null=True,
        help_text='Verdicts per time window, e.g. {"column": "dteday", "every": "month"}: every hour, '
        'day, week or month (UTC calendar buckets); "rolling": n buckets per window (moving by one); '
        '"max_windows" (default 100, at most 1000).',
    )
    segment_by = serializers.JSONField(
        required=False,
        allow_null=True,
        help_text='Verdicts per segment of a categorical column: "season" or {"column": "season", "top": 10} '
        '(its top reference values, the rest as "<other>"); each against the same segment of the reference.',
    )
    alert_on_groups = serializers.BooleanField(
        required=False, default=False, help_text="A drifted window or segment raises the alert too."
    )


class DriftCheckGroupsSerializer(serializers.Serializer):
    """A check's verdicts per time window and segment (``monitoring.queries.group_trend``)."""

    check = serializers.IntegerField()
    state = serializers.CharField()
    alert_on_groups = serializers.BooleanField()
    is_drift = serializers.BooleanField()
    columns = serializers.ListField(child=serializers.CharField())
    windows = serializers.JSONField(allow_null=True)
    segments = serializers.JSONField(allow_null=True)


class AlertEventSerializer(serializers.ModelSerializer):
    actor = UsernameField()

    class Meta:
        model = AlertEvent
        fields = ["id", "kind", "at", "actor", "drift_check", "level", "repeat", "note"]
        read_only_fields = fields


class AlertSerializer(serializers.ModelSerializer):
    owner = UsernameField()
    acknowledged_by = UsernameField()
    resolved_by = UsernameField()
    snoozed_by = UsernameField()

    class Meta:
        model = Alert
        fields = [
            "id",
            "kind",
            "team",
            "model_version",
            "monitor",
            "dedup_key",
            "drift_check",
            "owner",
            "state",
            "severity",
            "title",
            "summary",
            "evidence",
            "runbook_url",
            "occurrences",
            "clean_checks",
            "created_at",
            "last_seen_at",
            "reopened_at",
            "acknowledged_by",
            "acknowledged_at",
            "snoozed_until",
            "snoozed_by",
            "resolved_by",
            "resolved_at",
            "escalation_policy",
            "escalation_round",
            "escalation_step",
            "escalation_level",
            "next_escalation_at",
            "retrain_job_id",
        ]
        read_only_fields = fields


class AlertSnoozeSerializer(serializers.Serializer):
    until = serializers.DateTimeField(help_text="When escalation resumes (at most 30 days ahead).")


class NotificationSerializer(serializers.ModelSerializer):
    class Meta:
        model = Notification
        fields = [
            "id",
            "alert",
            "channel",
            "kind",
            "round",
            "level",
            "repeat",
            "recipients",
            "state",
            "attempts",
            "next_attempt_at",
            "response_code",
            "error",
            "created_at",
            "sent_at",
        ]
        read_only_fields = fields


class DriftHistoryColumnSerializer(serializers.Serializer):
    method = serializers.CharField(allow_null=True)
    score = serializers.FloatField(allow_null=True)
    threshold = serializers.FloatField(allow_null=True)
    is_drifted = serializers.BooleanField()
    status = serializers.CharField(allow_null=True)


class DriftHistoryPointSerializer(serializers.Serializer):
    """One succeeded check of a monitor in its drift history (``monitoring.queries.drift_history``)."""

    check = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)
    current_dataset_version = serializers.IntegerField()
    is_dataset_drift = serializers.BooleanField(allow_null=True)
    drifted_fraction = serializers.FloatField(allow_null=True)
    drift_share = serializers.FloatField()
    is_performance_drift = serializers.BooleanField(allow_null=True)
    columns = serializers.DictField(child=DriftHistoryColumnSerializer())


class DriftHistoryQuerySerializer(serializers.Serializer):
    """``?column=`` (one column only) and ``?limit=`` (the newest checks, 1-1000, default 100)."""

    column = serializers.CharField(required=False, max_length=500)
    limit = serializers.IntegerField(required=False, min_value=1, max_value=1000, default=100)


class MonitorSerializer(serializers.ModelSerializer):
    """Read and write shape of a monitor; ``model_version`` is fixed once created."""

    model_version = RestrictedPrimaryKeyRelatedField(queryset=ModelVersion.objects.all())
    reference_dataset_version = RestrictedPrimaryKeyRelatedField(
        queryset=DatasetVersion.objects.all(), required=False, help_text="Default: the training data."
    )
    current_dataset = RestrictedPrimaryKeyRelatedField(
        queryset=Dataset.objects.all(), required=False, allow_null=True
    )
    escalation_policy = RestrictedPrimaryKeyRelatedField(
        queryset=EscalationPolicy.objects.all(), required=False, allow_null=True
    )
    source = serializers.ChoiceField(choices=CurrentSource.choices, required=False)
    severity = serializers.ChoiceField(choices=Severity.choices, required=False)
    columns = serializers.ListField(child=serializers.CharField(), required=False)
    methods = serializers.DictField(child=serializers.CharField(), required=False)
    thresholds = serializers.DictField(child=serializers.FloatField(), required=False)
    column_kinds = serializers.DictField(child=serializers.ChoiceField(choices=COLUMN_KINDS), required=False)
    weights = serializers.DictField(child=serializers.FloatField(min_value=0.0), required=False)
    multiple_testing = serializers.ChoiceField(choices=["none", "bh"], required=False)
    performance_test = serializers.ChoiceField(choices=list(PERFORMANCE_TESTS), required=False)
    multivariate = serializers.ListField(
        child=serializers.ChoiceField(choices=list(MULTIVARIATE_TESTS)), required=False
    )
    time_window = serializers.JSONField(
        required=False, help_text='e.g. {"column": "dteday", "every": "month"}'
    )
    segment_by = serializers.JSONField(
        required=False, help_text='e.g. "season" or {"column": "season", "top": 10}'
    )
    reference_where = serializers.DictField(required=False)
    retrain_where = serializers.DictField(required=False)

    class Meta:
        model = Monitor
        fields = [
            "id",
            "team",
            "model_version",
            *MONITOR_FIELDS,
            "is_active",
            "last_checked_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "team", "is_active", "last_checked_at", "created_at", "updated_at"]


class ChannelSerializer(serializers.ModelSerializer):
    owner = UsernameField()

    class Meta:
        model = Channel
        fields = [
            "id",
            "team",
            "name",
            "kind",
            "owner",
            "email_address",
            "url",
            "is_active",
            "disabled_reason",
            "disabled_at",
            "consecutive_failures",
            "last_error",
            "last_error_at",
            "last_success_at",
            "created_at",
        ]
        read_only_fields = fields


class ChannelWriteSerializer(serializers.Serializer):
    team = RestrictedPrimaryKeyRelatedField(queryset=Team.objects.all())
    name = serializers.CharField(max_length=100)
    kind = serializers.ChoiceField(choices=ChannelKind.choices)
    owner = VisibleUserField(required=False, help_text="Told when the channel fails. Default: you.")
    email_address = serializers.EmailField(required=False, allow_blank=True, default="")
    url = serializers.URLField(required=False, allow_blank=True, default="", max_length=500)


class ChannelUpdateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100, required=False)
    owner = VisibleUserField(required=False)
    email_address = serializers.EmailField(required=False, allow_blank=True)
    url = serializers.URLField(required=False, allow_blank=True, max_length=500)
    is_active = serializers.BooleanField(required=False)


class ChannelSecretSerializer(ChannelSerializer):
    """A channel with its HMAC secret: answered on creation and rotation only."""

    class Meta(ChannelSerializer.Meta):
        fields = [*ChannelSerializer.Meta.fields, "secret"]
        read_only_fields = fields


class EscalationLevelSerializer(serializers.ModelSerializer):
    users = VisibleUserField(many=True, required=False)
    owners_of = RestrictedPrimaryKeyRelatedField(queryset=Team.objects.all(), required=False, allow_null=True)
    role = serializers.ChoiceField(choices=[("", "none"), *TeamRole.choices], required=False)
    channels = RestrictedPrimaryKeyRelatedField(queryset=Channel.objects.all(), many=True, required=False)

    class Meta:
        model = EscalationLevel
        fields = ["position", "delay_minutes", "repeat", "users", "owners_of", "role", "channels"]
        read_only_fields = ["position"]


class EscalationPolicySerializer(serializers.ModelSerializer):
    team = RestrictedPrimaryKeyRelatedField(queryset=Team.objects.all())
    levels = EscalationLevelSerializer(many=True)

    class Meta:
        model = EscalationPolicy
        fields = ["id", "team", "name", "description", "levels", "created_at", "updated_at"]
        read_only_fields = ["id", "created_at", "updated_at"]
