from django.http import HttpResponse
from django.urls import path


def _tmp(request, pk=None):
    return HttpResponse("tmp")


urlpatterns = [
    path(f"{n}/<int:pk>/", _tmp, name=n)
    for n in [
        "dataset_detail",
        "dataset_version_detail",
        "model_detail",
        "model_version_detail",
        "audit_event_detail",
        "job_detail",
        "drift_check_detail",
        "alert_detail",
    ]
] + [path("login/", _tmp, name="login"), path("", _tmp, name="dashboard")]
