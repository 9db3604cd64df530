"""Filters shared by the API and the UI lists."""

import django_filters
from django.db.models import Q

from governance.models import AuditEvent, Dataset, DatasetVersion, ModelVersion, RegisteredModel


class AuditEventFilterSet(django_filters.FilterSet):
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


class DatasetFilterSet(django_filters.FilterSet):
    q = django_filters.CharFilter(field_name="name", lookup_expr="icontains", label="Name")

    class Meta:
        model = Dataset
        fields = ["team", "q"]


class DatasetVersionFilterSet(django_filters.FilterSet):
    class Meta:
        model = DatasetVersion
        fields = ["dataset", "source", "format"]


class RegisteredModelFilterSet(django_filters.FilterSet):
    q = django_filters.CharFilter(field_name="name", lookup_expr="icontains", label="Name")

    class Meta:
        model = RegisteredModel
        fields = ["team", "owner", "q"]


class ModelVersionFilterSet(django_filters.FilterSet):
    class Meta:
        model = ModelVersion
        fields = ["model", "status"]
