"""The registry endpoints of the MLflow REST API (``/api/2.0/mlflow/registered-models/...``,
``model-versions/...``), served through the same actions as Steward's own API (issue 9)."""
