"""UI forms for jobs. They turn typed text into a spec; ``do_submit_job`` validates the spec."""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings

from governance.forms import JSONObjectField, ScopedForm, comma_list
from governance.models import Dataset, DatasetVersion, ModelVersion, RegisteredModel, Team
from governance.permissions import MANAGE
from runners.models import JobKind


class DatasetVersionChoiceField(forms.ModelChoiceField):
    def __init__(self, **kwargs):
        super().__init__(queryset=DatasetVersion.objects.select_related("dataset"), **kwargs)


class TrainingJobForm(ScopedForm):
    registered_model = forms.ModelChoiceField(
        queryset=RegisteredModel.objects.all(), label="Model", help_text="The new version is registered here."
    )
    dataset_version = DatasetVersionChoiceField(label="Training data")
    target = forms.CharField(max_length=200, help_text="The column to predict.")
    features = forms.CharField(help_text="Column names, separated by commas.")
    categorical = forms.CharField(
        required=False, help_text="Features to one-hot encode, separated by commas (optional)."
    )
    epochs = forms.IntegerField(initial=20)
    batch_size = forms.IntegerField(initial=256)
    learning_rate = forms.FloatField(initial=0.001)
    seed = forms.IntegerField(initial=0)
    where = JSONObjectField(
        label="Row filter",
        widget=forms.TextInput(attrs={"placeholder": '{"yr": 0}'}),
        help_text="Train only on rows matching this JSON object of column: value (optional).",
    )
    resource_class = forms.ChoiceField(
        required=False,
        label="Resource class",
        help_text="Where it runs: its workers, GPUs and price (the API adds GPUs, limits, start windows).",
    )

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        # Read per form: the classes are settings, and tests and deployments change them.
        field = self.fields["resource_class"]
        field.choices = [  # type: ignore[attr-defined]
            (name, f"{name} ({found.get('gpus', 0)} GPU, {found.get('price_per_hour', 0)}/h)")
            for name, found in settings.STEWARD_RESOURCE_CLASSES.items()
        ]
        field.initial = settings.STEWARD_DEFAULT_RESOURCE_CLASS

    def spec(self) -> dict[str, Any]:
        """The training spec for ``do_submit_job`` (shape of ``runners.training.TrainingSpec``)."""
        data = self.cleaned_data
        spec = {
            "target": data["target"].strip(),
            "features": comma_list(data["features"]),
            "epochs": data["epochs"],
            "batch_size": data["batch_size"],
            "learning_rate": data["learning_rate"],
            "seed": data["seed"],
        }
        if data["categorical"].strip():
            spec["categorical"] = comma_list(data["categorical"])
        if data["where"]:
            spec["where"] = data["where"]
        spec["resources"] = {"class": data["resource_class"] or settings.STEWARD_DEFAULT_RESOURCE_CLASS}
        return spec


class InferenceJobForm(ScopedForm):
    dataset_version = DatasetVersionChoiceField(
        label="Data to predict", help_text="Must hold the model's feature columns."
    )
    where = JSONObjectField(
        label="Row filter",
        widget=forms.TextInput(attrs={"placeholder": '{"yr": 1}'}),
        help_text="Predict only rows matching this JSON object of column: value (optional).",
    )
    output_dataset = forms.CharField(
        required=False,
        max_length=200,
        help_text="Dataset to write the predictions to (optional; a default name is derived).",
    )

    def spec(self) -> dict[str, Any]:
        """The inference spec for ``do_submit_job``: ``where`` and ``output_dataset`` when given."""
        spec: dict[str, Any] = {}
        if self.cleaned_data["where"]:
            spec["where"] = self.cleaned_data["where"]
        if self.cleaned_data["output_dataset"].strip():
            spec["output_dataset"] = self.cleaned_data["output_dataset"].strip()
        return spec


class EvaluationJobForm(ScopedForm):
    """An evaluation job (issue 15): the fields a model owner sets; the API takes every field of
    ``runners.evaluation.EvaluationSpec``. ``do_submit_job`` validates them against the data."""

    dataset_version = DatasetVersionChoiceField(
        label="Data to evaluate on", help_text="Labelled rows: held-out data, or the newest labelled data."
    )
    target = forms.CharField(max_length=200, help_text="The label column.")
    task = forms.ChoiceField(choices=[("classification", "Classification"), ("regression", "Regression")])
    # Not stripped: class labels keep their spaces (the adult data's " >50K").
    positive_label = forms.CharField(
        required=False,
        strip=False,
        max_length=200,
        help_text="Classification: the class decided on, exactly as in the data (fairness needs it).",
    )
    sensitive_attributes = forms.CharField(
        required=False, help_text="Columns to report fairness across, separated by commas (e.g. sex, race)."
    )
    slice_columns = forms.CharField(
        required=False, help_text="Columns to report metrics per value of, separated by commas."
    )
    champion_alias = forms.CharField(
        required=False,
        max_length=255,
        initial="production",
        help_text="Also evaluate the version holding this alias on the same rows and compare (empty: none).",
    )
    where = JSONObjectField(
        label="Row filter",
        widget=forms.TextInput(attrs={"placeholder": '{"split": "test"}'}),
        help_text="Evaluate only rows matching this JSON object of column: value (optional).",
    )

    def spec(self) -> dict[str, Any]:
        """The evaluation job's spec for ``do_submit_job`` (``runners.evaluation_jobs``)."""
        data = self.cleaned_data
        spec: dict[str, Any] = {
            "task": data["task"],
            "target": data["target"].strip(),
            "sensitive_attributes": comma_list(data["sensitive_attributes"]),
            "slice_columns": comma_list(data["slice_columns"]),
            "champion_alias": data["champion_alias"].strip() or None,
        }
        if data["positive_label"] != "":
            spec["positive_label"] = data["positive_label"]
        if data["where"]:
            spec["where"] = data["where"]
        return spec


