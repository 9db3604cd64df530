"""Filters shared by the API and the UI lists."""

import datetime
import unicodedata

import django_filters
from django import forms
from django.apps import apps
from django.db.models import Q, QuerySet
from django_filters.fields import IsoDateTimeField

from governance.audit.subjects import events_about_model_version
from governance.forms import restrict_choices
from governance.keyset import MAX_BIGINT, is_utc_representable
from governance.models import AuditEvent, Dataset, DatasetVersion, ModelVersion, RegisteredModel


class RestrictedFilterSet(django_filters.FilterSet):
    """A FilterSet whose related-object choices hold only what the requesting user may view.

    Used by the API and the UI alike: ``?dataset=<another team's id>`` is then the same 400 as an
    unknown id (no existence leak), and no dropdown prints another team's names. The restriction
    is lazy: no query until a choice is validated or rendered.
    """

    @property
    def form(self):
        if not hasattr(self, "_form"):
            form = super().form
            if self.request is not None:
                restrict_choices(form, self.request.user)
        return self._form


class UtcIsoDateTimeField(IsoDateTimeField):
    """An ISO 8601 date/time that also exists in UTC: the database stores UTC, and a time at
    either end of the calendar with an offset would overflow on the way there (a 500)."""

    default_error_messages = {
        "out_of_range": "Enter a date/time between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z "
        "once converted to UTC.",
    }

    def to_python(self, value: object) -> datetime.datetime | None:
        parsed = super().to_python(value)
        if parsed is None:
            return None
        if not is_utc_representable(parsed):
            raise forms.ValidationError(self.error_messages["out_of_range"], code="out_of_range")
        # In UTC: Python takes offsets up to +-23:59, PostgreSQL only up to +-15:59 (a +16:00
        # sent as given was a 500, issue 13).
        return parsed.astimezone(datetime.UTC)


class UtcIsoDateTimeFilter(django_filters.IsoDateTimeFilter):
    field_class = UtcIsoDateTimeField


class IdFilter(django_filters.NumberFilter):
    """A row id: a whole number in 1..2**63-1. NumberFilter alone takes any decimal, and one
    beyond bigint overflows in the database adapter (a 500) instead of failing validation."""

    field_class = forms.IntegerField

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("min_value", 1)
        kwargs.setdefault("max_value", MAX_BIGINT)
        super().__init__(*args, **kwargs)

    def get_max_validator(self) -> None:
        return None  # max_value above is the bound; NumberFilter's 1e50 would add a second message


def object_type_choices() -> list[tuple[str, str]]:
    """``[(object_type, label)]`` for each object type the audit log holds, by label: the model's
    verbose name where the type is a model's name ("model version"), else the type itself. One
    ``DISTINCT`` over the ``(object_type, object_id)`` index."""
    names = {model._meta.model_name: str(model._meta.verbose_name) for model in apps.get_models()}
    types = AuditEvent.objects.order_by().values_list("object_type", flat=True).distinct()
    return sorted(((kind, names.get(kind, kind)) for kind in types if kind), key=lambda pair: pair[1])


class AuditEventFilterSet(RestrictedFilterSet):
    """Audit trail filters for the API list, its exports and the UI page. Every value is
    validated to fit the database (ids within bigint, times within UTC's range), so bad input is
    a 400 naming the field, never a 500 when the query runs."""

    actor = django_filters.CharFilter(field_name="actor_label", label="Actor (username or system)")
    action = django_filters.CharFilter(field_name="action", lookup_expr="startswith")
    # A chooser on the page (issue 12: "not free text"), a plain value for scripts: a type that
    # has no event yet lists nothing rather than refusing the query.
    object_type = django_filters.CharFilter(label="Object type")
    object_id = django_filters.CharFilter()
    team = IdFilter(field_name="team_id")
    since = UtcIsoDateTimeFilter(field_name="timestamp", lookup_expr="gte")
    until = UtcIsoDateTimeFilter(field_name="timestamp", lookup_expr="lt")
    q = django_filters.CharFilter(method="search", label="Text")
    # "Everything about this model version" (issue 12), by relation; an id outside the user's
    # teams is the same 400 as an unknown one (the choices are restricted).
    model_version = django_filters.ModelChoiceFilter(
        queryset=ModelVersion.objects.all(), method="about_model_version", label="About model version (id)"
    )

    class Meta:
        model = AuditEvent
        fields = [
            "actor",
            "action",
            "object_type",
            "object_id",
            "team",
            "since",
            "until",
            "q",
            "model_version",
        ]

    @property
    def form(self):
        if not hasattr(self, "_form"):
            form = super().form
            chosen = form.data.get("object_type") or ""

            cached: list[tuple[str, str]] = []

            def choices() -> list[tuple[str, str]]:
                # Rendering iterates the choices more than once: one query, on first use.
                if not cached:
                    types = object_type_choices()
                    if chosen and chosen not in dict(types):  # a link to a type with no event stays shown
                        types.append((chosen, chosen))
                    cached.extend([("", "any"), *types])
                return cached

            # A callable: the query runs when the page renders the chooser, never for the API.
            form.fields["object_type"].widget = forms.Select(choices=choices)
        return self._form

    def about_model_version(
        self, queryset: QuerySet[AuditEvent], name: str, value: ModelVersion
    ) -> QuerySet[AuditEvent]:
        return events_about_model_version(queryset, value)

    def search(self, queryset, name, value):
        return queryset.filter(
            Q(object_repr__icontains=value)
            | Q(actor_label__icontains=value)
            | Q(on_behalf_of_label__icontains=value)
            | Q(action__icontains=value)
        )


class NfcCharFilter(django_filters.CharFilter):
    """A name as stored: NFC-normalised first (``governance.names``), so a decomposed "é" finds
    the name typed with a composed one."""

    def filter(self, qs, value):
        return super().filter(qs, unicodedata.normalize("NFC", value) if value else value)


class DatasetFilterSet(RestrictedFilterSet):
    # Get by name: names are unique per team, so one row per team at most.
    name = NfcCharFilter(field_name="name", label="Name (exact)")
    prefix = NfcCharFilter(field_name="name", lookup_expr="startswith", label="Name starts with")
    q = django_filters.CharFilter(field_name="name", lookup_expr="icontains", label="Name contains")

    class Meta:
        model = Dataset
        fields = ["team", "name", "prefix", "q"]


class DatasetVersionFilterSet(RestrictedFilterSet):
    class Meta:
        model = DatasetVersion
        fields = ["dataset", "source", "format"]


class RegisteredModelFilterSet(RestrictedFilterSet):
    name = NfcCharFilter(field_name="name", label="Name (exact)")
    prefix = NfcCharFilter(field_name="name", lookup_expr="startswith", label="Name starts with")
    q = django_filters.CharFilter(field_name="name", lookup_expr="icontains", label="Name contains")

    class Meta:
        model = RegisteredModel
        fields = ["team", "owner", "name", "prefix", "q"]


class ModelVersionFilterSet(RestrictedFilterSet):
    class Meta:
        model = ModelVersion
        fields = ["model", "status"]
