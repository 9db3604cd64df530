import datetime

from rest_framework import serializers

from governance.api.base import KnownFieldsMixin, RestrictedPrimaryKeyRelatedField, UsernameField
from governance.models import Dataset, DatasetVersion, ModelVersion, RegisteredModel, Team
from runners.accounting import DIMENSIONS, parse_month
from runners.models import Budget, CodeVersion, Job, JobKind, JobLogChunk, JobSchedule


class JobSerializer(serializers.ModelSerializer):
    created_by = UsernameField()
    state_detail = serializers.CharField(
        read_only=True, help_text='Why a queued job is not running yet: "waits for its window until <time>".'
    )

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
            "backend",
            "backend_job_id",
            "not_before",
            "state_detail",
            "schedule",
            "resource_class",
            "cost",
            "hold_reason",
            "code_version",
            "entry_point",
            "experiment",
        ]
        read_only_fields = fields


class JobSubmitSerializer(KnownFieldsMixin, serializers.Serializer):
    """Training: ``registered_model`` + ``spec`` {target, features, ...}; inference:
    ``model_version``; evaluation: ``model_version`` + ``spec`` {task, target, positive_label,
    sensitive_attributes, slice_columns, ..., champion_alias, where} (issue 15)."""

    # Code runs have their own serializer (CodeRunSubmitSerializer) and tracked runs come from an
    # MLflow client: one kind per request shape, so the API schema's oneOf picks exactly one.
    kind = serializers.ChoiceField(
        choices=[(k.value, k.label) for k in (JobKind.TRAIN, JobKind.INFER, JobKind.EVALUATE)]
    )
    dataset_version = RestrictedPrimaryKeyRelatedField(queryset=DatasetVersion.objects.all())
    registered_model = RestrictedPrimaryKeyRelatedField(
        queryset=RegisteredModel.objects.all(), required=False, allow_null=True
    )
    model_version = RestrictedPrimaryKeyRelatedField(
        queryset=ModelVersion.objects.all(), required=False, allow_null=True
    )
    spec = serializers.JSONField(required=False, default=dict)


class CodeRunSubmitSerializer(KnownFieldsMixin, serializers.Serializer):
    """A code run (issue 17): an entry point of a code version with its parameters, its input
    dataset versions and model versions by name, the datasets it writes, its experiment and ``spec`` (limits,
    resources, backend, start window)."""

    kind = serializers.ChoiceField(choices=[JobKind.CODE])
    code_version = RestrictedPrimaryKeyRelatedField(queryset=CodeVersion.objects.all())
    entry_point = serializers.CharField(max_length=100)
    parameters = serializers.JSONField(required=False, default=dict)
    inputs = serializers.DictField(
        child=RestrictedPrimaryKeyRelatedField(queryset=DatasetVersion.objects.all()),
        required=False,
        default=dict,
        help_text="name -> dataset version id; the code finds it at $STEWARD_INPUT_<NAME>.",
    )
    models = serializers.DictField(
        child=RestrictedPrimaryKeyRelatedField(queryset=ModelVersion.objects.all()),
        required=False,
        default=dict,
        help_text=(
            "name -> model version id the code may read through its job token; a uri or string "
            "parameter whose value is the name becomes models:/<model>/<version>, also in "
            "$STEWARD_MODEL_<NAME>."
        ),
    )
    outputs = serializers.JSONField(required=False, default=dict, help_text='{"datasets": [names]}')
    experiment_name = serializers.CharField(required=False, allow_null=True, max_length=500)
    spec = serializers.JSONField(required=False, default=dict)


class JobLogChunkSerializer(serializers.ModelSerializer):
    class Meta:
        model = JobLogChunk
        fields = ["seq", "attempt", "stream", "text", "created_at"]
        read_only_fields = fields


class JobLogSerializer(serializers.Serializer):
    """A page of a job's log after ``after``: ``next`` is the ``after`` of the next page."""

    chunks = JobLogChunkSerializer(many=True)
    next = serializers.IntegerField()
    state = serializers.CharField()
    finished = serializers.BooleanField()
    truncated = serializers.BooleanField()


class JobScheduleSerializer(serializers.ModelSerializer):
    """A recurring job: the template of the jobs it submits and its cron schedule. The kind is
    fixed once created; pause and resume switch ``is_enabled``. An evaluation names a model
    version, or a model and ``model_alias`` whose holder each firing evaluates."""

    kind = serializers.ChoiceField(choices=[JobKind.TRAIN, JobKind.INFER, JobKind.EVALUATE])
    dataset = RestrictedPrimaryKeyRelatedField(
        queryset=Dataset.objects.all(),
        help_text="Each firing runs on its latest version; an evaluation on its newest version holding "
        "the spec's target and the model's features.",
    )
    registered_model = RestrictedPrimaryKeyRelatedField(
        queryset=RegisteredModel.objects.all(),
        required=False,
        allow_null=True,
        help_text="Training; an evaluation of an alias (model_alias) of this model.",
    )
    model_version = RestrictedPrimaryKeyRelatedField(
        queryset=ModelVersion.objects.all(),
        required=False,
        allow_null=True,
        help_text="Inference; an evaluation of this one version.",
    )
    model_alias = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=255,
        default="",
        help_text="Evaluation: the alias of registered_model whose holder each firing evaluates "
        "(e.g. production).",
    )
    spec = serializers.JSONField(required=False, default=dict)
    cron = serializers.CharField(
        max_length=100, help_text="Five fields: minute hour day-of-month month day-of-week."
    )
    cron_timezone = serializers.CharField(max_length=64, required=False, default="UTC")
    created_by = UsernameField()

    class Meta:
        model = JobSchedule
        fields = [
            "id",
            "team",
            "name",
            "kind",
            "dataset",
            "registered_model",
            "model_version",
            "model_alias",
            "spec",
            "cron",
            "cron_timezone",
            "is_enabled",
            "last_job",
            "last_fired_at",
            "last_outcome",
            "created_by",
            "created_at",
        ]
        read_only_fields = [
            "id",
            "team",
            "is_enabled",
            "last_job",
            "last_fired_at",
            "last_outcome",
            "created_at",
        ]


