"""Runner overhead (issue 17): the same training through a Steward job and as a bare loop.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/steward CELERY_BROKER_URL=redis://127.0.0.1:6379/5 \\
        .venv/bin/python benchmarks/bench_runner_overhead.py
    ... --rounds 3 --epochs 15 --threads 2 --template --keep

The training is the demo's (``config.demo.TRAINING_SPEC``: the MLP of ``runners.training`` on the
2011 rows of the hourly bike data, 15 epochs), with ``--threads`` torch threads on both sides.

(a) Bare loop: a fresh ``python`` process that imports torch, reads hour.csv with the registry's
    reader, keeps the 2011 rows, preprocesses and trains with ``runners.training.train``: timed
    from its start to its exit by this process, and split by the process itself (imports, data,
    training).
(b) Job: ``POST /api/jobs/`` (a data scientist's read-write token, RBAC, validation, audit) of the
    same spec -> a real Celery worker (``celery -A config worker``, prefork, one slot, the
    product's settings) claims it, runs the child (``runners.child``), registers the model
    version with its lineage -> the job succeeded: from the POST's start to the row's
    ``finished_at``; split into dispatch (POST -> ``started_at``), the child's wall time (its
    accounting: ``wall_time_s``) and the worker's own time around it.
(c) ``--template``: the tabular template (``runners/workloads/tabular``, entry point ``train``) as
    a code run executes it, with the environment ``runners.workload_env`` documents, logging to
    a Steward served by ``manage.py runserver`` on the scratch database. Code-run *jobs* (API ->
    worker -> sandbox) are not in this build yet: when they are, (c) should submit one instead.

Rounds alternate (a), (b) and (c), so the machine's other load hits each alike; the medians are
printed, with the overhead (b / a - 1, goal <= 2 %) and the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shlex
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_jobs import (  # benchmarks/ is on sys.path
    DATA,
    Fleet,
    World,
    _descendants,
    _purge_queue,
    _setup_django,
    _wait,
)
from scratch_db import drop_database, recreate_database

ROOT = Path(__file__).resolve().parent.parent
BENCH_DB = "steward_bench_overhead"
GOAL_OVERHEAD = 0.02

# The bare loop, run as its own process: the same imports, reader, row filter and training.
BARE = r"""
import json, sys, time
from pathlib import Path
began = time.perf_counter()
import torch
torch.set_num_threads(int(sys.argv[2]))
from governance import datafiles
from runners import training
from runners.specs import parse_spec
imported = time.perf_counter()
path = Path(sys.argv[3])
frame = datafiles.read_frame(path, "csv", path.name)
spec = parse_spec(json.loads(sys.argv[1]), list(frame.columns))
rows = datafiles.apply_where(frame, spec.where)
read = time.perf_counter()
result = training.train(rows, spec)
trained = time.perf_counter()
print(json.dumps({"imports": imported - began, "data": read - imported, "training": trained - read,
                  "rmse": result.metrics["rmse"]}))
"""


def _children_cpu_s() -> float:
    """CPU seconds (user + system) of this process's reaped children so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def tree_cpu_s(pid: int) -> float:
    """CPU seconds of process ``pid`` and every process below it, including the children they
    reaped (``/proc/<pid>/stat`` utime + stime + cutime + cstime): a worker's own time, its pool's
    and its jobs' children's once they ended."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for each in [pid, *_descendants(pid)]:
        try:
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(value) for value in fields[11:15])
    return total / ticks


def training_spec(epochs: int, threads: int) -> dict[str, Any]:
    """The demo's training spec with ``epochs`` and the job's ``threads`` (its limits)."""
    from config.demo import TRAINING_SPEC

    return {**TRAINING_SPEC, "epochs": epochs, "limits": {"threads": threads}}


def run_bare(spec: dict[str, Any], threads: int) -> dict[str, float]:
    """One bare run: its wall seconds from start to exit, and its own split."""
    env = os.environ | {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    bare_spec = {key: value for key, value in spec.items() if key != "limits"}
    cpu = _children_cpu_s()
    began = time.perf_counter()
    done = subprocess.run(  # noqa: S603 - our interpreter and our script
        [sys.executable, "-c", BARE, json.dumps(bare_spec), str(threads), str(DATA)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    wall = time.perf_counter() - began
    return {"wall": wall, "cpu": _children_cpu_s() - cpu, **json.loads(done.stdout.strip().splitlines()[-1])}


def run_job(world: World, spec: dict[str, Any], worker_pid: int) -> dict[str, float]:
    """One job through the API and a worker: seconds from the POST's start to ``finished_at``;
    CPU seconds of the POST (this process) and of the worker's process tree (its child included)."""
    from runners.models import Job

    cpu = tree_cpu_s(worker_pid)
    own = time.process_time()
    job_id, began, _answered = world.submit(spec)
    own = time.process_time() - own
    _wait("finished", lambda: Job.objects.filter(pk=job_id, finished_at__isnull=False).exists(), step_s=0.05)
    time.sleep(0.5)  # the pool reaps the child and acknowledges the task
    cpu = tree_cpu_s(worker_pid) - cpu + own
    job = Job.objects.get(pk=job_id)
    if job.state != "succeeded":
        raise RuntimeError(f"job {job_id} {job.state}: {job.error}")
    started, finished = job.started_at.timestamp(), job.finished_at.timestamp()
    return {
        "wall": finished - began,
        "cpu": cpu,
        "child_cpu": float(job.cpu_time_s or 0.0),
        "dispatch": started - began,
        "child": float(job.wall_time_s or 0.0),
        "worker": finished - started - float(job.wall_time_s or 0.0),
        "rmse": job.metrics["rmse"],
    }