class JobScheduleForm(ScopedForm):
    """A recurring job: a model (training), a model version (inference, evaluation) or an alias of
    a model (evaluation of its holder at each firing), a dataset whose latest version each firing
    uses (an evaluation: its newest labelled version), the spec as JSON and a cron expression."""

    name = forms.CharField(max_length=200)
    kind = forms.ChoiceField(
        choices=[(JobKind.TRAIN, "Training"), (JobKind.INFER, "Inference"), (JobKind.EVALUATE, "Evaluation")]
    )
    dataset = forms.ModelChoiceField(
        queryset=Dataset.objects.all(),
        help_text="Each run uses its latest version; an evaluation its newest version holding the "
        "target and the model's features.",
    )
    registered_model = forms.ModelChoiceField(
        queryset=RegisteredModel.objects.filter(deleted_at__isnull=True),
        required=False,
        label="Model",
        help_text="Training: the new versions are registered here. Evaluation of an alias: its model.",
    )
    model_version = forms.ModelChoiceField(
        queryset=ModelVersion.objects.select_related("model"),
        required=False,
        help_text="Inference, or the evaluation of one version.",
    )
    model_alias = forms.CharField(
        required=False,
        max_length=255,
        label="Alias",
        help_text="Evaluation: evaluate whoever holds this alias of the model at each run (e.g. production).",
    )
    spec = JSONObjectField(
        widget=forms.Textarea(
            attrs={"rows": 3, "placeholder": '{"target": "cnt", "features": ["temp", "hum"]}'}
        ),
        help_text='The job\'s spec, as for a job; may add "start_window" to start off-peak.',
    )
    cron = forms.CharField(
        max_length=100,
        initial="0 2 * * 1",
        help_text="minute hour day-of-month month day-of-week (here: Mondays at 02:00).",
    )
    cron_timezone = forms.CharField(max_length=64, initial="UTC", label="Timezone", help_text="An IANA name.")

    def options(self) -> dict[str, Any]:
        """The keyword arguments of ``do_create_job_schedule``."""
        return dict(self.cleaned_data)


class BudgetForm(ScopedForm):
    """A team's monthly budget (set, or changed if it has one); teams the user manages only."""

    team = forms.ModelChoiceField(queryset=Team.objects.all())
    monthly_limit = forms.DecimalField(min_value=0, max_digits=14, decimal_places=2, label="Monthly limit")
    holds_jobs = forms.BooleanField(
        required=False,
        initial=True,
        label="Hold new jobs once passed",
        help_text="Until an owner releases them.",
    )

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, user=user, **kwargs)
        field = self.fields["team"]
        field.queryset = Team.objects.restrict(user, MANAGE)  # type: ignore[attr-defined]
        teams = list(field.queryset[:2])  # type: ignore[attr-defined]
        field.initial = teams[0].pk if len(teams) == 1 else None


class ServingPolicyForm(forms.Form):
    """An alias's serving policy (issue 17); the version choices are the model's own."""

    alias = forms.CharField(max_length=255, initial="production")
    canary_version = forms.ModelChoiceField(queryset=ModelVersion.objects.none(), required=False)
    canary_percent = forms.IntegerField(min_value=0, max_value=100, initial=0, help_text="% of requests.")
    shadow_version = forms.ModelChoiceField(
        queryset=ModelVersion.objects.none(), required=False, help_text="Scores every request, never answers."
    )

    def __init__(self, *args, model: RegisteredModel, **kwargs):
        super().__init__(*args, **kwargs)
        versions = ModelVersion.objects.filter(model=model, status=ModelVersion.Status.READY).select_related(
            "model"
        )
        for name in ("canary_version", "shadow_version"):
            self.fields[name].queryset = versions  # type: ignore[attr-defined]


class PredictionTokenForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="Which application calls with it.")
    expires_in_days = forms.IntegerField(min_value=1, max_value=3650, required=False)
