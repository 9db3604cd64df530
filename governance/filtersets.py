"""Filters shared by the API and the UI lists."""

import django_filters
from django.db.models import Q

from governance.forms import restrict_choices
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


class AuditEventFilterSet(RestrictedFilterSet):
    actor = django_filters.CharFilter(field_name="actor_label", label="Actor (username or system)")
    action = django_filters.CharFilter(field_name="action", lookup_expr="startswith")
    object_type = django_filters.CharFilter()
    object_id = django_filters.CharFilter()
    team = django_filters.NumberFilter(field_name="team_id")
    since = django_filters.IsoDateTimeFilter(field_name="timestamp", lookup_expr="gte")
    until = django_filters.IsoDateTimeFilter(field_name="timestamp", lookup_expr="lt")
    q = django_filters.CharFilter(method="search", label="Text")

    class Meta:
        model = AuditEvent
        fields = ["actor", "action", "object_type", "object_id", "team", "since", "until", "q"]

    def search(self, queryset, name, value):
        return queryset.filter(
            Q(object_repr__icontains=value)
            | Q(actor_label__icontains=value)
            | Q(on_behalf_of_label__icontains=value)
            | Q(action__icontains=value)
        )


class DatasetFilterSet(RestrictedFilterSet):
    q = django_filters.CharFilter(field_name="name", lookup_expr="icontains", label="Name")

    class Meta:
        model = Dataset
        fields = ["team", "q"]


class DatasetVersionFilterSet(RestrictedFilterSet):
    class Meta:
        model = DatasetVersion
        fields = ["dataset", "source", "format"]


class RegisteredModelFilterSet(RestrictedFilterSet):
    q = django_filters.CharFilter(field_name="name", lookup_expr="icontains", label="Name")

    class Meta:
        model = RegisteredModel
        fields = ["team", "owner", "q"]


class ModelVersionFilterSet(RestrictedFilterSet):
    class Meta:
        model = ModelVersion
        fields = ["model", "status"]
