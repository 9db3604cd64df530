"""UI forms for the registry. They parse input only: the actions decide who may do what."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from django import forms
from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.db.models import QuerySet

from governance.datafiles import loads_json_object
from governance.models import PlatformRole, Team, TeamRole
from governance.permissions import MANAGE, VIEW

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser


class JSONObjectField(forms.CharField):
    """A JSON object typed into a text box; blank is ``{}``. Parsed strictly
    (``governance.datafiles.loads_json_object``): NaN, Infinity, numbers beyond a float's range and
    NUL characters are refused here, not by the database as a 500."""

    widget = forms.Textarea(attrs={"rows": 2})

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("required", False)
        super().__init__(*args, **kwargs)

    def prepare_value(self, value: Any) -> Any:
        return json.dumps(value) if isinstance(value, dict) else value

    def to_python(self, value: Any) -> dict[str, Any]:
        value = super().to_python(value)
        if not value or not value.strip():
            return {}
        try:
            return loads_json_object(value)
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from exc


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


class DatasetVersionEraseForm(forms.Form):
    """Erase a dataset version (GDPR Art. 17): why, kept in the audit event."""

    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="The request or rule behind the erasure (e.g. a data subject's request number).",
    )


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


class ModelVersionCardForm(forms.Form):
    """A version's description and the model card items its owner writes (issue 12)."""

    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False)
    intended_purpose = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 4}),
        required=False,
        help_text="What the version is for, who uses its predictions and for which decisions.",
    )
    known_limitations = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 4}),
        required=False,
        help_text="Where it must not be used, known failure modes, populations the training data lacks.",
    )


def style_audit_filters(form: forms.Form, user: AbstractBaseUser) -> None:
    """Give the audit trail's filter form UTC time fields and a team select instead of raw ids.

    Plain text, not the browser's datetime picker: that shows the browser's locale (a 12-hour
    clock in some) beside a trail shown in UTC on a 24-hour clock. An offset may be typed.
    """
    for name, label in (("since", "Since (UTC)"), ("until", "Until (UTC)")):
        form.fields[name].widget = forms.DateTimeInput(
            attrs={"placeholder": "2026-01-31 17:45", "inputmode": "numeric", "spellcheck": "false"}
        )
        form.fields[name].label = label
    teams = Team.objects.restrict(user, VIEW)
    form.fields["team"].widget = forms.Select(choices=[("", "Any team"), *((t.pk, t.name) for t in teams)])
    form.fields["q"].widget.attrs["placeholder"] = "object, actor or action"
    # A version's id (its page links here): a select of every version would be thousands long.
    form.fields["model_version"].widget = forms.NumberInput(attrs={"min": 1})


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


# People, roles, tokens, promotions ----------------------------------------------------------


class UserCreateForm(forms.Form):
    username = forms.RegexField(r"^[\w.@+-]{1,150}$", max_length=150, help_text="Letters, digits and @.+-_")
    email = forms.EmailField(required=False)
    password = forms.CharField(
        widget=forms.PasswordInput,
        required=False,
        help_text="Leave empty for a login that cannot be used until a password is set.",
    )

    def clean(self):
        data = super().clean()
        if data.get("password") and data.get("username"):
            candidate = get_user_model()(username=data["username"], email=data.get("email", ""))
            try:
                validate_password(data["password"], candidate)
            except forms.ValidationError as exc:
                self.add_error("password", exc)
        return data


class TeamCreateForm(forms.Form):
    name = forms.CharField(max_length=100)
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False)


