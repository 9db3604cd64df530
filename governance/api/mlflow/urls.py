"""Registry routes of the MLflow REST API, under ``/api/2.0/mlflow/``; the last one answers every
path nobody serves with a JSON 404 ``ENDPOINT_NOT_FOUND`` (``config/mlflow_urls.py`` mounts the
tracking routes before these)."""

from django.urls import path, re_path

from governance.api.mlflow import registry as views
from governance.api.mlflow.base import by_method, endpoint_not_found

urlpatterns: list = [
    path("registered-models/create", views.create_registered_model),
    path("registered-models/get", views.get_registered_model),
    path("registered-models/rename", views.rename_registered_model),
    path("registered-models/update", views.update_registered_model),
    path("registered-models/delete", views.delete_registered_model),
    path("registered-models/search", views.search_registered_models),
    path("registered-models/get-latest-versions", views.get_latest_versions),
    path("registered-models/set-tag", views.set_registered_model_tag),
    path("registered-models/delete-tag", views.delete_registered_model_tag),
    path(
        "registered-models/alias",
        by_method(
            views.set_registered_model_alias,
            views.get_model_version_by_alias,
            views.delete_registered_model_alias,
        ),
    ),
    path("model-versions/create", views.create_model_version),
    path("model-versions/get", views.get_model_version),
    path("model-versions/update", views.update_model_version),
    path("model-versions/delete", views.delete_model_version),
    path("model-versions/transition-stage", views.transition_model_version_stage),
    path("model-versions/get-download-uri", views.get_model_version_download_uri),
    path("model-versions/set-tag", views.set_model_version_tag),
    path("model-versions/delete-tag", views.delete_model_version_tag),
    path("model-versions/search", views.search_model_versions),
    re_path(r"^.*$", endpoint_not_found, name="mlflow_endpoint_not_found"),
]

# For /api/2.0/mlflow-artifacts/, after the artifact proxy's own routes.
artifact_fallback_urlpatterns: list = [
    re_path(r"^.*$", endpoint_not_found, name="mlflow_artifacts_endpoint_not_found"),
]
