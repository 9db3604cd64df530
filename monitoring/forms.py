"""UI forms for drift checks, monitors, alerts, channels and escalation policies.

They parse input only; the actions in ``monitoring.actions`` decide who may do what and validate
business rules (their ValidationError lands on the field it names, ``governance.views.helpers.call_action``).
"""

from __future__ import annotations

import datetime

from django import forms
from django.contrib.auth import get_user_model

from governance.forms import JSONObjectField, ScopedForm, comma_list
from governance.models import Dataset, DatasetVersion, Team, TeamRole
from monitoring.models import Channel, ChannelKind, CurrentSource, EscalationPolicy, Monitor, Severity


class DriftCheckForm(ScopedForm):
    current_dataset_version = forms.ModelChoiceField(
        queryset=DatasetVersion.objects.select_related("dataset"),
        label="Current data",
        help_text="Compared against the model version's training rows.",
    )
    columns = forms.CharField(
        required=False,
        help_text="Columns to compare, separated by commas (default: the model's features and target).",
    )
    drift_share = forms.FloatField(
        initial=0.5, help_text="Share of drifted columns, in (0, 1], that means the dataset drifted."
    )

    def column_list(self) -> list[str] | None:
        """The typed columns, or None for the action's default."""
        return comma_list(self.cleaned_data["columns"]) or None


