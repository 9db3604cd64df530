"""UI forms for jobs. They turn typed text into a spec; ``do_submit_job`` validates the spec."""

from __future__ import annotations

from typing import Any

from django import forms

from governance.forms import JSONObjectField, ScopedForm, comma_list
from governance.models import DatasetVersion, RegisteredModel, Team
from governance.permissions import MANAGE


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