class Server:
    """``manage.py runserver`` on the scratch database (the environment ``_setup_django`` set)."""

    def __init__(self, workdir: Path):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = (workdir / "runserver.log").open("wb")
        self.process = subprocess.Popen(  # noqa: S603 - our interpreter running Django
            [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{self.port}"],
            cwd=ROOT,
            env=os.environ | {"DEBUG": "false"},
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 120
        while True:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("runserver did not start; see its log")
            time.sleep(0.2)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)
        self.log.close()


def template_command(spec: dict[str, Any], model_name: str) -> str:
    """The tabular template's ``train`` command for ``spec``, filled in as MLflow Projects does."""
    from runners import codefiles

    folder = ROOT / "runners" / "workloads" / "tabular"
    files = {path.name: path.read_bytes() for path in folder.iterdir() if path.is_file()}
    entry = codefiles.entry_points(files)["train"]
    values = {name: parameter["default"] for name, parameter in entry["parameters"].items()}
    values |= {
        "target": spec["target"],
        "features": ",".join(spec["features"]),
        "categorical": ",".join(spec.get("categorical") or []),
        "epochs": spec["epochs"],
        "batch_size": spec["batch_size"],
        "learning_rate": spec["learning_rate"],
        "seed": spec["seed"],
        "model_name": model_name,
    }
    return re.sub(r"\{(\w+)\}", lambda m: shlex.quote(str(values[m.group(1)])), entry["command"])


def run_template(
    world: World, server: Server, spec: dict[str, Any], threads: int, data: Path
) -> dict[str, float]:
    """One run of the tabular template as a code run executes it: a tracked run started through
    the MLflow API, the entry point's command under /bin/sh in the template's folder, with a
    clean environment; seconds from the run's creation to the command's exit."""
    from governance.actions.tokens import do_create_api_token

    _token, secret = do_create_api_token(
        user=world.dana, name="template", is_read_only=False, actor=world.dana
    )
    headers = {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}
    import requests

    cpu = _children_cpu_s() + tree_cpu_s(server.process.pid)
    began = time.perf_counter()
    created = requests.post(
        f"{server.url}/api/2.0/mlflow/experiments/create",
        json={"name": f"overhead-{time.time_ns()}"},
        headers=headers,
        timeout=60,
    )
    experiment_id = created.json()["experiment_id"]
    run = requests.post(
        f"{server.url}/api/2.0/mlflow/runs/create",
        json={"experiment_id": experiment_id},
        headers=headers,
        timeout=60,
    )
    run_id = run.json()["run"]["info"]["run_id"]
    with tempfile.TemporaryDirectory(prefix="bench-template-") as out:
        env = {
            "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
            "HOME": out,
            "PYTHONPATH": str(ROOT),
            "STEWARD_THREADS": str(threads),
            "OMP_NUM_THREADS": str(threads),
            "STEWARD_OUTPUT_DIR": out,
            "STEWARD_INPUT_TRAIN": str(data),
            "MLFLOW_TRACKING_URI": server.url,
            "MLFLOW_TRACKING_TOKEN": secret,
            "MLFLOW_RUN_ID": run_id,
            "MLFLOW_EXPERIMENT_ID": experiment_id,
        }
        subprocess.run(  # noqa: S603 - the template's command, as its MLproject says
            ["/bin/sh", "-c", template_command(spec, "bike-template")],
            cwd=ROOT / "runners" / "workloads" / "tabular",
            env=env,
            capture_output=True,
            check=True,
            timeout=1800,
        )
    wall = time.perf_counter() - began
    return {"wall": wall, "cpu": _children_cpu_s() + tree_cpu_s(server.process.pid) - cpu}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--template", action="store_true", help="also run the tabular template (c)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    args = parser.parse_args()
    url = os.environ.get("DATABASE_URL", "")
    broker = os.environ.get("CELERY_BROKER_URL", "")
    if not url.startswith("postgres") or not broker.startswith("redis"):
        sys.exit("set DATABASE_URL to a PostgreSQL server and CELERY_BROKER_URL to a Redis database")
    print(
        f"load average at the start: {' '.join(f'{v:.2f}' for v in os.getloadavg())} on {os.cpu_count()} CPUs"
    )
    recreate_database(url, BENCH_DB)
    figures: dict[str, list[dict[str, float]]] = {"bare": [], "job": [], "template": []}
    with tempfile.TemporaryDirectory(prefix="bench-overhead-") as tmp:
        workdir = Path(tmp)
        fleet = Fleet(workdir)
        server = None
        try:
            _setup_django(url, broker, workdir, BENCH_DB)
            _purge_queue()
            world = World()
            spec = training_spec(args.epochs, args.threads)
            if args.template:
                server = Server(workdir)
            worker = fleet.worker("overhead").pid
            run_job(world, {**spec, "epochs": 1}, worker)  # warm: the worker's first job imports its modules
            for round_ in range(1, args.rounds + 1):
                figures["bare"].append(run_bare(spec, args.threads))
                figures["job"].append(run_job(world, spec, worker))
                if server is not None:
                    figures["template"].append(run_template(world, server, spec, args.threads, DATA))
                walls = ", ".join(
                    f"{name} {rows[-1]['wall']:.2f} s ({rows[-1]['cpu']:.2f} CPU s)"
                    for name, rows in figures.items()
                    if rows
                )
                print(f"  round {round_}: {walls}")
        finally:
            if server is not None:
                server.stop()
            fleet.stop()
            if not args.keep:
                drop_database(url, BENCH_DB)
    report(figures, args)
    print(f"load average at the end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


def _median(rows: list[dict[str, float]], key: str) -> float:
    return statistics.median(row[key] for row in rows)


def report(figures: dict[str, list[dict[str, float]]], args: argparse.Namespace) -> None:
    """Medians, and the overhead both in wall time (the goal's measure) and in CPU time (the
    honest one on a shared machine: other processes' load stretches wall times unevenly)."""
    bare, job = figures["bare"], figures["job"]
    print(
        f"\nthe demo's training, {args.epochs} epochs, {args.threads} thread(s), "
        f"medians of {args.rounds} rounds"
    )
    print(
        f"  (a) bare loop      {_median(bare, 'wall'):7.2f} s, {_median(bare, 'cpu'):6.2f} CPU s   "
        f"(imports {_median(bare, 'imports'):.2f} s, data {_median(bare, 'data'):.3f} s, "
        f"training {_median(bare, 'training'):.2f} s; rmse {_median(bare, 'rmse'):.1f})"
    )
    print(
        f"  (b) Steward job    {_median(job, 'wall'):7.2f} s, {_median(job, 'cpu'):6.2f} CPU s   "
        f"(dispatch {_median(job, 'dispatch'):.3f} s, child {_median(job, 'child'):.2f} s and "
        f"{_median(job, 'child_cpu'):.2f} CPU s, worker around it {_median(job, 'worker'):.3f} s; "
        f"rmse {_median(job, 'rmse'):.1f})"
    )
    for measure in ("wall", "cpu"):
        ratio = _median(job, measure) / _median(bare, measure)
        verdict = "meets" if ratio - 1 <= GOAL_OVERHEAD else "misses"
        print(
            f"  job / bare ({measure}): x{ratio:.3f}, overhead {100 * (ratio - 1):+.1f} % "
            f"({verdict} the goal <= {100 * GOAL_OVERHEAD:.0f} %)"
        )
    if figures["template"]:
        for measure in ("wall", "cpu"):
            ratio = _median(figures["template"], measure) / _median(bare, measure)
            print(
                f"  (c) tabular template logging to Steward over HTTP ({measure}): "
                f"{_median(figures['template'], measure):.2f} s, x{ratio:.3f} the bare loop "
                f"({100 * (ratio - 1):+.1f} %; the server's CPU included)"
            )


if __name__ == "__main__":
    main()
