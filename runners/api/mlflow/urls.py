"""Tracking routes of the MLflow REST API, under ``/api/2.0/mlflow/`` (and the artifact proxy under
``/api/2.0/mlflow-artifacts/``, see ``artifact_urlpatterns``). Paths and methods are MLflow's
(``mlflow/protos/service.proto``); a method a path does not serve is ENDPOINT_NOT_FOUND."""

from django.urls import path

from governance.api.mlflow.base import by_method
from runners.api.mlflow import artifacts, views

urlpatterns: list = [
    path("experiments/create", views.create_experiment),
    path("experiments/get", views.get_experiment),
    path("experiments/get-by-name", views.get_experiment_by_name),
    path("experiments/search", views.search_experiments),
    path("experiments/update", views.update_experiment),
    path("experiments/delete", views.delete_experiment),
    path("experiments/restore", views.restore_experiment),
    path("experiments/set-experiment-tag", views.set_experiment_tag),
    path("experiments/delete-experiment-tag", views.delete_experiment_tag),
    path("runs/create", views.create_run),
    path("runs/get", views.get_run),
    path("runs/update", views.update_run),
    path("runs/delete", views.delete_run),
    path("runs/restore", views.restore_run),
    path("runs/search", views.search_runs),
    path("runs/log-metric", views.log_metric),
    path("runs/log-parameter", views.log_param),
    path("runs/log-batch", views.log_batch),
    path("runs/log-inputs", views.log_inputs),
    path("runs/outputs", views.log_outputs),
    path("runs/log-model", views.log_model),
    path("runs/set-tag", views.set_tag),
    path("runs/delete-tag", views.delete_tag),
    path("metrics/get-history", views.get_metric_history),
    path("logged-models", views.create_logged_model),
    path("logged-models/search", views.search_logged_models),
    path(
        "logged-models/<str:model_id>",
        by_method(views.get_logged_model, views.finalize_logged_model, views.delete_logged_model),
    ),
    path("logged-models/<str:model_id>/tags", views.set_logged_model_tags),
    path("logged-models/<str:model_id>/tags/<path:tag_key>", views.delete_logged_model_tag),
    path("logged-models/<str:model_id>/params", views.log_logged_model_params),
]

artifact_urlpatterns: list = [
    path("artifacts", artifacts.list_artifacts),
    path("artifacts/", artifacts.list_artifacts),
    path("artifacts/<path:path>", artifacts.artifact),
]
