from django.urls import path

from runners import code_views, views
from runners.openlineage import views as openlineage_views

urlpatterns = [
    path("jobs/", views.job_list, name="job_list"),
    path("jobs/<int:pk>/", views.job_detail, name="job_detail"),
    path("jobs/schedules/", views.job_schedule_list, name="job_schedule_list"),
    path("jobs/schedules/<int:pk>/", views.job_schedule_detail, name="job_schedule_detail"),
    *[
        path(
            f"jobs/schedules/<int:pk>/{verb}/",
            views.job_schedule_button,
            {"verb": verb},
            name=f"job_schedule_{verb}",
        )
        for verb in views.SCHEDULE_BUTTONS
    ],
    path("jobs/<int:pk>/progress/", views.job_progress, name="job_progress"),
    path("jobs/<int:pk>/cancel/", views.job_cancel, name="job_cancel"),
    path("jobs/<int:pk>/release/", views.job_release, name="job_release"),
    path("usage/", views.usage, name="usage"),
    path("openlineage/", openlineage_views.openlineage_list, name="openlineage_list"),
    path(
        "openlineage/jobs/<int:pk>/", openlineage_views.openlineage_job_detail, name="openlineage_job_detail"
    ),
    path(
        "openlineage/runs/<int:pk>/", openlineage_views.openlineage_run_detail, name="openlineage_run_detail"
    ),
    path(
        "openlineage/datasets/<int:pk>/",
        openlineage_views.openlineage_dataset_detail,
        name="openlineage_dataset_detail",
    ),
    path("code/", code_views.code_project_list, name="code_project_list"),
    path("code/<int:pk>/", code_views.code_project_detail, name="code_project_detail"),
    path("code-versions/compare/", code_views.code_version_compare, name="code_version_compare"),
    path("code-versions/<int:pk>/", code_views.code_version_detail, name="code_version_detail"),
    path("code-versions/<int:pk>/files/<path:path>", code_views.code_version_file, name="code_version_file"),
    path("model-versions/<int:pk>/infer/", views.model_version_infer, name="model_version_infer"),
    path("model-versions/<int:pk>/evaluate/", views.model_version_evaluate, name="model_version_evaluate"),
    path("models/<int:pk>/serving/", views.model_serving, name="model_serving"),
    path("models/<int:pk>/prediction-tokens/", views.prediction_token_create, name="prediction_token_create"),
]
