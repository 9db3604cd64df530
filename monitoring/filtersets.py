from governance.filtersets import RestrictedFilterSet
from monitoring.models import Alert, DriftCheck


class DriftCheckFilterSet(RestrictedFilterSet):
    class Meta:
        model = DriftCheck
        fields = ["model_version", "state", "is_dataset_drift", "team"]


class AlertFilterSet(RestrictedFilterSet):
    class Meta:
        model = Alert
        fields = ["state", "severity", "model_version", "owner", "team"]
