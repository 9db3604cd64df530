from django.apps import AppConfig


class MonitoringConfig(AppConfig):
    name = "monitoring"
    verbose_name = "Monitoring"

    def ready(self) -> None:
        # "Everything about this model version" follows relations into runners and monitoring
        # (issue 12); governance keeps the hook and never imports either.
        from governance.actions.retention import register_retention_subject
        from governance.audit.subjects import register_model_version_subjects
        from governance.models import RetentionKind
        from monitoring.actions.retention import REPORTS
        from monitoring.evidence import model_version_subjects

        register_model_version_subjects(model_version_subjects)
        # Drift reports follow teams' retention rules for "reports" (issue 12).
        register_retention_subject(RetentionKind.REPORTS, REPORTS)
