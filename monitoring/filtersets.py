import django_filters

from monitoring.models import Alert, DriftCheck


class DriftCheckFilterSet(django_filters.FilterSet):
    class Meta:
        model = DriftCheck
        fields = ["model_version", "state", "is_dataset_drift", "team"]


class AlertFilterSet(django_filters.FilterSet):
    class Meta:
        model = Alert
        fields = ["state", "severity", "model_version", "owner", "team"]
