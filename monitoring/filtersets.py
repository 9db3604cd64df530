"""Filters shared by the monitoring API and UI lists (choices restricted to what the user may view)."""

import django_filters
from django.db.models import QuerySet

from governance.filtersets import RestrictedFilterSet
from monitoring.models import Alert, AlertState, Channel, DriftCheck, EscalationPolicy, Monitor, Notification


class DriftCheckFilterSet(RestrictedFilterSet):
    is_dataset_drift = django_filters.BooleanFilter(label="Dataset drifted")

    class Meta:
        model = DriftCheck
        fields = ["model_version", "monitor", "state", "is_dataset_drift", "team"]


class AlertFilterSet(RestrictedFilterSet):
    # "Unresolved" (open or acknowledged) is what a person works on: an acknowledged alert is
    # still breaching, and a list of only the open ones hid it (issue 14).
    state = django_filters.ChoiceFilter(
        choices=[("unresolved", "Unresolved (open or acknowledged)"), *AlertState.choices],
        method="filter_state",
    )

    def filter_state(self, queryset: QuerySet[Alert], name: str, value: str) -> QuerySet[Alert]:
        """``unresolved`` is open or acknowledged; any other value is that one state."""
        return queryset.unresolved() if value == "unresolved" else queryset.filter(state=value)

    class Meta:
        model = Alert
        fields = ["kind", "state", "severity", "model_version", "monitor", "owner", "team"]


class MonitorFilterSet(RestrictedFilterSet):
    class Meta:
        model = Monitor
        fields = ["model_version", "is_active", "team"]


class ChannelFilterSet(RestrictedFilterSet):
    class Meta:
        model = Channel
        fields = ["team", "kind", "is_active"]


class EscalationPolicyFilterSet(RestrictedFilterSet):
    class Meta:
        model = EscalationPolicy
        fields = ["team"]


class NotificationFilterSet(RestrictedFilterSet):
    class Meta:
        model = Notification
        fields = ["alert", "channel", "state", "kind"]