class MonitorForm(ScopedForm):
    name = forms.CharField(max_length=100, initial="drift")
    source = forms.ChoiceField(choices=CurrentSource.choices, initial=CurrentSource.PREDICTIONS)
    current_dataset = forms.ModelChoiceField(
        queryset=Dataset.objects.all(), required=False, help_text="For the uploaded-batches source only."
    )
    window_versions = forms.IntegerField(
        min_value=1, initial=1, help_text="Newest dataset versions per check."
    )
    served_hours = forms.IntegerField(
        min_value=1,
        initial=24,
        required=False,
        help_text="Online predictions source: hours of logged rows per check (24 when empty).",
    )

    def clean_served_hours(self) -> int:
        # Optional: forms written before the served source (and scripts posting them) leave it out.
        return self.cleaned_data.get("served_hours") or 24

    reference_dataset_version = forms.ModelChoiceField(
        queryset=DatasetVersion.objects.select_related("dataset"),
        required=False,
        help_text="Default: the training data.",
    )
    reference_where = JSONObjectField(
        help_text='Row filter of the reference, e.g. {"yr": 0}. Default: training\'s.'
    )
    columns = forms.CharField(
        required=False, help_text="Comma-separated (default: the model's features and target)."
    )
    methods = JSONObjectField(
        help_text=(
            "Per column: ks, wasserstein, psi, jensenshannon, chisquare, z or missing_rate, "
            'e.g. {"hum": "psi"}.'
        )
    )
    thresholds = JSONObjectField(help_text='Per column, e.g. {"hum": 0.2}.')
    drift_share = forms.FloatField(
        initial=0.5, help_text="Share of drifted columns that means dataset drift."
    )
    min_sample_size = forms.IntegerField(
        min_value=1, initial=2000, help_text="Fewer current values: insufficient data."
    )
    column_kinds = JSONObjectField(
        help_text='Per column, categorical or numeric, e.g. {"mnth": "numeric"} (integers with at most '
        "20 values are categories)."
    )
    weights = JSONObjectField(help_text='Per column, its weight in the drift share, e.g. {"cnt": 2}.')
    multiple_testing = forms.ChoiceField(
        choices=[("none", "None"), ("bh", "Benjamini-Hochberg")],
        initial="none",
        required=False,
        help_text="Control of false alarms over the p-value tests.",
    )
    top_k = forms.IntegerField(
        min_value=1,
        max_value=1000,
        initial=50,
        required=False,
        help_text="Values a many-valued category is compared on.",
    )
    multivariate = forms.MultipleChoiceField(
        choices=[("domain_classifier", "Domain classifier"), ("pca", "PCA reconstruction error")],
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Multivariate drift tests beside the columns (a flipped correlation).",
    )
    time_window = JSONObjectField(
        help_text='Verdicts per time window, e.g. {"column": "dteday", "every": "month"} (every: hour, '
        'day, week, month; "rolling": 7 for 7 buckets moving by one).'
    )
    segment_by = JSONObjectField(
        help_text='Verdicts per segment, e.g. {"column": "season", "top": 10} (the rest: "<other>").'
    )
    alert_on_groups = forms.BooleanField(
        required=False, help_text="A drifted window or segment raises the alert (default: shown only)."
    )
    make_report = forms.BooleanField(
        required=False, initial=True, help_text="Build the evidently report after each check."
    )
    check_predictions = forms.BooleanField(required=False, initial=True)
    check_performance = forms.BooleanField(
        required=False, initial=True, help_text="When the data holds labels."
    )
    performance_test = forms.ChoiceField(
        choices=[("bootstrap", "Bootstrap confidence interval"), ("tolerance", "Flat tolerance")],
        required=False,
        initial="bootstrap",
        help_text="Bootstrap: drift when the change is significant (one-sided, at alpha).",
    )
    performance_tolerance = forms.FloatField(
        initial=0.1, help_text="Tolerance test: relative worsening of a metric that counts."
    )
    performance_alpha = forms.FloatField(
        required=False, initial=0.05, help_text="Bootstrap: the test's level (a 1 - 2 alpha interval)."
    )
    performance_min_effect = forms.FloatField(
        required=False, initial=0.0, help_text="Bootstrap: the smallest relative worsening that counts."
    )
    label_key = forms.CharField(
        required=False, max_length=255, help_text="Late labels of batch outputs: the key column they name."
    )
    severity = forms.ChoiceField(choices=Severity.choices, initial=Severity.WARNING)
    runbook_url = forms.URLField(required=False, max_length=500)
    escalation_policy = forms.ModelChoiceField(
        queryset=EscalationPolicy.objects.all(), required=False, help_text="Default: email the model's owner."
    )
    schedule_minutes = forms.IntegerField(min_value=1, required=False, help_text="Empty: only on request.")
    auto_resolve_after = forms.IntegerField(
        min_value=0, initial=3, help_text="Clean checks in a row (0: never)."
    )
    reopen_within_hours = forms.IntegerField(min_value=0, initial=24)
    retrain_on_drift = forms.BooleanField(
        required=False, help_text="Submit a training job when an alert opens."
    )
    retrain_where = JSONObjectField(help_text="Row filter of the retraining job (default: every row).")

    @classmethod
    def for_monitor(cls, monitor: Monitor, data=None, *, user) -> MonitorForm:
        initial = {name: getattr(monitor, name) for name in cls.base_fields if hasattr(monitor, name)}
        initial["columns"] = ", ".join(monitor.columns)
        for name in ("current_dataset", "reference_dataset_version", "escalation_policy"):
            initial[name] = getattr(monitor, f"{name}_id")
        return cls(data, initial=initial, user=user)

    def options(self) -> dict:
        """Keyword arguments for ``do_create_monitor`` / ``do_update_monitor``."""
        data = dict(self.cleaned_data)
        data["columns"] = comma_list(data["columns"])
        for name in (
            "top_k",
            "multiple_testing",
            "performance_test",
            "performance_alpha",
            "performance_min_effect",
        ):
            if data.get(name) in (None, ""):
                data.pop(name, None)  # the monitor's default
        if data["reference_dataset_version"] is None:
            # The training data, with the training spec's row filter unless one was typed.
            data.pop("reference_dataset_version")
            if not data["reference_where"]:
                data.pop("reference_where")
        return data


SNOOZE_CHOICES = [("1", "1 hour"), ("4", "4 hours"), ("24", "1 day"), ("72", "3 days"), ("168", "1 week")]


