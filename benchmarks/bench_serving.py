"""Online prediction over HTTP against predicting in process, issue 17's serving goal.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/steward .venv/bin/python benchmarks/bench_serving.py
    ... --requests 300 --workers 2 --threads 2

Steward runs on a scratch PostgreSQL database (``steward_bench_serving`` beside DATABASE_URL's,
created, migrated, dropped at the end), served as ``bin/up`` serves it (gunicorn, gthread
workers, DEBUG off), RBAC and audit on, every request logged (STEWARD_PREDICTION_LOG_SAMPLE 1):
the client is a data scientist with a read-write API token and a keep-alive ``requests.Session``.

Models: the demo model (config/demo.py's training spec on 2011's hours, trained in this process
by ``runners.training``, registered, alias ``staging``) served in-process by the web workers; an
MLflow sklearn model (a linear regression on the same features, cloudpickle: loading it executes
code) served through its model server (``runners.serving.server``, started by the first request).

For each: ``POST /api/models/<name>/aliases/staging/predict`` with 1 row and with 100 rows of
2012's hours, ``--requests`` rounds (after ``--warmup``), each round timing every case once
(round robin: a shared machine's load falls on all alike): p50 and p95 in ms.
Baseline, the same rows in the same run: predicting in process (``predictors.load`` once, then
``predict(DataFrame)`` per call: today's 2.3 ms). The ratio HTTP / in-process is printed, with
the goal (p50 <= 10 ms, p95 <= 25 ms for one row of the demo model). No timed assertions.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from scratch_db import drop_database, recreate_database, scratch_url  # benchmarks/ is on sys.path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
BENCH_DB = "steward_bench_serving"
DATA = ROOT.parent / "shared" / "data" / "bike-sharing" / "hour.csv"
if not DATA.exists():
    DATA = ROOT / "demo_data" / "bike-sharing" / "hour.csv"


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def _figures(values: list[float]) -> tuple[float, float]:
    return statistics.median(values), _percentile(values, 95)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def setup_django(url: str, workdir: Path, servers: Path) -> None:
    """Point this process (and through the environment the gunicorn it starts) at the scratch
    database, a scratch var/ and model-server folder; migrate."""
    os.environ.update(
        {
            "DATABASE_URL": scratch_url(url, BENCH_DB),
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "STEWARD_VAR_DIR": str(workdir / "var"),
            "STEWARD_AUDIT_SIGNING_KEY_FILE": str(workdir / "audit_signing_key.pem"),
            "STEWARD_MODEL_SERVER_DIR": str(servers),
            "STEWARD_PREDICTION_LOG_SAMPLE": "1.0",
        }
    )
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


class World:
    """The team, its data scientist and owner, the demo model and the sklearn model, both with
    alias ``staging``; ``rows`` are 2012's hours as JSON records of the demo features."""

    def __init__(self, workdir: Path) -> None:
        import pandas as pd
        from django.contrib.auth import get_user_model

        from config.demo import FEATURES, TRAINING_SPEC
        from governance.actions.aliases import do_set_alias
        from governance.actions.model_versions import (
            do_register_model_version,
            do_register_model_version_from_artifact,
        )
        from governance.actions.registered_models import do_create_registered_model
        from governance.actions.teams import do_create_team, do_set_membership
        from governance.actions.tokens import do_create_api_token
        from runners import training
        from runners.specs import parse_spec

        users = get_user_model()
        admin = users.objects.create_superuser("bench-admin", password=secrets.token_urlsafe(16))
        dana = users.objects.create_user("dana", password=secrets.token_urlsafe(16))
        olivia = users.objects.create_user("olivia", password=secrets.token_urlsafe(16))
        team = do_create_team(name="bench", actor=admin)
        do_set_membership(user=dana, team=team, role="data_scientist", actor=admin)
        do_set_membership(user=olivia, team=team, role="model_owner", actor=admin)
        frame = pd.read_csv(DATA)
        spec = parse_spec(TRAINING_SPEC, list(frame.columns))
        print("training the demo model in process (config/demo.py's spec)...", flush=True)
        result = training.train(frame[frame["yr"] == 0], spec)
        demo = do_create_registered_model(team=team, name="bike-demand", owner=olivia, actor=dana)
        self.demo = do_register_model_version(
            model=demo,
            artifact_bytes=result.artifact,
            metrics=result.metrics,
            signature=result.signature,
            training_spec=spec.as_dict(),
            training_dataset_version=None,
            source_job_id=None,
            actor=dana,
        )
        do_set_alias(model=demo, alias="staging", version=self.demo, actor=dana)

        import mlflow.sklearn
        from sklearn.linear_model import LinearRegression

        train = frame[frame["yr"] == 0]
        path = workdir / "sklearn-model"
        mlflow.sklearn.save_model(
            LinearRegression().fit(train[FEATURES], train["cnt"]),
            path,
            serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_CLOUDPICKLE,
            input_example=train[FEATURES].iloc[:2],
        )
        linear = do_create_registered_model(team=team, name="bike-linear", owner=olivia, actor=dana)
        self.sklearn = do_register_model_version_from_artifact(
            model=linear, artifact_path=path, source="benchmark", actor=dana
        )
        do_set_alias(model=linear, alias="staging", version=self.sklearn, actor=dana)
        _token, self.secret = do_create_api_token(user=dana, name="bench", is_read_only=False, actor=dana)
        self.rows = json.loads(frame[frame["yr"] == 1][FEATURES].iloc[:100].to_json(orient="records"))


