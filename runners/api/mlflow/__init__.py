"""The tracking endpoints of the MLflow REST API (experiments, runs, metrics, logged models and the
artifact proxy): an MLflow run is a Steward run (job) (issue 9)."""
