"""Registry routes of the MLflow REST API, under ``/api/2.0/mlflow/``."""

urlpatterns: list = []
