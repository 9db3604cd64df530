"""UI forms for the registry. They parse input only: the actions decide who may do what."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django import forms
from django.contrib.auth import get_user_model
from django.db.models import QuerySet

from governance.models import Team
from governance.permissions import VIEW

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser


def visible_users(user: AbstractBaseUser) -> QuerySet:
    """Users who belong to a team ``user`` may view, by username (owners, actors to filter by)."""
    return (
        get_user_model()
        .objects.filter(memberships__team__in=Team.objects.restrict(user, VIEW))
        .distinct()
        .order_by("username")
    )


def restrict_choices(form: forms.Form, user: AbstractBaseUser) -> None:
    """Limit every model choice of ``form`` to rows ``user`` may view.

    Without this a select (a filter's team list, a form's dataset versions) would print the names
    of other teams' objects, and an id out of scope would validate.
    """
    user_model = get_user_model()
    for field in form.fields.values():
        queryset = getattr(field, "queryset", None)
        if queryset is None:
            continue
        if hasattr(queryset, "restrict"):
            field.queryset = queryset.restrict(user, VIEW)
        elif queryset.model is user_model:
            field.queryset = visible_users(user)


def comma_list(raw: str) -> list[str]:
    """``"a, b,,c "`` -> ``["a", "b", "c"]``: column names typed into one text box."""
    return [part.strip() for part in raw.split(",") if part.strip()]


class ScopedForm(forms.Form):
    """A form whose model choices are restricted to what ``user`` may view.

    A ``team`` field is preselected when the user sees exactly one team (most people).
    """

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.user = user
        restrict_choices(self, user)
        team = self.fields.get("team")
        if team is not None:
            teams = list(team.queryset[:2])
            if len(teams) == 1:
                team.initial = teams[0].pk


class DatasetForm(ScopedForm):
    team = forms.ModelChoiceField(queryset=Team.objects.all())
    name = forms.CharField(max_length=200)
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False)


class DatasetVersionUploadForm(forms.Form):
    file = forms.FileField(help_text="CSV (UTF-8, with a header row) or Parquet.")
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False)


class RegisteredModelForm(ScopedForm):
    team = forms.ModelChoiceField(queryset=Team.objects.all())
    name = forms.CharField(max_length=200)
    owner = forms.ModelChoiceField(
        queryset=get_user_model().objects.all(),
        help_text="Receives the model's alerts; must be a member of the team.",
    )
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False)

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, user=user, **kwargs)
        self.fields["owner"].label_from_instance = lambda member: member.get_username()
        self.fields["owner"].initial = user.pk


def style_audit_filters(form: forms.Form, user: AbstractBaseUser) -> None:
    """Give the audit trail's filter form date pickers and a team select instead of raw ids."""
    for name, label in (("since", "Since"), ("until", "Until")):
        form.fields[name].widget = forms.DateTimeInput(attrs={"type": "datetime-local"})
        form.fields[name].label = label
    teams = Team.objects.restrict(user, VIEW)
    form.fields["team"].widget = forms.Select(choices=[("", "Any team"), *((t.pk, t.name) for t in teams)])
    form.fields["q"].widget.attrs["placeholder"] = "object, actor or action"


def style_filters(form: forms.Form) -> None:
    """Make a list page's filter blanks read "Any" (the FilterSet already restricted the choices)."""
    for field in form.fields.values():
        if isinstance(field, forms.ModelChoiceField):
            field.empty_label = "Any"
        elif hasattr(field, "empty_label"):
            # django-filter adds the blank choice lazily; the widget holds a copy of the iterator.
            field.empty_label = "Any"
            field.widget.choices = field.choices
        elif isinstance(field, forms.NullBooleanField):
            field.widget.choices = [("unknown", "Any"), ("true", "Yes"), ("false", "No")]
