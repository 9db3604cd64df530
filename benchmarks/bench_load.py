"""Issue 13's load test: a mixed workload through locust for minutes at a sustained rate.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/steward CELERY_BROKER_URL=redis://127.0.0.1:6379/6 \\
        .venv/bin/python benchmarks/bench_load.py --duration 300

Steward on a scratch PostgreSQL database (created and dropped here) under gunicorn as the image
serves it (2 workers x 4 threads, HTTP metrics in a multiprocess folder), a real Celery worker
on Redis, the world of ``bench_serving.World`` (a team, its data scientist and owner, the demo
model with alias ``staging``) plus the hourly bike data as a dataset version. locust (from a
virtualenv of its own, ``var/bench-locust``, made on first use: its gevent stack stays out of
Steward's) runs ``benchmarks/locustfile.py`` headless: people browsing pages, scripts reading and
writing through the API and submitting training jobs, and online predictions.

Printed: requests, failures (the goal: 0), p50/p95 per endpoint, the achieved rate, and the
resident memory of the web and worker process trees after the warm-up and at the end (the goal:
flat). No timed assertion anywhere.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench_jobs import Fleet, _descendants  # benchmarks/ is on sys.path
from bench_serving import DATA, World, setup_django, start_gunicorn
from scratch_db import drop_database, recreate_database

ROOT = Path(__file__).resolve().parent.parent
BENCH_DB = "steward_bench_serving"  # bench_serving's setup_django names it
LOCUST_VENV = ROOT / "var" / "bench-locust"
LOCUST = "locust==2.47.0"


def _locust() -> Path:
    """locust in its own virtualenv (made once)."""
    binary = LOCUST_VENV / "bin" / "locust"
    if not binary.exists():
        subprocess.run([sys.executable, "-m", "venv", str(LOCUST_VENV)], check=True)  # noqa: S603
        subprocess.run([str(LOCUST_VENV / "bin" / "pip"), "install", "--quiet", LOCUST], check=True)  # noqa: S603
    return binary


def _tree_rss_mb(pid: int, *, command: str = "") -> float:
    """Resident megabytes of process ``pid`` and everything below it whose command line contains
    ``command`` (for the worker, "celery": its pool, not the training jobs that come and go)."""
    total = 0
    for member in [pid, *_descendants(pid)]:
        try:
            if command and command not in Path(f"/proc/{member}/cmdline").read_text():
                continue
            total += int(Path(f"/proc/{member}/statm").read_text().split()[1])
        except (OSError, IndexError, ValueError):
            continue
    return total * os.sysconf("SC_PAGE_SIZE") / 2**20


class RssSampler(threading.Thread):
    """Samples the web and worker trees' RSS every ``every`` seconds while the load runs, so
    "flat" is judged on the curve, not on two points."""

    def __init__(self, web: int, worker: int, every: float = 30.0):
        super().__init__(daemon=True)
        self.web, self.worker, self.every = web, worker, every
        self.samples: list[tuple[float, float, float]] = []
        self.stopped = threading.Event()
        self.began = time.monotonic()

    def sample(self) -> tuple[float, float]:
        return _tree_rss_mb(self.web), _tree_rss_mb(self.worker, command="celery")

    def run(self) -> None:
        while not self.stopped.wait(self.every):
            self.samples.append((time.monotonic() - self.began, *self.sample()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=int, default=300, help="seconds of load after the warm-up")
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--users", type=int, default=10, help="locust users (pages:api:predict = 2:2:1)")
    args = parser.parse_args()
    url = os.environ.get("DATABASE_URL", "")
    broker = os.environ.get("CELERY_BROKER_URL", "")
    if not url.startswith("postgres") or not broker.startswith("redis"):
        sys.exit("set DATABASE_URL to a PostgreSQL server and CELERY_BROKER_URL to a Redis database")
    locust = _locust()
    workdir = Path(tempfile.mkdtemp(prefix="bench-load-"))
    servers = Path(tempfile.mkdtemp(prefix="ms-", dir="/tmp"))
    recreate_database(url, BENCH_DB)
    gunicorn = fleet = None
    try:
        os.environ["CELERY_BROKER_URL"] = broker
        setup_django(url, workdir, servers)
        world = World(workdir)
        from django.contrib.auth import get_user_model

        from config.demo import FEATURES
        from governance.actions.datasets import do_create_dataset, do_register_dataset_version
        from governance.models import DatasetVersion

        password = secrets.token_urlsafe(16)
        dana = get_user_model().objects.get(username="dana")
        dana.set_password(password)
        dana.save()
        team = world.demo.model.team
        dataset = do_create_dataset(team=team, name="bike-sharing-hourly", actor=dana)
        version = do_register_dataset_version(
            dataset=dataset,
            file_path=DATA,
            filename="hour.csv",
            source=DatasetVersion.Source.PATH,
            actor=dana,
        )
        multiproc = workdir / "prometheus"
        multiproc.mkdir()
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(multiproc)
        gunicorn, base, _log = start_gunicorn(workdir, 2, 4)
        fleet = Fleet(workdir)
        worker = fleet.worker("load").pid
        env = os.environ | {
            "STEWARD_LOAD_TOKEN": world.secret,
            "STEWARD_LOAD_USER": "dana",
            "STEWARD_LOAD_PASSWORD": password,
            "STEWARD_LOAD_MODEL_ID": str(world.demo.model_id),
            "STEWARD_LOAD_TEAM_ID": str(team.pk),
            "STEWARD_LOAD_DATASET_VERSION_ID": str(version.pk),
            "STEWARD_LOAD_ROWS": json.dumps(world.rows[:50]),
            "STEWARD_LOAD_SPEC": json.dumps(
                {"target": "cnt", "features": FEATURES, "categorical": ["season", "weathersit"], "epochs": 1}
            ),
        }

        def run_locust(seconds: int, prefix: Path) -> None:
            subprocess.run(  # noqa: S603 - locust on our locustfile
                [
                    str(locust),
                    "-f",
                    str(ROOT / "benchmarks" / "locustfile.py"),
                    "--headless",
                    "--host",
                    base,
                    "--users",
                    str(args.users),
                    "--spawn-rate",
                    str(args.users),
                    "--run-time",
                    f"{seconds}s",
                    "--csv",
                    str(prefix),
                    "--only-summary",
                    "--loglevel",
                    "WARNING",
                ],
                env=env,
                cwd=ROOT,
                check=False,
                capture_output=True,
            )

        print(f"warm-up: {args.warmup} s ...", flush=True)
        run_locust(args.warmup, workdir / "warmup")
        sampler = RssSampler(gunicorn.pid, worker)
        rss_start = sampler.sample()
        load_start = os.getloadavg()
        print(f"load: {args.duration} s, {args.users} users ...", flush=True)
        began = time.monotonic()
        sampler.start()
        run_locust(args.duration, workdir / "load")
        elapsed = time.monotonic() - began
        sampler.stopped.set()
        rss_end = sampler.sample()
        report(workdir / "load_stats.csv", elapsed, rss_start, rss_end, load_start)
        print(
            "RSS over the load (s: web MB, worker MB): "
            + ", ".join(f"{at:.0f}: {web:.0f}, {pool:.0f}" for at, web, pool in sampler.samples)
        )
    finally:
        if gunicorn is not None:
            gunicorn.terminate()
            gunicorn.wait(timeout=30)
        if fleet is not None:
            fleet.stop()
        drop_database(url, BENCH_DB)


def report(
    stats: Path,
    elapsed: float,
    rss_start: tuple[float, float],
    rss_end: tuple[float, float],
    load_start: tuple[float, float, float],
) -> None:
    rows = list(csv.DictReader(stats.open()))
    print(f"\nload average at the start: {load_start[0]:.2f}; wall {elapsed:.0f} s")
    print(f"{'endpoint':<30}{'requests':>10}{'failures':>10}{'p50 ms':>9}{'p95 ms':>9}{'req/s':>8}")
    for row in rows:
        name = row["Name"] if row["Name"] != "Aggregated" else "all"
        print(
            f"{name:<30}{row['Request Count']:>10}{row['Failure Count']:>10}"
            f"{row['50%']:>9}{row['95%']:>9}{float(row['Requests/s']):>8.1f}"
        )
    print(
        f"\nRSS web (gunicorn tree): {rss_start[0]:.0f} MB after the warm-up, {rss_end[0]:.0f} MB at the end"
        f"\nRSS worker (celery processes, not jobs): {rss_start[1]:.0f} MB after the warm-up,"
        f" {rss_end[1]:.0f} MB at the end"
    )


if __name__ == "__main__":
    main()
