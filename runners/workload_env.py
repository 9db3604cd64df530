"""What a code run sees, read the one way every template reads it (issue 17). No Django import.

A code run (``runners/workloads/<name>/``, run by the code-run slice in its sandbox) gets its
inputs, output folder, threads and MLflow run from the environment:

- ``STEWARD_THREADS``: torch's thread count, from the job's resources (torch's default, one per
  core, made training 7-9x slower on a busy 2-core machine);
- ``STEWARD_INPUT_<NAME>``: the local file of the dataset version given as input ``<name>``;
- ``STEWARD_OUTPUT_DIR``: a writable folder; ``datasets/<name>.csv|parquet`` written there
  become dataset versions of the job's declared outputs;
- ``MLFLOW_TRACKING_URI`` / ``MLFLOW_TRACKING_TOKEN`` / ``MLFLOW_RUN_ID``: read by the ``mlflow``
  client itself, so ``mlflow.start_run()`` resumes the job's run.

The templates import this module and ``runners.training`` / ``governance.datafiles`` through the
sandbox's read-only bind of Steward's packages; nothing here imports torch, so it is cheap.
"""

from __future__ import annotations

import os
import queue
import sys
import threading
import time
from pathlib import Path
from typing import Any

from governance import datafiles

# Used when STEWARD_THREADS is absent (the template run by hand): the settings' default.
DEFAULT_THREADS = min(4, os.cpu_count() or 1)


class WorkloadError(ValueError):
    """The run's environment or parameters are wrong; the message names the variable or parameter."""


def threads() -> int:
    """Torch's thread count for this run: ``STEWARD_THREADS`` (a positive integer), else
    ``DEFAULT_THREADS``. Raises WorkloadError naming the variable when it is not a positive integer."""
    raw = os.environ.get("STEWARD_THREADS", "")
    if not raw:
        return DEFAULT_THREADS
    if not raw.isascii() or not raw.isdigit() or int(raw) < 1:
        raise WorkloadError(f"STEWARD_THREADS: expected a positive integer, got {raw!r}")
    return int(raw)


def set_torch_threads() -> int:
    """Set torch's intra-op threads from ``threads()`` (first thing a template does, before any
    tensor work: torch sizes its pool on first use); returns the count. Imports torch."""
    import torch

    count = threads()
    torch.set_num_threads(count)
    return count


def input_path(name: str) -> Path:
    """The local file of input ``name`` (``STEWARD_INPUT_<NAME>``, upper-cased). Raises
    WorkloadError naming the variable when it is unset or names no file."""
    variable = f"STEWARD_INPUT_{name.upper()}"
    raw = os.environ.get(variable, "")
    if not raw:
        raise WorkloadError(f"{variable} is not set: give the run a dataset version as input {name!r}")
    path = Path(raw)
    if not path.is_file():
        raise WorkloadError(f"{variable}: {raw!r} is not a file")
    return path


def read_input(name: str) -> Any:
    """Input ``name`` as a pandas DataFrame (CSV or Parquet by its suffix, the registry's reader:
    ``governance.datafiles.read_frame``). Raises WorkloadError or ``datafiles.DataFileError``."""
    path = input_path(name)
    fmt = "parquet" if path.suffix.lower() == ".parquet" else "csv"
    return datafiles.read_frame(path, fmt, path.name)


def output_dataset(name: str, suffix: str = "csv") -> Path:
    """Where to write output dataset ``name``: ``$STEWARD_OUTPUT_DIR/datasets/<name>.<suffix>``
    (folder created). Raises WorkloadError when ``STEWARD_OUTPUT_DIR`` is unset."""
    raw = os.environ.get("STEWARD_OUTPUT_DIR", "")
    if not raw:
        raise WorkloadError("STEWARD_OUTPUT_DIR is not set: the run has no output folder")
    folder = Path(raw) / "datasets"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{name}.{suffix}"


def names(raw: str, parameter: str) -> list[str]:
    """A comma-separated parameter as a list of stripped, non-empty names ("" is []). Raises
    WorkloadError naming ``parameter`` for an empty item (``a,,b``)."""
    if not raw.strip():
        return []
    items = [item.strip() for item in raw.split(",")]
    if any(not item for item in items):
        raise WorkloadError(f"{parameter}: an empty name in {raw!r}")
    return items


def integers(raw: str, parameter: str) -> list[int]:
    """A comma-separated parameter of whole numbers (``64,32``). Raises WorkloadError naming
    ``parameter`` for an item that is not one."""
    try:
        return [int(item) for item in names(raw, parameter)]
    except ValueError as exc:
        raise WorkloadError(f"{parameter}: expected whole numbers separated by commas, got {raw!r}") from exc


