"""Tracking routes of the MLflow REST API, under ``/api/2.0/mlflow/`` (and the artifact proxy under
``/api/2.0/mlflow-artifacts/``, see ``artifact_urlpatterns``)."""

urlpatterns: list = []
artifact_urlpatterns: list = []
