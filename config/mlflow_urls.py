"""The MLflow REST API's URL space: registry routes from governance, tracking and artifact routes
from runners. Whatever neither serves is a JSON 404 ``ENDPOINT_NOT_FOUND`` (governance's
catch-all, added in governance.api.mlflow.urls), which the client needs to fall back between routes."""

from django.urls import include, path, re_path

from governance.api.mlflow import urls as registry
from governance.api.mlflow.base import endpoint_not_found
from runners.api.mlflow import urls as tracking

urlpatterns = [
    path("api/2.0/mlflow-artifacts/", include(tracking.artifact_urlpatterns)),
    path("api/2.0/mlflow-artifacts/", include(registry.artifact_fallback_urlpatterns)),
    path("api/2.0/mlflow/", include(tracking.urlpatterns)),
    path("api/2.0/mlflow/", include(registry.urlpatterns)),
    # The prefixes themselves, without their slash: JSON too, never Django's HTML 404.
    re_path(r"^api/2\.0/mlflow(?:-artifacts)?$", endpoint_not_found),
    # MLflow's other API spaces (3.0 endpoints, the UI's ajax-api): Steward serves none, and the
    # client falls back only on a JSON ENDPOINT_NOT_FOUND.
    re_path(r"^(?:api/3\.0/mlflow|ajax-api/[23]\.0/mlflow)(?:[/-].*)?$", endpoint_not_found),
]
