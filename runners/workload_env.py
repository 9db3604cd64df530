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

import contextlib
import json
import math
import os
import queue
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from governance import datafiles
from runners import live

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


def live_flush_s() -> float:
    """Seconds between the run's live metric requests: ``STEWARD_LIVE_FLUSH_S`` as the worker
    gives it (its setting, default 2), else 2 outside a code run. Raises WorkloadError when the
    variable is not a finite number >= 0 (``runners.live.parse_flush_s``)."""
    try:
        return live.parse_flush_s(os.environ.get(live.VARIABLE, live.DEFAULT))
    except ValueError as exc:
        raise WorkloadError(str(exc)) from None


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


class TrackingError(RuntimeError):
    """Steward's MLflow API refused a call or could not be reached; the message is the server's
    (``error_code: message``) or the connection's error."""

    def __init__(self, message: str, error_code: str = ""):
        super().__init__(message)
        self.error_code = error_code


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Refuse redirects: the request carries the run's token, which goes to Steward only."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        raise urllib.error.HTTPError(req.full_url, code, f"redirected to {newurl}; not followed", headers, fp)


_OPENER = urllib.request.build_opener(_NoRedirect)


def json_metric_value(value: float) -> float | str:
    """A metric value as MLflow's JSON writes it: a number, or "NaN" / "Infinity" /
    "-Infinity" (strict JSON has no literal for them)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


class TrackingApi:
    """The few calls of the MLflow REST API a template makes, over the standard library.

    ``import mlflow`` costs about 2 CPU seconds and 3 s of wall time on a 2-core machine: as much
    as the first epochs of a small training, and on the CPUs the training uses (issue 17's runner
    overhead). The templates log, upload and register through this instead; users' code uses the
    ``mlflow`` client against the same endpoints. Reads the client's own variables:
    ``MLFLOW_TRACKING_URI`` (http or https), ``MLFLOW_TRACKING_TOKEN`` (a bearer token)."""

    def __init__(self, tracking_uri: str | None = None, token: str | None = None, timeout_s: float = 120.0):
        uri = tracking_uri if tracking_uri is not None else os.environ.get("MLFLOW_TRACKING_URI", "")
        if not uri.startswith(("http://", "https://")):
            raise WorkloadError(f"MLFLOW_TRACKING_URI: expected an http(s) URL of Steward, got {uri!r}")
        self.base = uri.rstrip("/")
        secret = token if token is not None else os.environ.get("MLFLOW_TRACKING_TOKEN", "")
        self.headers = {"Authorization": f"Bearer {secret}"} if secret else {}
        self.timeout_s = timeout_s
        self._artifact_uris: dict[str, str] = {}

    def call(self, method: str, endpoint: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """``method`` ``/api/2.0/mlflow/<endpoint>`` with ``body`` as JSON (a GET's as its query);
        the answer's JSON. Raises TrackingError with the server's error code and message."""
        url = f"{self.base}/api/2.0/mlflow/{endpoint}"
        data = None
        headers = dict(self.headers)
        if method == "GET" and body:
            url += "?" + urllib.parse.urlencode(body)
        elif body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        # The scheme is http(s), checked when made.
        request = urllib.request.Request(url, data=data, headers=headers, method=method)  # noqa: S310
        return self._send(request)

    def upload(self, run_id: str, path: Path, artifact_path: str = "") -> None:
        """Upload file ``path`` to the run's artifacts (under ``artifact_path``), through the
        artifact proxy as ``mlflow-artifacts:/`` runs do. Raises TrackingError."""
        location = self.artifact_uri(run_id)
        prefix = "mlflow-artifacts:"
        if not location.startswith(prefix):
            raise TrackingError(f"run {run_id}: artifact location {location!r} is not the artifact proxy")
        where = "/".join(
            part for part in (location[len(prefix) :].strip("/"), artifact_path, path.name) if part
        )
        headers = dict(self.headers) | {"Content-Length": str(path.stat().st_size)}
        with path.open("rb") as body:
            request = urllib.request.Request(  # noqa: S310 - http(s), checked when made
                f"{self.base}/api/2.0/mlflow-artifacts/artifacts/{urllib.parse.quote(where)}",
                data=body,
                headers=headers,
                method="PUT",
            )
            self._send(request)

    def artifact_uri(self, run_id: str) -> str:
        """The run's artifact location (``runs/get``), read once per run: it never changes.
        Raises TrackingError."""
        if run_id not in self._artifact_uris:
            answer = self.call("GET", "runs/get", {"run_id": run_id})
            self._artifact_uris[run_id] = str(answer["run"]["info"]["artifact_uri"])
        return self._artifact_uris[run_id]

    def _send(self, request: urllib.request.Request) -> dict[str, Any]:
        try:
            with _OPENER.open(request, timeout=self.timeout_s) as answer:
                raw = answer.read()
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                error = json.loads(raw)
                raise TrackingError(
                    f"{error.get('error_code', exc.code)}: {error.get('message', '')}",
                    str(error.get("error_code", "")),
                ) from None
            except (ValueError, AttributeError):
                raise TrackingError(f"HTTP {exc.code}: {raw[:300]!r}") from None
        except OSError as exc:
            raise TrackingError(f"{request.full_url}: {exc}") from exc
        try:
            return dict(json.loads(raw)) if raw.strip() else {}
        except (ValueError, TypeError):
            raise TrackingError(
                f"{request.full_url}: the answer is not a JSON object: {raw[:300]!r}"
            ) from None

    def register(self, name: str, run_id: str, artifact_path: str) -> str:
        """Register the run's artifact ``artifact_path`` (a file or folder it logged) as the next
        version of registered model ``name`` (created when absent); returns the version number.
        The version is created from the ``runs:/<run>/<path>`` source, which Steward resolves and
        detects the flavor of (``governance.flavors``: a Steward tabular artifact is
        ``steward_tabular``); ``mlflow.register_model`` would look for an MLflow logged model.
        Raises TrackingError with the server's message."""
        body = {"name": name, "source": f"runs:/{run_id}/{artifact_path}", "run_id": run_id}
        # The version first: retraining a model that exists is the usual case (one request).
        try:
            return str(self.call("POST", "model-versions/create", body)["model_version"]["version"])
        except TrackingError as exc:
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
        try:
            self.call("POST", "registered-models/create", {"name": name})
        except TrackingError as exc:  # made meanwhile by another run
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        return str(self.call("POST", "model-versions/create", body)["model_version"]["version"])

    def finish_run(self, run_id: str) -> None:
        """Mark the run FINISHED now. Raises TrackingError."""
        self.call(
            "POST",
            "runs/update",
            {"run_id": run_id, "status": "FINISHED", "end_time": int(time.time() * 1000)},
        )


# log-batch limits of the MLflow REST API (Steward's too): per request.
MAX_BATCH_METRICS = 1000
MAX_BATCH_PARAMS = 100


class BackgroundRunLog:
    """The run's parameters and per-step metrics sent to its MLflow run by a thread of their own,
    so that training never waits for the server.

    ``log_params`` / ``log_metrics`` queue; the thread sends what queued in one ``log-batch``
    request (``TrackingApi``), at most one request per ``interval_s`` seconds, by default
    ``live_flush_s()`` (epochs that end meanwhile go together: a fast training is not a request per
    epoch, and the job page's charts still move every ``interval_s``). The run is ``MLFLOW_RUN_ID``
    (a code run's job), else one created in ``MLFLOW_EXPERIMENT_ID`` (else the default experiment)
    when the first values are sent. ``finish`` sends the rest and returns ``(TrackingApi, run_id)``
    for the calls that must follow training (artifacts, registration).

    An error of the thread (server unreachable, a refused value: TrackingError) is raised by the
    next ``log_params``/``log_metrics`` call and by ``finish``: training stops at the next step."""

    def __init__(self, api: TrackingApi | None = None, interval_s: float | None = None) -> None:
        self.api = api or TrackingApi()
        self.run_id = os.environ.get("MLFLOW_RUN_ID", "")
        # A code run's is the worker's STEWARD_LIVE_FLUSH_S (the same setting paces its log).
        self.interval_s = interval_s if interval_s is not None else live_flush_s()
        self._error: BaseException | None = None
        self._queue: queue.Queue[tuple[dict[str, str], list[dict[str, Any]]] | None] = queue.Queue()
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
        points = [
            {"key": k, "value": json_metric_value(float(v)), "timestamp": stamp, "step": step}
            for k, v in metrics.items()
        ]
        self._queue.put(({}, points))

    def finish(self) -> tuple[TrackingApi, str]:
        """Wait until everything queued is sent; ``(TrackingApi, run id)``. Raises the thread's
        error (TrackingError with the server's message)."""
        self._queue.put(None)
        self._thread.join()
        self._raise()
        return self.api, self.run_id

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def _work(self) -> None:
        try:
            done = False
            while not done:
                items = [self._queue.get()]
                # Gather for interval_s after the first item, unless the end comes first.
                until = time.monotonic() + self.interval_s
                while items[-1] is not None and (wait := until - time.monotonic()) > 0:
                    try:
                        items.append(self._queue.get(timeout=wait))
                    except queue.Empty:
                        break
                done = items[-1] is None
                params: dict[str, str] = {}
                metrics: list[dict[str, Any]] = []
                for item in items:
                    if item is not None:
                        params |= item[0]
                        metrics += item[1]
                if params or metrics:
                    self._send(params, metrics)
                    # Read while training runs, so the upload after training needs no lookup;
                    # a failure here is the upload's to report (it asks again).
                    with contextlib.suppress(TrackingError):
                        self.api.artifact_uri(self.run_id)
        except BaseException as exc:  # handed to the training thread, which raises it
            self._error = exc

    def _send(self, params: dict[str, str], metrics: list[dict[str, Any]]) -> None:
        if not self.run_id:
            experiment = os.environ.get("MLFLOW_EXPERIMENT_ID") or "0"
            created = self.api.call(
                "POST", "runs/create", {"experiment_id": experiment, "start_time": int(time.time() * 1000)}
            )
            self.run_id = created["run"]["info"]["run_id"]
        pairs = [{"key": key, "value": value} for key, value in params.items()]
        while pairs or metrics:
            self.api.call(
                "POST",
                "runs/log-batch",
                {
                    "run_id": self.run_id,
                    "metrics": metrics[:MAX_BATCH_METRICS],
                    "params": pairs[:MAX_BATCH_PARAMS],
                },
            )
            pairs, metrics = pairs[MAX_BATCH_PARAMS:], metrics[MAX_BATCH_METRICS:]