class SnoozeForm(forms.Form):
    hours = forms.TypedChoiceField(choices=SNOOZE_CHOICES, coerce=int, initial="4", label="Snooze for")

    def until(self, now: datetime.datetime) -> datetime.datetime:
        return now + datetime.timedelta(hours=self.cleaned_data["hours"])


class ChannelForm(ScopedForm):
    team = forms.ModelChoiceField(queryset=Team.objects.all())
    name = forms.CharField(max_length=100)
    kind = forms.ChoiceField(choices=ChannelKind.choices)
    owner = forms.ModelChoiceField(
        queryset=get_user_model().objects.all(), required=False, help_text="Told when it fails. Default: you."
    )
    email_address = forms.EmailField(required=False, help_text="Email: blank mails the level's targets.")
    url = forms.URLField(required=False, max_length=500, help_text="Webhook or Slack incoming-webhook URL.")

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, user=user, **kwargs)
        self.fields["owner"].label_from_instance = lambda member: member.get_username()


class ChannelEditForm(ScopedForm):
    name = forms.CharField(max_length=100)
    owner = forms.ModelChoiceField(queryset=get_user_model().objects.all())
    email_address = forms.EmailField(required=False)
    url = forms.URLField(required=False, max_length=500)

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, user=user, **kwargs)
        self.fields["owner"].label_from_instance = lambda member: member.get_username()


class EscalationPolicyForm(ScopedForm):
    team = forms.ModelChoiceField(queryset=Team.objects.all())
    name = forms.CharField(max_length=100)
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False)


class EscalationLevelForm(ScopedForm):
    delay_minutes = forms.IntegerField(
        min_value=1, initial=15, help_text="Wait before repeating or moving on."
    )
    repeat = forms.IntegerField(min_value=0, max_value=100, initial=0, help_text="Extra notifications.")
    users = forms.ModelMultipleChoiceField(queryset=get_user_model().objects.all(), required=False)
    owners_of = forms.ModelChoiceField(queryset=Team.objects.all(), required=False, label="Owners of team")
    role = forms.ChoiceField(
        choices=[("", "—"), *TeamRole.choices], required=False, label="Everyone with role"
    )
    channels = forms.ModelMultipleChoiceField(queryset=Channel.objects.all(), required=False)

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, user=user, **kwargs)
        self.fields["users"].label_from_instance = lambda member: member.get_username()

    def spec(self) -> dict:
        data = self.cleaned_data
        return {
            "delay_minutes": data["delay_minutes"],
            "repeat": data["repeat"],
            "users": list(data["users"]),
            "owners_of": data["owners_of"],
            "role": data["role"],
            "channels": list(data["channels"]),
        }


LevelFormSet = forms.formset_factory(EscalationLevelForm, extra=2, can_delete=True)


def level_formset(data=None, *, user, policy: EscalationPolicy | None = None):
    """The levels of ``policy`` (or blank ones) as a formset; blank forms are skipped."""
    initial = []
    if policy is not None:
        for level in policy.levels.prefetch_related("users", "channels"):
            initial.append(
                {
                    "delay_minutes": level.delay_minutes,
                    "repeat": level.repeat,
                    "users": [u.pk for u in level.users.all()],
                    "owners_of": level.owners_of_id,
                    "role": level.role,
                    "channels": [c.pk for c in level.channels.all()],
                }
            )
    return LevelFormSet(data, initial=initial or None, form_kwargs={"user": user}, prefix="levels")


def level_specs(formset) -> list[dict]:
    """The levels in order: the existing ones not marked for deletion and the blanks filled in."""
    deleted = set(map(id, formset.deleted_forms))
    return [
        form.spec()
        for index, form in enumerate(formset.forms)
        if id(form) not in deleted and (index < formset.initial_form_count() or form.has_changed())
    ]
