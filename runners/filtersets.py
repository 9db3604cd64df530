import django_filters

from runners.models import Job


class JobFilterSet(django_filters.FilterSet):
    class Meta:
        model = Job
        fields = ["kind", "state", "team", "dataset_version", "registered_model", "model_version"]
