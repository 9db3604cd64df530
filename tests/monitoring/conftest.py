"""Monitors, alerts, channels and a local HTTP server standing in for webhook receivers.

Time is passed into the functions (``now=``): tests start from ``T0`` and step forward, so no
clock library is needed. Webhooks go to ``http.server`` on 127.0.0.1 in a thread; nothing leaves
the machine.
"""

from __future__ import annotations

import datetime
import http.server
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pytest

from governance.actions.datasets import do_register_dataset_version
from governance.models import DatasetVersion
from monitoring.actions.checks import CheckOutcome, do_finish_drift_check, do_run_monitor
from monitoring.actions.monitors import do_create_monitor
from monitoring.models import CurrentSource

T0 = datetime.datetime(2025, 6, 2, 9, 0, tzinfo=datetime.UTC)  # in the past: "now" in API calls is later


def minutes(n: float) -> datetime.timedelta:
    return datetime.timedelta(minutes=n)


HUM_DRIFT = {
    "column": "hum",
    "kind": "numeric",
    "status": "drift",
    "message": "wasserstein 0.1713 >= 0.1",
    "method": "wasserstein",
    "score": 0.1713,
    "threshold": 0.1,
    "is_drifted": True,
}
TEMP_OK = dict(HUM_DRIFT, column="temp", status="ok", message="", score=0.0806, is_drifted=False)

# A finished check's findings, as ``monitoring.execute`` reports them: one of two columns drifted.
BREACH = CheckOutcome(
    results=[TEMP_OK, HUM_DRIFT], is_dataset_drift=True, drifted_count=1, drifted_fraction=0.5
)
CLEAN = CheckOutcome(
    results=[TEMP_OK, dict(HUM_DRIFT, status="ok", score=0.02, is_drifted=False)],
    is_dataset_drift=False,
    drifted_count=0,
    drifted_fraction=0.0,
)


@pytest.fixture
def monitor(registered_version, current_dataset_version, scientist):
    """A monitor of the bike model on uploaded batches of ``bike-sharing-2012`` (no schedule)."""
    return do_create_monitor(
        model_version=registered_version,
        name="hourly",
        source=CurrentSource.DATASET,
        current_dataset=current_dataset_version.dataset,
        actor=scientist,
    )


def finish_check(monitor, outcome: CheckOutcome, now: datetime.datetime, actor):
    """Queue a check of ``monitor`` and record ``outcome`` for it at ``now``."""
    check = do_run_monitor(monitor=monitor, actor=actor, now=now)
    return do_finish_drift_check(check.pk, result=outcome, now=now)


def register_frame(dataset, frame: pd.DataFrame, path: Path, actor) -> DatasetVersion:
    """Write ``frame`` to ``path`` as CSV and register it as the next uploaded version of ``dataset``."""
    frame.to_csv(path, index=False)
    return do_register_dataset_version(
        dataset=dataset,
        file_path=path,
        filename=path.name,
        source=DatasetVersion.Source.UPLOAD,
        actor=actor,
    )


@pytest.fixture
def batch_version(current_dataset_version, scientist, bike_frame, tmp_path):
    """Add a version of ``bike-sharing-2012`` holding ``rows`` of its rows; returns the version."""

    def make(rows: int, **changes) -> DatasetVersion:
        rows_of_2012 = bike_frame[bike_frame["yr"] == 1].head(rows).assign(**changes)
        return register_frame(
            current_dataset_version.dataset, rows_of_2012, tmp_path / f"batch-{rows}.csv", scientist
        )

    return make


# A local HTTP receiver ------------------------------------------------------------------------


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    received_at: datetime.datetime  # the receiver checks a signature's age against this

    def json(self):
        return json.loads(self.body)


@dataclass
class Receiver:
    """Records every POST; answers with ``statuses`` in turn (then the last one forever)."""

    url: str
    requests: list[Received] = field(default_factory=list)
    statuses: list[int] = field(default_factory=lambda: [200])
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next_status(self) -> int:
        with self.lock:
            return self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]


class _Handler(http.server.BaseHTTPRequestHandler):
    receiver: Receiver

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with self.receiver.lock:
            self.receiver.requests.append(
                Received(self.path, dict(self.headers), body, datetime.datetime.now(datetime.UTC))
            )
        status = self.receiver.next_status()
        payload = b"ok" if status < 400 else b"no_service"
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """An HTTP server on 127.0.0.1 (a free port) in a thread, standing in for webhook endpoints."""
    handler = type("Handler", (_Handler,), {})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    handler.receiver = Receiver(url=f"http://127.0.0.1:{server.server_port}")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield handler.receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
