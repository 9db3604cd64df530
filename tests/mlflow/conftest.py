"""A live Steward and the real ``mlflow`` client pointed at it (issue 9).

``steward_server`` is pytest-django's ``live_server`` (a real HTTP server in a thread of the test
process, on the test database; its tests are transactional). ``mlflow_env`` points the client at it
with a fresh read-write API token of ``scientist`` (data scientist of ``team``); ``use_token``
switches to another user's. ``MLFLOW_HTTP_REQUEST_MAX_RETRIES=0``: a wrong answer fails the test at
once instead of in a two-minute retry loop.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from governance.actions.tokens import do_create_api_token


@pytest.fixture
def steward_server(live_server):
    """The live Steward; ``steward_server.url`` is its base URL (``http://localhost:<port>``)."""
    return live_server


@pytest.fixture
def api_token() -> Callable[..., str]:
    """``api_token(user, read_only=False)``: a fresh API token's secret for ``user``."""

    def make(user, *, read_only: bool = False) -> str:
        _, secret = do_create_api_token(user=user, name="mlflow", is_read_only=read_only, actor=user)
        return secret

    return make


@pytest.fixture
def mlflow_env(steward_server, scientist, api_token, monkeypatch) -> Iterator[dict[str, str]]:
    """MLflow's environment pointed at the live Steward as ``scientist``; returns the variables.

    Everything is restored afterwards (monkeypatch; ``set_tracking_uri(None)`` clears the client's
    process-wide URI).
    """
    import mlflow

    variables = {
        "MLFLOW_TRACKING_URI": steward_server.url,
        "MLFLOW_TRACKING_TOKEN": api_token(scientist),
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": "60",
    }
    for name in ("MLFLOW_REGISTRY_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    mlflow.set_tracking_uri(steward_server.url)
    yield variables
    mlflow.set_tracking_uri(None)


@pytest.fixture
def use_token(mlflow_env, api_token, monkeypatch) -> Callable[..., str]:
    """``use_token(user, read_only=False)``: the client now authenticates as ``user``."""

    def switch(user, *, read_only: bool = False) -> str:
        secret = api_token(user, read_only=read_only)
        monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", secret)
        return secret

    return switch


@pytest.fixture
def mlflow_client(mlflow_env):
    """A real ``mlflow.MlflowClient()`` talking to the live Steward."""
    from mlflow import MlflowClient

    return MlflowClient()


@pytest.fixture(scope="session")
def sklearn_model_dir(tmp_path_factory) -> Path:
    """A real ``mlflow.sklearn.save_model`` directory (a linear regression on three points)."""
    import mlflow.sklearn
    import numpy as np
    from sklearn.linear_model import LinearRegression

    model = LinearRegression().fit(np.array([[0.0], [1.0], [2.0]]), np.array([1.0, 3.0, 5.0]))
    path = tmp_path_factory.mktemp("sklearn-model") / "model"
    # cloudpickle: the default (skops) needs a package Steward does not install; a pickle flavor
    # is also the case Steward must mark as executing code when loaded.
    mlflow.sklearn.save_model(
        model, path, serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_CLOUDPICKLE
    )
    return path


@pytest.fixture
def import_root(settings, sklearn_model_dir) -> Path:
    """An allowed import root (``STEWARD_IMPORT_ROOTS``) holding ``sklearn_model_dir``'s folder;
    a model version's ``source`` may be ``str(import_root / "model")``."""
    root = sklearn_model_dir.parent.resolve()
    settings.STEWARD_IMPORT_ROOTS = [*settings.STEWARD_IMPORT_ROOTS, root]
    return root
