from django.urls import path

from monitoring.views import (
    alerts,
    channels,
    dashboard,
    drift_checks,
    escalation_policies,
    impact,
    metrics,
    model_versions,
    monitors,
)

urlpatterns = [
    path("", dashboard.dashboard, name="dashboard"),
    path("metrics", metrics.metrics_view, name="metrics"),
    path("model-versions/<int:pk>/", model_versions.model_version_detail, name="model_version_detail"),
    path(
        "model-versions/<int:pk>/drift-check/", drift_checks.drift_check_request, name="drift_check_request"
    ),
    path("model-versions/<int:pk>/monitors/new/", monitors.monitor_create, name="monitor_create"),
    path("monitors/<int:pk>/", monitors.monitor_detail, name="monitor_detail"),
    path("monitors/<int:pk>/edit/", monitors.monitor_edit, name="monitor_edit"),
    path("monitors/<int:pk>/run/", monitors.monitor_run, name="monitor_run"),
    path("monitors/<int:pk>/pause/", monitors.monitor_pause, name="monitor_pause"),
    path("monitors/<int:pk>/resume/", monitors.monitor_resume, name="monitor_resume"),
    path("monitors/<int:pk>/delete/", monitors.monitor_delete, name="monitor_delete"),
    path("drift-checks/", drift_checks.drift_check_list, name="drift_check_list"),
    path("drift-checks/<int:pk>/", drift_checks.drift_check_detail, name="drift_check_detail"),
    path("drift-checks/<int:pk>/report/", drift_checks.drift_check_report, name="drift_check_report"),
    path("lineage/impact/", impact.lineage_impact, name="lineage_impact"),
    path("lineage/impact.csv", impact.lineage_impact_export, {"fmt": "csv"}, name="lineage_impact_csv"),
    path("lineage/impact.json", impact.lineage_impact_export, {"fmt": "json"}, name="lineage_impact_json"),
    path("alerts/", alerts.alert_list, name="alert_list"),
    path("alerts/<int:pk>/", alerts.alert_detail, name="alert_detail"),
    path("alerts/<int:pk>/acknowledge/", alerts.alert_acknowledge, name="alert_acknowledge"),
    path("alerts/<int:pk>/snooze/", alerts.alert_snooze, name="alert_snooze"),
    path("alerts/<int:pk>/resolve/", alerts.alert_resolve, name="alert_resolve"),
    path("channels/", channels.channel_list, name="channel_list"),
    path("channels/<int:pk>/", channels.channel_detail, name="channel_detail"),
    path("channels/<int:pk>/enable/", channels.channel_enable, name="channel_enable"),
    path("channels/<int:pk>/disable/", channels.channel_disable, name="channel_disable"),
    path("channels/<int:pk>/rotate-secret/", channels.channel_rotate_secret, name="channel_rotate_secret"),
    path("escalation-policies/", escalation_policies.escalation_policy_list, name="escalation_policy_list"),
    path(
        "escalation-policies/new/",
        escalation_policies.escalation_policy_create,
        name="escalation_policy_create",
    ),
    path(
        "escalation-policies/<int:pk>/",
        escalation_policies.escalation_policy_detail,
        name="escalation_policy_detail",
    ),
    path(
        "escalation-policies/<int:pk>/edit/",
        escalation_policies.escalation_policy_edit,
        name="escalation_policy_edit",
    ),
]
