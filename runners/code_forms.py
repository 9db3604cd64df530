"""Forms of the code pages (issue 17): a new code project, a new code version, a run of one."""

from __future__ import annotations

from typing import Any

from django import forms
from django.db.models import QuerySet

from governance.forms import JSONObjectField, ScopedForm, comma_list
from governance.keyset import MAX_BIGINT
from governance.models import DatasetVersion, ModelVersion, Team
from runners.code_versions import template_names
from runners.models import CodeVersion


class CodeProjectForm(ScopedForm):
    team = forms.ModelChoiceField(queryset=Team.objects.all())
    name = forms.CharField(max_length=200)
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False)


class CodeVersionForm(forms.Form):
    """An archive or a template (``do_register_code_version`` wants exactly one)."""

    archive = forms.FileField(
        required=False,
        help_text=".zip or .tar(.gz/.bz2/.xz) of the code, with an MLproject file or top-level .py files.",
    )
    template = forms.ChoiceField(required=False, help_text="Or one of the templates Steward ships.")
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["template"].choices = [("", "(none: upload an archive)")] + [
            (name, name) for name in template_names()
        ]


class CodeRunForm(forms.Form):
    """A run of a code version's entry point (``code_runs.do_submit_code_run``, as the API's
    ``kind: code``). Inputs and models are ``{name: id}`` objects resolved among what ``user`` may
    view: an id out of scope reads as unknown, naming the field; the action checks the rest."""

    entry_point = forms.ChoiceField()
    parameters = JSONObjectField(help_text="{name: value}; left out: the entry point's default.")
    inputs = JSONObjectField(
        help_text="{name: dataset version id}; the code finds each at $STEWARD_INPUT_<NAME>."
    )
    models = JSONObjectField(help_text="{name: model version id} the run may read (optional).")
    outputs = forms.CharField(
        required=False, help_text="Dataset names the run writes, comma-separated (data preparation)."
    )
    experiment_name = forms.CharField(
        required=False, max_length=500, help_text="Blank: the code project's name."
    )

    def __init__(self, *args: Any, version: CodeVersion, user: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.user = user
        points = version.entry_points or {}
        names = sorted(points, key=lambda name: (name != "main", name))
        self.fields["entry_point"].choices = [(name, name) for name in names]
        if names:
            # The first entry point's defaults, so a run of a template is one click; parameters
            # without a default are left out (the action names them when they are missing).
            declared = points[names[0]].get("parameters") or {}
            # By name: PostgreSQL's jsonb keeps no declaration order, so this reads the same on both.
            self.fields["parameters"].initial = {
                pname: p["default"] for pname, p in sorted(declared.items()) if p.get("default") is not None
            }

    def _resolved(self, field: str, queryset: QuerySet) -> dict[str, Any]:
        given = self.cleaned_data.get(field) or {}
        ids = {}
        for name, raw in given.items():
            if isinstance(raw, bool) or not isinstance(raw, int) or not 1 <= raw <= MAX_BIGINT:
                raise forms.ValidationError(f"{name}: expected an id (a positive integer), got {raw!r}")
            ids[name] = raw
        found = queryset.restrict(self.user).in_bulk(list(ids.values()))
        unknown = sorted(name for name, pk in ids.items() if pk not in found)
        if unknown:
            raise forms.ValidationError(
                f"no such {queryset.model._meta.verbose_name} for {', '.join(unknown)}"
            )
        return {name: found[pk] for name, pk in ids.items()}

    def clean_inputs(self) -> dict[str, DatasetVersion]:
        return self._resolved("inputs", DatasetVersion.objects.all())

    def clean_models(self) -> dict[str, ModelVersion]:
        return self._resolved("models", ModelVersion.objects.all())

    def clean_outputs(self) -> dict[str, list[str]]:
        names = comma_list(self.cleaned_data.get("outputs") or "")
        return {"datasets": names} if names else {}

    def clean_experiment_name(self) -> str | None:
        return self.cleaned_data.get("experiment_name") or None
