from django.urls import path

from monitoring import views

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("metrics", views.metrics_view, name="metrics"),
    path("model-versions/<int:pk>/", views.model_version_detail, name="model_version_detail"),
    path("model-versions/<int:pk>/drift-check/", views.drift_check_request, name="drift_check_request"),
    path("model-versions/<int:pk>/monitors/new/", views.monitor_create, name="monitor_create"),
    path("monitors/<int:pk>/", views.monitor_detail, name="monitor_detail"),
    path("monitors/<int:pk>/edit/", views.monitor_edit, name="monitor_edit"),
    path("monitors/<int:pk>/run/", views.monitor_run, name="monitor_run"),
    path("monitors/<int:pk>/pause/", views.monitor_pause, name="monitor_pause"),
    path("monitors/<int:pk>/resume/", views.monitor_resume, name="monitor_resume"),
    path("monitors/<int:pk>/delete/", views.monitor_delete, name="monitor_delete"),
    path("drift-checks/", views.drift_check_list, name="drift_check_list"),
    path("drift-checks/<int:pk>/", views.drift_check_detail, name="drift_check_detail"),
    path("drift-checks/<int:pk>/report/", views.drift_check_report, name="drift_check_report"),
    path("alerts/", views.alert_list, name="alert_list"),
    path("alerts/<int:pk>/", views.alert_detail, name="alert_detail"),
    path("alerts/<int:pk>/acknowledge/", views.alert_acknowledge, name="alert_acknowledge"),
    path("alerts/<int:pk>/snooze/", views.alert_snooze, name="alert_snooze"),
    path("alerts/<int:pk>/resolve/", views.alert_resolve, name="alert_resolve"),
    path("channels/", views.channel_list, name="channel_list"),
    path("channels/<int:pk>/", views.channel_detail, name="channel_detail"),
    path("channels/<int:pk>/enable/", views.channel_enable, name="channel_enable"),
    path("channels/<int:pk>/disable/", views.channel_disable, name="channel_disable"),
    path("channels/<int:pk>/rotate-secret/", views.channel_rotate_secret, name="channel_rotate_secret"),
    path("escalation-policies/", views.escalation_policy_list, name="escalation_policy_list"),
    path("escalation-policies/new/", views.escalation_policy_create, name="escalation_policy_create"),
    path("escalation-policies/<int:pk>/", views.escalation_policy_detail, name="escalation_policy_detail"),
    path("escalation-policies/<int:pk>/edit/", views.escalation_policy_edit, name="escalation_policy_edit"),
]
