"""Benchmarks of durable jobs on PostgreSQL + Redis with real Celery workers, against issue 16's goals.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/steward CELERY_BROKER_URL=redis://127.0.0.1:6379/5 \\
        .venv/bin/python benchmarks/bench_jobs.py
    ... --dispatch-jobs 30 --deaths 3 --throughput-jobs 12 --only dispatch,death,throughput

Runs against a scratch database (``steward_bench`` on the server of DATABASE_URL), created and
migrated at the start and dropped at the end, and the Redis database of CELERY_BROKER_URL (its
queue is emptied first: give it a Redis database of its own). Workers are ``celery -A config
worker`` processes (prefork pool, one slot each, the product's settings: late acks, prefetch 1),
beat is ``celery -A config beat`` with its database scheduler; the API is called in process
(Django's test Client, a read-write API token, RBAC and audit on), as a data scientist.

(a) Dispatch latency: ``POST /api/jobs/`` of a tiny training job (one epoch on one month of the
    bike-sharing data) while the worker is idle, one at a time: the 201's return -> the job's
    ``started_at`` (the claim by the worker), p50/p95; the POST itself; and, same worker settings
    and broker, a bare Celery task's send -> its start (the baseline); the engine alone: the
    lifecycle's claim (conditional UPDATE + audit event) called in process on queued rows.
    Goal: p50/p95 no worse than today's 8.7/17.8 ms (issue 16).
(b) Worker death -> running again: two workers and beat with the default heartbeat and sweep
    settings; a long job (batch size 1) runs on one; that worker and its job's process group are
    SIGKILLed at a random moment of the heartbeat; seconds until the job is claimed again (its
    next attempt) on the other. Goal: <= 30 s.
(c) Throughput: ``--throughput-jobs`` tiny training jobs submitted at once, jobs per minute with 1
    and with 2 workers, from the first POST to the last job finished; beside them, bare Celery
    tasks that run the same compute (the same child process, ``runners.launcher``) without the
    job row, audit, registration and lineage, and the engine alone (the launches back to back in
    this process).
No timed assertions: figures and ratios are printed, with the load average (the machine may be
shared: compare the ratios of one run, not figures across runs).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from celery import shared_task
from scratch_db import drop_database, recreate_database, scratch_url  # benchmarks/ is on sys.path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

BENCH_DB = "steward_bench"
GOAL_P50_MS = 8.7
GOAL_P95_MS = 17.8
GOAL_RECOVERY_S = 30.0
TASK_MODULE = "benchmarks.bench_jobs"
QUIET = ["--without-gossip", "--without-mingle"]
DATA = ROOT.parent / "shared" / "data" / "bike-sharing" / "hour.csv"
FEATURES = ["season", "hr", "holiday", "workingday", "weathersit", "temp", "hum", "windspeed"]


# Bare Celery tasks: the baselines, loaded by the benchmark's workers with ``-I``. -------------


@shared_task(name="bench.bare_start")
def bare_start() -> float:
    """Returns when it started (epoch seconds): send -> start of a task that does nothing."""
    return time.time()


@shared_task(name="bench.bare_train")
def bare_train(task: dict[str, Any], limits: dict[str, Any]) -> float:
    """Run the tiny training's compute in a child as a job does (same task, same limits), without
    the job row; returns when it ended (epoch seconds)."""
    _launch_alone(task, limits)
    return time.time()


def _launch_alone(task: dict[str, Any], limits: dict[str, Any]) -> None:
    from runners import launcher

    with tempfile.TemporaryDirectory(prefix="bench-bare-") as tmp:
        run = launcher.Launch(
            {**task, "output": str(Path(tmp) / "model.pt"), "checkpoint_dir": str(Path(tmp) / "ck")},
            launcher.Limits(**limits),
            Path(tmp),
        )
        run.run(lambda event: None, lambda: None)


# Scratch database, users, data -------------------------------------------------------------------


def _setup_django(url: str, broker: str, workdir: Path, database: str = BENCH_DB) -> None:
    """Point this process and, through the environment, its workers and beat at the scratch
    database (``database`` on ``url``'s server), a scratch var/ and the broker; production
    settings; migrate."""
    os.environ.update(
        {
            "DATABASE_URL": scratch_url(url, database),
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "STEWARD_VAR_DIR": str(workdir / "var"),
            "STEWARD_AUDIT_SIGNING_KEY_FILE": str(workdir / "audit_signing_key.pem"),
            "CELERY_BROKER_URL": broker,
            "DEBUG": "false",
            "SECRET_KEY": secrets.token_urlsafe(50),
            "ALLOWED_HOSTS": "testserver,127.0.0.1,localhost",
            "LOG_LEVEL": "WARNING",
        }
    )
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


class World:
    """The benchmark's team, data scientist, dataset version and registered model."""

    def __init__(self) -> None:
        from django.contrib.auth import get_user_model
        from django.test import Client

        from governance.actions.datasets import do_create_dataset, do_register_dataset_version
        from governance.actions.registered_models import do_create_registered_model
        from governance.actions.teams import do_create_team, do_set_membership
        from governance.actions.tokens import do_create_api_token
        from governance.models import DatasetVersion

        users = get_user_model()
        admin = users.objects.create_superuser("bench-admin", password=secrets.token_urlsafe(16))
        self.dana = users.objects.create_user("dana", password=secrets.token_urlsafe(16))
        olivia = users.objects.create_user("olivia", password=secrets.token_urlsafe(16))
        team = do_create_team(name="bench", actor=admin)
        do_set_membership(user=self.dana, team=team, role="data_scientist", actor=admin)
        do_set_membership(user=olivia, team=team, role="model_owner", actor=admin)
        dataset = do_create_dataset(team=team, name="bike-sharing-hourly", actor=self.dana)
        self.version = do_register_dataset_version(
            dataset=dataset,
            file_path=DATA,
            filename="hour.csv",
            source=DatasetVersion.Source.PATH,
            actor=self.dana,
        )
        self.model = do_create_registered_model(team=team, name="bike-demand", owner=olivia, actor=self.dana)
        _token, secret = do_create_api_token(
            user=self.dana, name="bench", is_read_only=False, actor=self.dana
        )
        self.client = Client(HTTP_AUTHORIZATION=f"Bearer {secret}")

    def spec(self, **changes: Any) -> dict[str, Any]:
        """The tiny training: one epoch on January 2011 (744 rows)."""
        base = {
            "target": "cnt",
            "features": FEATURES,
            "categorical": ["season", "weathersit"],
            "epochs": 1,
            "batch_size": 256,
            "seed": 1,
            "where": {"yr": 0, "mnth": 1},
        }
        return base | changes

    def submit(self, spec: dict[str, Any]) -> tuple[int, float, float]:
        """POST the training job; returns its id, when the POST began and when its 201 returned
        (epoch seconds)."""
        body = {
            "kind": "train",
            "dataset_version": self.version.pk,
            "registered_model": self.model.pk,
            "spec": spec,
        }
        began = time.time()
        response = self.client.post("/api/jobs/", body, content_type="application/json")
        answered = time.time()
        if response.status_code != 201:
            raise RuntimeError(f"POST /api/jobs/ answered {response.status_code}: {response.content[:500]!r}")
        return response.json()["id"], began, answered

    def compute_task(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """The child's task for the tiny training, as ``runners.execute`` builds it, and its limits."""
        from runners.actions import job_limits
        from runners.models import Job
        from runners.specs import parse_spec

        spec = parse_spec(self.spec(), self.version.column_names)
        data = {
            "path": str(self.version.path),
            "format": self.version.format,
            "filename": self.version.original_filename or self.version.file,
            "name": str(self.version),
            "where": spec.where,
        }
        task = {
            "kind": "train",
            "data": data,
            "spec": spec.as_dict(),
            "checkpoint_every": spec.checkpoint_every,
            "resume": None,
        }
        sample = Job(spec=spec.as_dict(), team=self.model.team)
        return task, job_limits(sample).as_dict()


# Processes -------------------------------------------------------------------------------------


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (from /proc), children first."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


class Fleet:
    """Worker and beat processes of this benchmark; logs under ``workdir``."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.processes: dict[str, subprocess.Popen] = {}

    def _start(self, name: str, command: list[str], ready: str) -> subprocess.Popen:
        log = self.workdir / f"{name}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(  # noqa: S603 - our interpreter running Celery
                [sys.executable, "-m", "celery", "-A", "config", *command],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                # The worker imports this module (-I), which imports scratch_db beside it.
                env=os.environ
                | {
                    "PYTHONPATH": os.pathsep.join(
                        filter(None, [str(ROOT / "benchmarks"), os.environ.get("PYTHONPATH")])
                    )
                },
                start_new_session=True,
            )
        self.processes[name] = process
        deadline = time.monotonic() + 120
        while ready not in log.read_text(errors="replace"):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start: {log.read_text(errors='replace')[-2000:]}")
            time.sleep(0.1)
        return process

    def worker(self, name: str) -> subprocess.Popen:
        """A worker of the product (prefork, one slot) that also knows the bare baseline tasks."""
        return self._start(
            name,
            ["worker", "-n", f"{name}@%h", "--concurrency", "1", "-I", TASK_MODULE, "-l", "info", *QUIET],
            " ready.",
        )

    def beat(self) -> subprocess.Popen:
        return self._start("beat", ["beat", "-l", "info", "--max-interval", "1"], "beat: Starting...")

    def kill(self, name: str) -> None:
        """SIGKILL the worker and everything below it (its pool and the job's process group)."""
        process = self.processes.pop(name)
        below = _descendants(process.pid)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        for pid in below:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        process.wait()

    def running_job_on(self) -> str | None:
        """The worker whose pool runs a job's child (``runners.child``), if any."""
        for name, process in self.processes.items():
            for pid in _descendants(process.pid):
                with contextlib.suppress(OSError):
                    if b"runners.child" in Path(f"/proc/{pid}/cmdline").read_bytes():
                        return name
        return None

    def stop(self, name: str | None = None) -> None:
        for key in [name] if name else list(self.processes):
            process = self.processes.pop(key)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def _wait(what: str, condition: Callable[[], bool], timeout_s: float = 600, step_s: float = 0.005) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"not {what} within {timeout_s} s")
        time.sleep(step_s)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def _ms(values: list[float]) -> str:
    return f"p50 {_percentile(values, 0.5) * 1000:7.1f} ms   p95 {_percentile(values, 0.95) * 1000:7.1f} ms"


def _finished(job_ids: list[int]) -> bool:
    from runners.models import Job

    return not Job.objects.filter(pk__in=job_ids, state__in=["queued", "running"]).exists()


def _purge_queue() -> None:
    from config.celery import app

    app.control.purge()


# (a) dispatch latency ---------------------------------------------------------------------------


def bench_dispatch(world: World, fleet: Fleet, jobs: int) -> None:
    from celery import current_app

    from runners.actions import JOBS, do_submit_job
    from runners.models import Job

    print(f"\n(a) dispatch latency: {jobs} tiny jobs one at a time, 1 idle worker, Redis")
    fleet.worker("w1")
    # Warm-up: the worker's first task imports what it needs.
    job_id, _, _ = world.submit(world.spec())
    _wait("warm-up job", lambda: _finished([job_id]))
    bare_start.apply_async().get(timeout=60)

    after_201, post, claim_from_post, claim_from_row = [], [], [], []
    for _ in range(jobs):
        job_id, began, answered = world.submit(world.spec())
        _wait("claimed", lambda: Job.objects.filter(pk=job_id, started_at__isnull=False).exists())  # noqa: B023
        created, started = (
            moment.timestamp()
            for moment in Job.objects.values_list("created_at", "started_at").get(pk=job_id)
        )
        after_201.append(started - answered)
        claim_from_row.append(started - created)
        post.append(answered - began)
        claim_from_post.append(started - began)
        _wait("finished", lambda: _finished([job_id]), step_s=0.05)  # noqa: B023 - the worker is idle again

    bare = []
    for _ in range(jobs):
        sent = time.time()
        began = current_app.send_task("bench.bare_start").get(timeout=60)
        bare.append(began - sent)

    # The engine alone: the claim a delivery makes (conditional UPDATE + audit), in process.
    fleet.stop("w1")  # nothing may claim the rows below but the engine
    queued = [
        do_submit_job(
            kind="train",
            dataset_version=world.version,
            registered_model=world.model,
            spec=world.spec(),
            actor=world.dana,
        ).pk
        for _ in range(jobs)
    ]
    _purge_queue()
    engine = []
    for job_id in queued:
        began = time.perf_counter()
        JOBS.claim(job_id)
        engine.append(time.perf_counter() - began)
    Job.objects.filter(pk__in=queued).update(state="cancelled")

    print(f"  Steward  201 -> claimed by the worker    {_ms(after_201)}")
    print(f"           POST start -> claimed           {_ms(claim_from_post)}")
    print(f"           row inserted -> claimed         {_ms(claim_from_row)}")
    print(f"           the POST itself (201)           {_ms(post)}")
    print(f"  baseline bare Celery task send -> start  {_ms(bare)}")
    print(f"  engine   claim alone (UPDATE + audit)    {_ms(engine)}")
    p50, p95 = _percentile(after_201, 0.5) * 1000, _percentile(after_201, 0.95) * 1000
    ratio50 = p50 / max(_percentile(bare, 0.5) * 1000, 1e-9)
    print(
        f"  201 -> claimed / bare send -> start: p50 x{ratio50:.2f}; goal p50 <= {GOAL_P50_MS} ms, "
        f"p95 <= {GOAL_P95_MS} ms: {'met' if p50 <= GOAL_P50_MS and p95 <= GOAL_P95_MS else 'NOT met'}"
    )


# (b) worker death -> running again ------------------------------------------------------------


def bench_death(world: World, fleet: Fleet, deaths: int) -> None:
    from django.conf import settings

    from runners.models import Job

    interval = settings.STEWARD_JOB_HEARTBEAT_INTERVAL_S
    timeout = settings.STEWARD_JOB_HEARTBEAT_TIMEOUT_S
    sweep = settings.STEWARD_JOB_STALE_SWEEP_S
    print(
        f"\n(b) worker death -> job running again elsewhere: 2 workers + beat; heartbeat every "
        f"{interval} s, dead after {timeout} s, stale sweep every {sweep} s "
        f"(worst case {timeout} + {sweep} = {timeout + sweep} s)"
    )
    fleet.worker("d1")
    fleet.worker("d2")
    fleet.beat()
    rng = random.Random(16)
    figures, spare = [], 3
    for _ in range(deaths):
        # Batch size 1 on the whole of 2011: an epoch takes minutes, the job is mid-training.
        job_id, _, _ = world.submit(world.spec(batch_size=1, where={"yr": 0}))
        _wait("running", lambda: Job.objects.filter(pk=job_id, state="running").exists(), step_s=0.05)  # noqa: B023
        _wait("computing", lambda: fleet.running_job_on() is not None, step_s=0.05)
        time.sleep(rng.uniform(0, interval))  # a random moment of the heartbeat's period
        victim = fleet.running_job_on()
        assert victim is not None
        last_beat = Job.objects.values_list("heartbeat_at", flat=True).get(pk=job_id).timestamp()
        fleet.kill(victim)
        died = time.time()
        _wait(
            "running again",
            lambda: Job.objects.filter(pk=job_id, state="running", attempt=2).exists(),  # noqa: B023
            timeout_s=10 * (timeout + sweep),
            step_s=0.05,
        )
        again = Job.objects.values_list("started_at", flat=True).get(pk=job_id).timestamp()
        figures.append(again - died)
        print(
            f"  killed {victim} {died - last_beat:4.1f} s after the job's last heartbeat: "
            f"running again (attempt 2) after {again - died:5.1f} s"
        )
        world.client.post(f"/api/jobs/{job_id}/cancel/")
        _wait("cancelled", lambda: _finished([job_id]), step_s=0.1)  # noqa: B023
        fleet.worker(f"d{spare}")  # a replacement node
        spare += 1
    fleet.stop()
    _purge_queue()
    worst = max(figures)
    verdict = "met" if worst <= GOAL_RECOVERY_S else "NOT met"
    print(
        f"  death -> running again: median {statistics.median(figures):.1f} s, worst {worst:.1f} s "
        f"of {len(figures)}; goal <= {GOAL_RECOVERY_S:.0f} s: {verdict}"
    )
    print("  baseline (the defaults before: heartbeat 15 s, dead after 90 s, sweep every 30 s): worst 120 s")


# (c) throughput ---------------------------------------------------------------------------------


def bench_throughput(world: World, fleet: Fleet, jobs: int) -> None:
    from celery import current_app

    print(f"\n(c) throughput: {jobs} tiny training jobs submitted at once")
    rates = {}
    for workers in (1, 2):
        names = [f"t{workers}-{i}" for i in range(workers)]
        for name in names:
            fleet.worker(name)
        began = time.time()
        ids = [world.submit(world.spec())[0] for _ in range(jobs)]
        _wait("finished", lambda: _finished(ids), step_s=0.1)  # noqa: B023
        elapsed = time.time() - began
        rates[f"Steward jobs, {workers} worker{'s' * (workers > 1)}"] = jobs / elapsed * 60

        task, limits = world.compute_task()
        began = time.time()
        results = [current_app.send_task("bench.bare_train", args=[task, limits]) for _ in range(jobs)]
        ended = max(result.get(timeout=600) for result in results)
        rates[f"bare Celery tasks, same compute, {workers} worker{'s' * (workers > 1)}"] = (
            jobs / (ended - began) * 60
        )
        for name in names:
            fleet.stop(name)

    task, limits = world.compute_task()
    began = time.time()
    for _ in range(jobs):
        _launch_alone(task, limits)
    rates["engine alone (launches back to back, no Celery)"] = jobs / (time.time() - began) * 60

    for label, rate in rates.items():
        print(f"  {label:55s} {rate:6.1f} jobs/min")
    one, two = rates["Steward jobs, 1 worker"], rates["Steward jobs, 2 workers"]
    print(f"  2 workers / 1 worker: x{two / one:.2f} (on {os.cpu_count()} CPUs)")
    for workers in ("1 worker", "2 workers"):
        bare = rates[f"bare Celery tasks, same compute, {workers}"]
        print(f"  Steward / bare Celery, {workers}: x{rates[f'Steward jobs, {workers}'] / bare:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dispatch-jobs", type=int, default=30)
    parser.add_argument("--deaths", type=int, default=3)
    parser.add_argument("--throughput-jobs", type=int, default=12)
    parser.add_argument("--only", default="dispatch,death,throughput")
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    args = parser.parse_args()
    url = os.environ.get("DATABASE_URL", "")
    broker = os.environ.get("CELERY_BROKER_URL", "")
    if not url.startswith("postgres") or not broker.startswith("redis"):
        sys.exit("set DATABASE_URL to a PostgreSQL server and CELERY_BROKER_URL to a Redis database")
    only = set(args.only.split(","))
    print(
        f"load average at the start: {' '.join(f'{v:.2f}' for v in os.getloadavg())} on {os.cpu_count()} CPUs"
    )
    recreate_database(url, BENCH_DB)
    with tempfile.TemporaryDirectory(prefix="bench-jobs-") as tmp:
        workdir = Path(tmp)
        fleet = Fleet(workdir)
        try:
            _setup_django(url, broker, workdir)
            _purge_queue()
            world = World()
            if "dispatch" in only:
                bench_dispatch(world, fleet, args.dispatch_jobs)
            if "death" in only:
                bench_death(world, fleet, args.deaths)
            if "throughput" in only:
                bench_throughput(world, fleet, args.throughput_jobs)
        finally:
            fleet.stop()
            if not args.keep:
                drop_database(url, BENCH_DB)
    print(f"load average at the end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