class StorageQuerySerializer(serializers.Serializer):
    """The query string of ``GET /api/usage/storage/``."""

    team = serializers.SlugField(required=False, help_text="A team's slug: only its artifacts.")


class UsageQuerySerializer(serializers.Serializer):
    """The query string of ``GET /api/usage/``."""

    group_by = serializers.CharField(
        default="team", help_text="Comma-separated: team, model, month (model rows name their team)."
    )
    month = serializers.CharField(
        required=False, trim_whitespace=False, help_text="YYYY-MM: only jobs submitted that month."
    )
    team = serializers.SlugField(required=False, help_text="A team's slug: only its jobs.")

    def validate_group_by(self, value: str) -> list[str]:
        names = [name.strip() for name in value.split(",") if name.strip()]
        unknown = [name for name in names if name not in DIMENSIONS]
        if not names or unknown:
            wrong = ", ".join(unknown) or "empty"
            raise serializers.ValidationError(
                f"one or more of {', '.join(DIMENSIONS)}, comma-separated; not {wrong}"
            )
        return list(dict.fromkeys(names))

    def validate_month(self, value: str) -> datetime.date:
        try:
            return parse_month(value)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from exc


class UsageRowSerializer(serializers.Serializer):
    """One row of the usage rollup; a dimension not grouped by is null."""

    team = serializers.CharField(allow_null=True)
    model = serializers.CharField(allow_null=True)
    month = serializers.CharField(allow_null=True, help_text="YYYY-MM")
    jobs = serializers.IntegerField()
    wall_time_s = serializers.FloatField()
    cpu_time_s = serializers.FloatField()
    gpu_time_s = serializers.FloatField()
    cost = serializers.FloatField()
    currency = serializers.CharField()


class StorageRowSerializer(serializers.Serializer):
    """A team's stored artifacts in one tier and what they cost a month."""

    team = serializers.CharField()
    tier = serializers.CharField(help_text="hot or cold")
    objects = serializers.IntegerField()
    bytes = serializers.IntegerField()
    price_per_gib_month = serializers.FloatField()
    monthly_cost = serializers.FloatField()
    currency = serializers.CharField()


class BudgetSerializer(serializers.ModelSerializer):
    """A team's monthly budget; ``team`` is fixed once created."""

    team = RestrictedPrimaryKeyRelatedField(queryset=Team.objects.all())
    created_by = UsernameField()
    monthly_limit = serializers.DecimalField(max_digits=14, decimal_places=2, min_value=0)

    class Meta:
        model = Budget
        fields = ["id", "team", "monthly_limit", "holds_jobs", "breached_month", "created_by", "updated_at"]
        read_only_fields = ["id", "breached_month", "created_by", "updated_at"]


class CursorField(serializers.IntegerField):
    """A non-negative integer written in ASCII digits (``int()`` would also read Arabic-Indic or
    full-width digits, two spellings of one cursor)."""

    def __init__(self, **kwargs):
        super().__init__(min_value=0, max_value=2**63 - 1, **kwargs)

    def to_internal_value(self, data):
        text = str(data)
        if not (text.isascii() and text.isdigit() and len(text) <= 19):
            raise serializers.ValidationError("a non-negative integer in ASCII digits")
        return super().to_internal_value(text)


class MetricSeriesQuerySerializer(serializers.Serializer):
    """The query string of ``GET /api/jobs/<id>/metrics/``: the previous answer's ``next``, or
    nothing for all the points."""

    after = CursorField(default=0, help_text="The last logged point's id already held (next.after).")
    after_epoch = CursorField(
        default=0, help_text="Per-epoch history records already held (next.after_epoch)."
    )
    attempt = CursorField(
        required=False, help_text="The attempt those were read in (next.attempt); another one resets."
    )


class MetricPointSerializer(serializers.Serializer):
    step = serializers.IntegerField(help_text="The step (the epoch for per-epoch history).")
    value = serializers.FloatField(allow_null=True, help_text="null for NaN and infinities.")
    timestamp_ms = serializers.IntegerField(
        allow_null=True, help_text="When the run logged it; null for per-epoch history."
    )


class MetricSeriesCursorSerializer(serializers.Serializer):
    after = serializers.IntegerField()
    after_epoch = serializers.IntegerField()
    attempt = serializers.IntegerField()


class MetricSeriesSerializer(serializers.Serializer):
    series = serializers.DictField(
        child=serializers.ListField(child=MetricPointSerializer()),
        help_text="Metric key -> its new points by step; at most 1,000 a series (thinned evenly).",
    )
    next = MetricSeriesCursorSerializer(help_text="The query of the next poll.")
    reset = serializers.BooleanField(help_text="The job started another attempt: replace what you hold.")
    series_left_out = serializers.IntegerField(help_text="Logged keys past the first 100 not answered.")
    state = serializers.CharField(help_text="The job's state (as on the job).")
    finished = serializers.BooleanField(help_text="The job is in a final state (the job page stops polling).")
