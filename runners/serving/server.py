"""The model server of one model version whose loading runs code (issue 17): started by
``runners.serving.supervisor`` as ``python -m runners.serving.server <config.json>`` with a clean
environment, in its own session, listening on a unix socket.

No Django and no database: it loads the version (``predictors.load``: for an MLflow model that
unpickles, which is why it happens here and not in the web process), then answers requests, one
JSON line each way per connection: ``{"rows": [{column: value}, ...]}`` ->
``{"predictions": [...]}`` or ``{"error": message, "is_user_error": bool}``. It binds a temporary
name and renames it onto the socket path once the model is loaded, so a socket that exists is a
server ready to answer. It exits after ``idle_s`` seconds without a request.

The config (JSON): ``socket``, ``model`` {path, flavor, sha256, name}, ``idle_s``, ``threads``.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import socketserver
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pandas as pd

from runners.serving import predictors

# One request line at most this long (the web process caps rows before it sends them).
MAX_REQUEST_BYTES = 64 * 2**20


class _Handler(socketserver.StreamRequestHandler):
    server: ModelServer

    def handle(self) -> None:
        line = self.rfile.readline(MAX_REQUEST_BYTES)
        self.server.touch()
        try:
            request = json.loads(line)
            frame = pd.DataFrame.from_records(request["rows"], columns=request.get("columns"))
            with self.server.predict_lock:
                predictions = self.server.predictor.predict(frame)
            answer: dict[str, Any] = {"predictions": [predictors.json_value(v) for v in predictions.tolist()]}
        except predictors.PredictorError as exc:
            answer = {"error": str(exc), "is_user_error": True}
        except Exception as exc:  # a server that answers keeps serving the next request
            answer = {"error": f"{type(exc).__name__}: {exc}", "is_user_error": False}
        self.wfile.write(json.dumps(answer).encode() + b"\n")
        self.server.touch()


class ModelServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """A threading unix-socket server holding one loaded predictor."""

    daemon_threads = True

    def __init__(self, path: str, predictor: predictors.Predictor):
        self.predictor = predictor
        self.predict_lock = threading.Lock()
        self.last_request = time.monotonic()
        super().__init__(path, _Handler)

    def touch(self) -> None:
        self.last_request = time.monotonic()


def _stop_when_idle(server: ModelServer, idle_s: float, socket_path: str) -> None:
    while True:
        time.sleep(min(idle_s, 5.0))
        if time.monotonic() - server.last_request >= idle_s:
            # Unlinked first: a new request starts a fresh server instead of reaching this one.
            with contextlib.suppress(FileNotFoundError):
                os.unlink(socket_path)
            server.shutdown()
            return


def main(argv: list[str]) -> int:
    """Serve the config in ``argv[1]`` until idle; 1 (reason on stderr) when the model does not load."""
    config = json.loads(Path(argv[1]).read_text())
    model = config["model"]
    try:
        predictor = predictors.load(
            Path(model["path"]), flavor=model["flavor"], sha256=model["sha256"], name=model["name"]
        )
    except predictors.PredictorError as exc:
        print(f"model server: {exc}", file=sys.stderr)
        return 1
    torch = sys.modules.get("torch")
    if torch is not None:  # a pytorch flavor: its default is a thread per core (issue 17)
        torch.set_num_threads(int(config.get("threads") or 1))
    socket_path = config["socket"]
    staging = f"{socket_path}.{os.getpid()}"
    server = ModelServer(staging, predictor)
    os.chmod(staging, 0o600)
    os.replace(staging, socket_path)
    print(f"model server: {model['name']} ready on {socket_path}", file=sys.stderr, flush=True)
    threading.Thread(
        target=_stop_when_idle, args=(server, float(config["idle_s"]), socket_path), daemon=True
    ).start()
    try:
        server.serve_forever(poll_interval=0.5)
    finally:
        server.server_close()
    return 0


def request(socket_path: str, rows: list[dict[str, Any]], columns: list[str] | None, timeout_s: float) -> Any:
    """One request to the server at ``socket_path``: the decoded answer. Raises OSError when no
    server answers there (none started, or it died or stopped mid-request)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(timeout_s)
        conn.connect(socket_path)
        conn.sendall(json.dumps({"rows": rows, "columns": columns}).encode() + b"\n")
        chunks = []
        while True:
            chunk = conn.recv(1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
            if chunk.endswith(b"\n"):
                break
    data = b"".join(chunks)
    if not data.endswith(b"\n"):
        raise ConnectionResetError("the model server closed the connection before answering")
    return json.loads(data)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
