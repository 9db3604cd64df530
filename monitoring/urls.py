from django.urls import path

from monitoring import views

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("model-versions/<int:pk>/", views.model_version_detail, name="model_version_detail"),
    path("model-versions/<int:pk>/drift-check/", views.drift_check_request, name="drift_check_request"),
    path("drift-checks/", views.drift_check_list, name="drift_check_list"),
    path("drift-checks/<int:pk>/", views.drift_check_detail, name="drift_check_detail"),
    path("drift-checks/<int:pk>/report/", views.drift_check_report, name="drift_check_report"),
    path("alerts/", views.alert_list, name="alert_list"),
    path("alerts/<int:pk>/", views.alert_detail, name="alert_detail"),
    path("alerts/<int:pk>/acknowledge/", views.alert_acknowledge, name="alert_acknowledge"),
    path("alerts/<int:pk>/resolve/", views.alert_resolve, name="alert_resolve"),
]
