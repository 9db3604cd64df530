from django.apps import AppConfig


class RunnersConfig(AppConfig):
    name = "runners"
    verbose_name = "Runners"

    def ready(self) -> None:
        # Versions registered from MLflow runs resolve through runners (issue 9): governance
        # keeps a table of resolvers and never imports runners.
        from governance.job_scope import register_job_scope_loader
        from governance.sources import register_source_resolver
        from runners import mlflow_sources, tracking

        register_source_resolver("runs", mlflow_sources.resolve_runs_uri)
        register_source_resolver("models", mlflow_sources.resolve_models_uri)
        register_source_resolver("mlflow-artifacts", mlflow_sources.resolve_mlflow_artifacts_uri)
        # A job token's scope is its code run's (issue 17); governance reads it through this.
        register_job_scope_loader(tracking.job_scope_of)
        # A promotion request starts the evaluation its gates read (issue 15) through runners.
        from governance.evaluation_starter import register_evaluation_starter
        from runners.promotion_evaluations import start_evaluation

        register_evaluation_starter(start_evaluation)
        # Job logs follow teams' retention rules for "logs" (issue 12).
        from governance.actions.retention import RetentionSubject, register_retention_subject
        from governance.models import RetentionKind
        from runners.joblog import do_expire_job_logs, live_log_keys

        register_retention_subject(
            RetentionKind.LOGS, RetentionSubject(live_keys=live_log_keys, expire=do_expire_job_logs)
        )
        # Tracked runs' files count in their team's storage (/metrics, the cost roll-up).
        from governance.queries import register_storage_holder
        from runners.run_artifacts import stored_rows

        register_storage_holder(stored_rows)
