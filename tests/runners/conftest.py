"""The live Steward and the real mlflow client of ``tests/mlflow/conftest.py``, for the runners'
tests that run code against it (issue 17's templates)."""

from tests.mlflow.conftest import api_token, mlflow_client, mlflow_env, steward_server  # noqa: F401
