"""UI forms for drift checks; ``do_request_drift_check`` validates columns and the share."""

from __future__ import annotations

from django import forms

from governance.forms import ScopedForm, comma_list
from governance.models import DatasetVersion


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