class MembershipGrantForm(forms.Form):
    """Give a user a role in a team the requester manages (a new membership or a changed role)."""

    username = forms.CharField(max_length=150)
    team = forms.ModelChoiceField(queryset=Team.objects.all())
    # The least powerful role is the default: a careless click should not make an owner.
    role = forms.ChoiceField(choices=TeamRole.choices, initial=TeamRole.VIEWER)

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        # Only teams the requester may manage; the action re-checks inside its transaction.
        teams = Team.objects.restrict(user, MANAGE)
        self.fields["team"].queryset = teams
        if "team" not in self.initial and len(first_two := list(teams[:2])) == 1:
            self.fields["team"].initial = first_two[0].pk

    def clean(self):
        data = super().clean()
        # The username is looked up only for a team the requester manages: answering "no such
        # user" to anyone else would tell them which usernames exist.
        if "team" in data and "username" in data:
            try:
                data["username"] = _active_user(data["username"])
            except forms.ValidationError as exc:
                self.add_error("username", exc)
        return data


class PlatformRoleGrantForm(forms.Form):
    """Make a user admin or compliance officer. For platform admins only: the people page
    refuses anyone else before validating, so the username is never looked up for them."""

    username = forms.CharField(max_length=150)
    # No default: granting platform-wide rights is always an explicit choice.
    role = forms.ChoiceField(choices=[("", "---------"), *PlatformRole.choices])

    def clean_username(self):
        return _active_user(self.cleaned_data["username"])


def _active_user(username: str):
    # NFKC-normalised as logins and new usernames are (AbstractBaseUser.normalize_username).
    user_model = get_user_model()
    username = user_model.normalize_username(username.strip())
    user = user_model.objects.filter(username=username, is_active=True).first()
    if user is None:
        raise forms.ValidationError(f"no active user named {username!r}")
    return user


class ApiTokenForm(forms.Form):
    EXPIRY_CHOICES = [("", "Never"), ("7", "In 7 days"), ("30", "In 30 days"), ("90", "In 90 days")]

    name = forms.CharField(max_length=100, help_text="What uses it, e.g. “nightly retraining”.")
    is_read_only = forms.BooleanField(
        required=False, initial=True, label="Read-only", help_text="Refused on any request that changes data."
    )
    expires_in_days = forms.TypedChoiceField(
        choices=EXPIRY_CHOICES, coerce=int, empty_value=None, required=False, label="Expires", initial="90"
    )


class AlertAcknowledgementField(forms.TypedMultipleChoiceField):
    """Alert ids ticked on the page: any id is taken (an alert resolved since the page was shown
    is not an error); the action decides whether they cover the alerts open now."""

    def valid_value(self, value: Any) -> bool:
        return str(value).isascii() and str(value).isdigit() and len(str(value)) <= 19


class PromotionRequestForm(forms.Form):
    # Any alias name; the action checks MLflow's alias rule (issue 9).
    alias = forms.CharField(
        max_length=255,
        initial="production",
        strip=False,
        help_text="Letters, digits, _ and -; the team's protected aliases move only this way.",
    )
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 2}), required=False, help_text="What the approver should know."
    )
    acknowledge_alerts = AlertAcknowledgementField(
        required=False,
        coerce=int,
        widget=forms.CheckboxSelectMultiple,
        label="I have read these unresolved critical alerts and request this version anyway",
        help_text="The approver sees what you acknowledged.",
    )

    def __init__(self, *args: Any, critical_alerts: list[dict[str, Any]] | None = None, **kwargs: Any):
        """``critical_alerts`` (``actions.promotions.critical_alerts``): one box each, so an alert
        raised after the page was shown is one the requester has not ticked (issue 14). Without
        any, no boxes."""
        super().__init__(*args, **kwargs)
        if critical_alerts:
            self.fields["acknowledge_alerts"].choices = [
                (alert["id"], f"Alert #{alert['id']}: {alert['title']}") for alert in critical_alerts
            ]
        else:
            del self.fields["acknowledge_alerts"]


class PromotionDecisionForm(forms.Form):
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 2}), required=False, help_text="Required to reject."
    )
    override_reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 2}),
        required=False,
        label="Override failing gates",
        help_text="Why the failing promotion gates may be overridden. Your override is recorded and "
        "audited; a second approver must then approve.",
    )

    def __init__(self, *args: Any, show_override: bool = True, **kwargs: Any):
        super().__init__(*args, **kwargs)
        # Offered only while a gate fails (issue 15): otherwise there is nothing to override.
        if not show_override:
            del self.fields["override_reason"]


