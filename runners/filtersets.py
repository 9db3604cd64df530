from governance.filtersets import RestrictedFilterSet
from runners.models import Budget, Job, JobSchedule


class JobFilterSet(RestrictedFilterSet):
    class Meta:
        model = Job
        fields = ["kind", "state", "team", "dataset_version", "registered_model", "model_version", "schedule"]


class JobScheduleFilterSet(RestrictedFilterSet):
    class Meta:
        model = JobSchedule
        fields = ["kind", "team", "is_enabled", "dataset", "registered_model", "model_version"]


class BudgetFilterSet(RestrictedFilterSet):
    class Meta:
        model = Budget
        fields = ["team"]
