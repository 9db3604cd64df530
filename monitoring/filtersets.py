"""Filters shared by the monitoring API and UI lists (choices restricted to what the user may view)."""

from governance.filtersets import RestrictedFilterSet
from monitoring.models import Alert, Channel, DriftCheck, EscalationPolicy, Monitor, Notification


class DriftCheckFilterSet(RestrictedFilterSet):
    class Meta:
        model = DriftCheck
        fields = ["model_version", "monitor", "state", "is_dataset_drift", "team"]


class AlertFilterSet(RestrictedFilterSet):
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
