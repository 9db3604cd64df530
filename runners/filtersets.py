from governance.filtersets import NfcCharFilter, RestrictedFilterSet
from runners.models import Budget, CodeProject, CodeVersion, Job, JobSchedule


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


class CodeProjectFilterSet(RestrictedFilterSet):
    # Get by name: names are unique per team, so one row per team at most.
    name = NfcCharFilter(field_name="name", label="Name (exact)")

    class Meta:
        model = CodeProject
        fields = ["team", "name"]


class CodeVersionFilterSet(RestrictedFilterSet):
    class Meta:
        model = CodeVersion
        fields = ["project", "source"]
