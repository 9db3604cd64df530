"""The model server of one model version whose loading runs code (issue 17): started by
``runners.serving.supervisor`` as ``python -m runners.serving.server <config.json>`` with a clean
environment, in its own session (in bubblewrap where the host allows it).

No Django and no database: it loads the version (``predictors.load``: for an MLflow model that
unpickles, which is why it happens here and not in the web process), then answers requests on the
listening Unix socket its supervisor bound and passed it open, one JSON line each way per
connection: ``{"rows": [{column: value}, ...]}`` -> ``{"predictions": [...]}`` or ``{"error":
message, "is_user_error": bool}``. Once the model is loaded it writes "ready" on the pipe it was
given (the supervisor then names the socket where requests look for it). It exits after
``idle_s`` seconds without a request, or on SIGTERM.

The config (JSON): ``listen_fd``, ``ready_fd``, ``model`` {path, flavor, sha256, name},
``idle_s``, ``threads``.
"""

from __future__ import annotations

import json
import os
import signal
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
    """A threading unix-socket server holding one loaded predictor, serving ``listening`` (a
    bound, listening socket its supervisor passed it)."""

    daemon_threads = True

    def __init__(self, listening: socket.socket, predictor: predictors.Predictor):
        self.predictor = predictor
        self.predict_lock = threading.Lock()
        self.last_request = time.monotonic()
        super().__init__("", _Handler, bind_and_activate=False)
        self.socket.close()
        self.socket = listening

    def touch(self) -> None:
        self.last_request = time.monotonic()


def _stop_when_idle(server: ModelServer, idle_s: float) -> None:
    while True:
        time.sleep(min(idle_s, 5.0))
        if time.monotonic() - server.last_request >= idle_s:
            # The listening socket closes with the process: the next request is refused and
            # starts a fresh server. _exit: threads the model's code started do not keep it.
            os._exit(0)


def main(argv: list[str]) -> int:
    """Serve the config in ``argv[1]`` until idle or SIGTERM; 1 (reason on stderr) when the model
    does not load."""
    # As a PID namespace's first process a signal without a handler is ignored: SIGTERM must end it.
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
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
    server = ModelServer(socket.socket(fileno=int(config["listen_fd"])), predictor)
    os.write(int(config["ready_fd"]), b"ready\n")
    os.close(int(config["ready_fd"]))
    print(f"model server: {model['name']} ready", file=sys.stderr, flush=True)
    threading.Thread(target=_stop_when_idle, args=(server, float(config["idle_s"])), daemon=True).start()
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