def start_gunicorn(workdir: Path, workers: int, threads: int) -> tuple[subprocess.Popen, str, Path]:
    """Steward under gunicorn as ``bin/up`` serves it, production settings; (process, url, log)."""
    port = _free_port()
    log = workdir / "gunicorn.log"
    env = dict(os.environ) | {
        "DEBUG": "false",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "LOG_LEVEL": "WARNING",
    }
    command = [
        str(ROOT / ".venv" / "bin" / "gunicorn"),
        "config.wsgi",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        "--threads",
        str(threads),
        "--worker-class",
        "gthread",
        "--log-level",
        "warning",
    ]
    with log.open("w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=env)  # noqa: S603
    url = f"http://127.0.0.1:{port}"
    import requests

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited:\n{log.read_text()[-3000:]}")
        with contextlib.suppress(requests.RequestException):
            requests.get(url + "/api/", timeout=2)
            return process, url, log
        time.sleep(0.3)
    raise RuntimeError(f"gunicorn did not answer:\n{log.read_text()[-3000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith("postgres"):
        sys.exit("set DATABASE_URL to a PostgreSQL server (the scratch database is created beside it)")
    workdir = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    servers = Path(tempfile.mkdtemp(prefix="ms-", dir="/tmp"))
    recreate_database(url, BENCH_DB)
    gunicorn = None
    try:
        setup_django(url, workdir, servers)
        world = World(workdir)
        import pandas as pd
        import requests

        from runners.serving import predictors, supervisor

        gunicorn, base, _log = start_gunicorn(workdir, args.workers, args.threads)
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {world.secret}"

        def over_http(name: str, rows: list[dict]) -> Callable[[], Any]:
            def call() -> None:
                response = session.post(
                    f"{base}/api/models/{name}/aliases/staging/predict", json={"rows": rows}
                )
                if response.status_code != 200:
                    raise RuntimeError(f"{name}: {response.status_code} {response.text[:300]}")

            return call

        def in_process(version: Any, rows: list[dict]) -> Callable[[], Any]:
            loaded = predictors.load(
                version.path, flavor=version.flavor, sha256=version.sha256, name=str(version)
            )
            return lambda: loaded.predict(pd.DataFrame.from_records(rows))

        import torch

        torch.set_num_threads(1)  # as the web workers predict
        with contextlib.suppress(OSError):
            load = os.getloadavg()
            print(
                f"load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} cores"
            )
        print(
            f"gunicorn {args.workers} workers x {args.threads} threads; {args.requests} requests each, "
            f"after {args.warmup} warm-up\n"
        )
        print(
            f"{'model':<34}{'rows':>5}{'HTTP p50':>10}{'p95':>8}"
            f"{'in-proc p50':>13}{'p95':>8}{'ratio p50':>11}"
        )
        cases = []
        for label, name, version in (
            ("demo (steward_tabular, in-process)", "bike-demand", world.demo),
            ("sklearn (mlflow, model server)", "bike-linear", world.sklearn),
        ):
            for count in (1, 100):
                rows = world.rows[:count]
                cases.append((label, name, count, over_http(name, rows), in_process(version, rows)))
        # Round robin: each round times every case once, so the load of a shared machine (other
        # processes come and go) falls on all of them alike.
        timings: dict[tuple[str, int, str], list[float]] = {}
        for _ in range(args.warmup):
            for _label, _name, _count, http_call, local_call in cases:
                http_call()
                local_call()
        for _ in range(args.requests):
            for _label, name, count, http_call, local_call in cases:
                for kind, call in (("http", http_call), ("local", local_call)):
                    started = time.perf_counter()
                    call()
                    timings.setdefault((name, count, kind), []).append(
                        (time.perf_counter() - started) * 1000.0
                    )
        results = {}
        for label, name, count, _http_call, _local_call in cases:
            http = _figures(timings[(name, count, "http")])
            local = _figures(timings[(name, count, "local")])
            results[(name, count)] = http
            print(
                f"{label:<34}{count:>5}{http[0]:>10.2f}{http[1]:>8.2f}{local[0]:>13.2f}{local[1]:>8.2f}"
                f"{http[0] / local[0]:>10.1f}x"
            )
        with contextlib.suppress(OSError):
            load = os.getloadavg()
            print(f"load average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
        p50, p95 = results[("bike-demand", 1)]
        verdict = "met" if p50 <= 10 and p95 <= 25 else "NOT met"
        print(
            "\ngoal p50 <= 10 ms, p95 <= 25 ms (demo model, 1 row over HTTP): "
            f"{p50:.2f} / {p95:.2f} ms, {verdict}"
        )
        print("baseline named by issue 17: predicting in process, 2.3 ms; a one-row inference job, 232 ms")
    finally:
        if gunicorn is not None and gunicorn.poll() is None:
            gunicorn.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                gunicorn.wait(timeout=15)
        from runners.serving import supervisor

        supervisor.stop_all(servers)
        drop_database(url, BENCH_DB)
        shutil.rmtree(workdir, ignore_errors=True)
        shutil.rmtree(servers, ignore_errors=True)


if __name__ == "__main__":
    main()
