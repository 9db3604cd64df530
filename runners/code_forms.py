"""Forms of the code pages (issue 17): a new code project, a new code version."""

from __future__ import annotations

from django import forms

from governance.forms import ScopedForm
from governance.models import Team
from runners.code_versions import template_names


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
