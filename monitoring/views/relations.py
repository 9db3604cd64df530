"""What the monitoring pages' tables print of each row, to ``select_related`` in one query."""

ALERT_RELATIONS = (
    "model_version__model",
    "drift_check__current_dataset_version__dataset",
    "owner",
    "acknowledged_by",
    "resolved_by",
)
CHECK_RELATIONS = (
    "model_version__model",
    "reference_dataset_version__dataset",
    "current_dataset_version__dataset",
    "created_by",
)
# What includes/jobs_table.html prints for each job.
JOB_TABLE_RELATIONS = ("created_by", "registered_model", "model_version__model", "dataset_version__dataset")
MONITOR_RELATIONS = (
    "model_version__model",
    "reference_dataset_version__dataset",
    "current_dataset",
    "escalation_policy",
    "created_by",
)