def fail(message: str) -> int:
    """Print ``message`` on stderr (the job's log shows it) and return exit status 2."""
    print(f"error: {message}", file=sys.stderr)
    return 2


def register_artifact(name: str, run_id: str, artifact_path: str) -> str:
    """Register the run's artifact ``artifact_path`` (a file or folder it logged) as the next
    version of registered model ``name`` (created when absent) through Steward's MLflow API;
    returns the version number. ``mlflow.register_model`` cannot: for a ``runs:/`` URI without an
    ``MLmodel`` it looks for an MLflow logged model, so the version is created from the
    ``runs:/<run>/<path>`` source itself, which Steward resolves and detects the flavor of
    (``governance.flavors``: a Steward tabular artifact is ``steward_tabular``).
    Raises ``mlflow.exceptions.MlflowException`` with the server's message."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient()
    try:
        client.create_registered_model(name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    version = client.create_model_version(name, f"runs:/{run_id}/{artifact_path}", run_id=run_id)
    return str(version.version)


# log-batch limits of the MLflow REST API (Steward's too): per request.
MAX_BATCH_METRICS = 1000
MAX_BATCH_PARAMS = 100


class BackgroundRunLog:
    """The run's parameters and per-step metrics sent to its MLflow run by a thread of their own,
    so that training never waits for ``import mlflow`` (about 2 CPU seconds) nor for the server.

    The thread imports mlflow and makes an ``MlflowClient`` as soon as this object is made, then
    sends what ``log_params`` / ``log_metrics`` queued, everything queued meanwhile in one
    ``log_batch`` request (epochs that end while a request is in flight go together). The run is
    ``MLFLOW_RUN_ID`` (a code run's job), else one created in ``MLFLOW_EXPERIMENT_ID`` (else the
    default experiment) when the first values are sent. ``finish`` sends the rest and returns
    ``(client, run_id)`` for the calls that must follow training (artifacts, registration).

    An error of the thread (server unreachable, a refused value) is raised by the next
    ``log_params``/``log_metrics`` call and by ``finish``: training stops at the next step."""

    def __init__(self) -> None:
        self.run_id = os.environ.get("MLFLOW_RUN_ID", "")
        self.client: Any = None
        self._error: BaseException | None = None
        self._queue: queue.Queue[tuple[dict[str, str], list[tuple[str, float, int, int]]] | None] = (
            queue.Queue()
        )
        self._thread = threading.Thread(target=self._work, name="steward-run-log", daemon=True)
        self._thread.start()

    def log_params(self, params: dict[str, Any]) -> None:
        """Queue ``params`` (values sent as strings). Raises the thread's error, if any."""
        self._raise()
        self._queue.put(({key: str(value) for key, value in params.items()}, []))

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        """Queue ``metrics`` at ``step``, stamped now (milliseconds since the epoch). Raises the
        thread's error, if any."""
        self._raise()
        stamp = int(time.time() * 1000)
        self._queue.put(({}, [(key, float(value), stamp, step) for key, value in metrics.items()]))

    def finish(self) -> tuple[Any, str]:
        """Wait until everything queued is sent; ``(MlflowClient, run id)``. Raises the thread's
        error (``mlflow.exceptions.MlflowException`` with the server's message, or ImportError)."""
        self._queue.put(None)
        self._thread.join()
        self._raise()
        return self.client, self.run_id

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def _work(self) -> None:
        try:
            from mlflow import MlflowClient

            self.client = MlflowClient()
            done = False
            while not done:
                items = [self._queue.get()]
                while not self._queue.empty():
                    items.append(self._queue.get())
                done = items[-1] is None
                params: dict[str, str] = {}
                metrics: list[tuple[str, float, int, int]] = []
                for item in items:
                    if item is not None:
                        params |= item[0]
                        metrics += item[1]
                if params or metrics:
                    self._send(params, metrics)
        except BaseException as exc:  # handed to the training thread, which raises it
            self._error = exc

    def _send(self, params: dict[str, str], metrics: list[tuple[str, float, int, int]]) -> None:
        from mlflow.entities import Metric, Param

        if not self.run_id:
            experiment = os.environ.get("MLFLOW_EXPERIMENT_ID") or "0"
            self.run_id = self.client.create_run(experiment).info.run_id
        pairs = [Param(key, value) for key, value in params.items()]
        points = [Metric(key, value, stamp, step) for key, value, stamp, step in metrics]
        while pairs or points:
            self.client.log_batch(
                self.run_id, metrics=points[:MAX_BATCH_METRICS], params=pairs[:MAX_BATCH_PARAMS]
            )
            pairs, points = pairs[MAX_BATCH_PARAMS:], points[MAX_BATCH_METRICS:]
