from governance.filtersets import RestrictedFilterSet
from runners.models import Budget, Job


class JobFilterSet(RestrictedFilterSet):
    class Meta:
        model = Job
        fields = ["kind", "state", "team", "dataset_version", "registered_model", "model_version"]


class BudgetFilterSet(RestrictedFilterSet):
    class Meta:
        model = Budget
        fields = ["team"]