# Browsers must not fill these in with the saved password of whoever is typing (an admin's own).
NEW_PASSWORD = forms.PasswordInput(attrs={"autocomplete": "new-password"})


class _TwicePasswordForm(forms.Form):
    """A new password typed twice; the actions validate it (``governance.actions.passwords``)."""

    new_field = "password"

    def clean(self):
        data = super().clean()
        first, again = data.get(self.new_field), data.get(f"{self.new_field}_again")
        if first and again and first != again:
            self.add_error(f"{self.new_field}_again", "the two passwords differ")
        return data


class SetPasswordForm(_TwicePasswordForm):
    """An admin sets another user's password."""

    password = forms.CharField(widget=NEW_PASSWORD, strip=False)
    password_again = forms.CharField(widget=NEW_PASSWORD, strip=False, label="Password, again")


class OwnPasswordForm(_TwicePasswordForm):
    """A user changes their own password."""

    new_field = "new_password"
    old_password = forms.CharField(
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
        strip=False,
        label="Current password",
    )
    new_password = forms.CharField(widget=NEW_PASSWORD, strip=False)
    new_password_again = forms.CharField(widget=NEW_PASSWORD, strip=False, label="New password, again")


class GatePolicyForm(forms.Form):
    """The gates of one protected alias (issue 15), conditions as JSON; the action validates them."""

    team = forms.ModelChoiceField(queryset=Team.objects.none())
    alias = forms.CharField(max_length=255, initial="production")
    conditions = forms.JSONField(
        widget=forms.Textarea(attrs={"rows": 8}),
        initial=list,
        help_text='A list, e.g. [{"kind": "metric_bound", "metric": "f1", "min": 0.5}, '
        '{"kind": "fairness_ratio_at_least", "value": 0.8}, {"kind": "no_open_critical_alert"}]. '
        "Kinds: metric_bound, not_worse_than_champion, fairness_ratio_at_least, "
        "robustness_drop_at_most, no_open_critical_alert, evaluation_max_age_days, pii_policy_satisfied.",
    )
    evaluation = forms.JSONField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text="Optional: the evaluation a promotion request starts when the candidate has none young "
        'enough, e.g. {"dataset": 3, "task": "classification", "target": "label", "positive_label": "1", '
        '"sensitive_attributes": ["sex"], "slice_columns": ["region"]} (dataset: an id; its newest '
        "version is evaluated on). Empty: none is started.",
    )

    def __init__(self, *args: Any, user: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        # Only the teams the user manages: the action re-checks MANAGE inside its transaction.
        self.fields["team"].queryset = Team.objects.restrict(user, "manage")


class PiiPolicyForm(forms.Form):
    """A team's PII policy (issue 12): the default rule and one select per kind ("" = the
    default). ``rules(cleaned_data)`` is what ``do_set_pii_policy`` validates again."""

    RULE_CHOICES = [
        ("allow", "allow"),
        ("block", "block: jobs refused"),
        ("mask", "mask: jobs read a masked copy"),
        ("hash", "hash: keyed hash, joins still work"),
        ("drop", "drop: column removed from the copy"),
    ]

    default = forms.ChoiceField(
        choices=RULE_CHOICES, initial="allow", help_text="For every kind left on default."
    )

    def __init__(self, *args: Any, **kwargs: Any):
        from governance.pii import ALL_KINDS

        super().__init__(*args, **kwargs)
        for kind in ALL_KINDS:
            self.fields[kind] = forms.ChoiceField(
                choices=[("", "(default)"), *self.RULE_CHOICES], required=False, label=kind
            )

    @staticmethod
    def rules(data: dict[str, Any]) -> dict[str, str]:
        """The cleaned ``data`` as policy rules: the default, and each kind given its own rule."""
        return {"default": data["default"]} | {
            name: rule for name, rule in data.items() if name != "default" and rule
        }
