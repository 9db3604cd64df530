"""Registry routes of the MLflow REST API, under ``/api/2.0/mlflow/``; the last one answers every
path nobody serves with a JSON 404 ``ENDPOINT_NOT_FOUND`` (``config/mlflow_urls.py`` mounts the
tracking routes before these)."""

from django.urls import re_path

from governance.api.mlflow.base import endpoint_not_found

urlpatterns: list = [
    re_path(r"^.*$", endpoint_not_found, name="mlflow_endpoint_not_found"),
]

# For /api/2.0/mlflow-artifacts/, after the artifact proxy's own routes.
artifact_fallback_urlpatterns: list = [
    re_path(r"^.*$", endpoint_not_found, name="mlflow_artifacts_endpoint_not_found"),
]
