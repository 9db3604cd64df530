from django.apps import AppConfig


class MonitoringConfig(AppConfig):
    name = "monitoring"
    verbose_name = "Monitoring"

    def ready(self) -> None:
        # "Everything about this model version" follows relations into runners and monitoring
        # (issue 12); governance keeps the hook and never imports either.
        from governance.audit.subjects import register_model_version_subjects
        from monitoring.evidence import model_version_subjects

        register_model_version_subjects(model_version_subjects)
