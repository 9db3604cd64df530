"""Runner overhead (issue 17): the tabular template through a code-run job vs a bare PyTorch loop.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/steward CELERY_BROKER_URL=redis://127.0.0.1:6379/5 \\
        .venv/bin/python benchmarks/bench_runner_overhead.py
    ... --rounds 8 --epochs 20,200 --threads 1,2 --no-engine --keep

The training is the tabular template's (``runners/workloads/tabular``, entry point ``train``: the
MLP of ``runners.training``) on the whole hourly bike data (17,379 rows: 13,903 trained on, 3,476
validated), the demo's features, ``--threads`` torch threads on every side. Each ``--epochs``
value is one training size (20 is the template's own default, about 2 s of training here; 200
about 16 s; 2 shows the fixed cost), each ``--threads`` value one thread count.

(a) Bare loop: a fresh ``python`` process that imports torch, reads hour.csv with the registry's
    reader, builds the same spec as the template's ``train.py`` and trains with
    ``runners.training.train``: timed from its start to its exit by this process, and split by
    the process itself (imports, data, training).
(b) Code run, as users run it: the template registered once as a code version
    (``POST /api/code-versions/ {"project", "template": "tabular"}``), then per run
    ``POST /api/jobs/ {"kind": "code", "entry_point": "train", ...}`` to Steward under gunicorn
    (``bin/up``'s configuration) -> a real Celery worker (prefork, one slot) claims it, lays out
    the workdir, issues the job token, starts the sandbox (bubblewrap + the socat API proxy where
    the host allows it, ``STEWARD_SANDBOX``), streams the log, and the template logs its params,
    metrics and artifact and registers the model version through the MLflow API at
    ``STEWARD_API_URL`` (this gunicorn) -> the job succeeded: from the POST's start to the row's
    ``finished_at``.
(c) Engine alone (not with ``--no-engine``): the built-in training job (``"kind": "train"``,
    ``runners.child``) of the same spec on the same dataset version, through the same API and
    worker.

Each round runs every path once at each size and thread count, in an order that reverses from one
round to the next ((a) (b) (c), then (c) (b) (a)), so a drift of the machine's speed hits each path
alike. A single run of the same training varies by about 5 % here, more than the goal, so each
round is a pair: the overhead is the median over rounds of job / bare - 1 of that round, with a
95 % bootstrap interval of that median (percentile, 10,000 resamples, seeded), beside the ratio of
the medians. Both in wall time (the goal's measure, goal <= 2 %) and in CPU time (this process's
children; the worker's and gunicorn's whole process trees, so the sandbox, proxy and API requests
are counted: from a cgroup made for them where this process may, else sampled from /proc), with
the load average. PostgreSQL's own CPU is in neither figure.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import resource
import shutil
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
GIT = shutil.which("git") or "git"
# The training: the demo's columns, the template's parameters (MLproject names).
PARAMETERS: dict[str, Any] = {
    "target": "cnt",
    "features": "season,mnth,hr,weekday,weathersit,holiday,workingday,temp,hum,windspeed",
    "categorical": "season,mnth,hr,weekday,weathersit",
    "batch_size": 128,
    "learning_rate": 0.003,
    "seed": 7,
    "model_name": "bike-template",
}

# The bare loop, run as its own process: the template's imports, reader, spec and training,
# without Steward around it.
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
read = time.perf_counter()
result = training.train(frame, spec)
trained = time.perf_counter()
print(json.dumps({"imports": imported - began, "data": read - imported, "training": trained - read,
                  "rmse": result.metrics["rmse"]}))
"""


def training_spec(epochs: int) -> dict[str, Any]:
    """The spec the template's ``train.py`` builds from ``PARAMETERS`` and ``epochs`` (its other
    parameters at their MLproject defaults)."""
    return {
        "target": PARAMETERS["target"],
        "features": PARAMETERS["features"].split(","),
        "categorical": PARAMETERS["categorical"].split(","),
        "task": "auto",
        "epochs": epochs,
        "batch_size": PARAMETERS["batch_size"],
        "learning_rate": PARAMETERS["learning_rate"],
        "hidden_layers": [64, 32],
        "validation_fraction": 0.2,
        "seed": PARAMETERS["seed"],
        "checkpoint_every": 0,
    }


def _children_cpu_s() -> float:
    """CPU seconds (user + system) of this process's reaped children so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _own_cpu_ticks(pid: int) -> int | None:
    """Clock ticks of user + system time process ``pid`` used itself (children not included)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[11]) + int(fields[12])


class TreeCpu:
    """CPU seconds used by processes ``roots`` and everything below them while sampled.

    Each process's own time is read from /proc every ``sample()`` and the last value kept, so a
    process that ended still counts up to its last sample (at most one sampling step of it is
    lost; one that lived less than a step is missed). Reaped children's times (``cutime``) are not
    used: a code run's sandbox (bubblewrap's PID namespace) does not hand its processes' times
    up to the worker, so the tree is sampled instead."""

    def __init__(self, roots: tuple[int, ...]):
        self.roots = roots
        self.start: dict[int, int] = {}
        self.last: dict[int, int] = {}
        self.sample()
        self.start = dict(self.last)

    def sample(self) -> None:
        for pid in [*self.roots, *(child for root in self.roots for child in _descendants(root))]:
            ticks = _own_cpu_ticks(pid)
            if ticks is not None:
                self.last[pid] = ticks

    def seconds(self) -> float:
        used = sum(ticks - self.start.get(pid, 0) for pid, ticks in self.last.items())
        return used / os.sysconf("SC_CLK_TCK")


class CgroupCpu:
    """CPU seconds used by processes ``roots`` and everything they start from now on, read from a
    cgroup's CPU accounting (v1 ``cpuacct`` or v2 ``cpu.stat``): exact, dead processes included,
    and nothing sampled while the job runs (a 10 Hz scan of /proc costs ~2 ms of CPU each time,
    on the cores the training uses). ``usable()`` is False where the cgroup cannot be made (not
    root, no writable hierarchy): then ``TreeCpu`` samples instead."""

    V1 = Path("/sys/fs/cgroup/cpuacct")
    V2 = Path("/sys/fs/cgroup")

    def __init__(self, roots: tuple[int, ...]):
        self.v2 = self.hierarchy() == self.V2
        self.path = self.hierarchy() / f"steward-bench-{os.getpid()}"
        self.path.mkdir(exist_ok=True)
        # Moving a process moves all its threads; what it starts later is born in the cgroup.
        for pid in [*roots, *(child for root in roots for child in _descendants(root))]:
            with contextlib.suppress(OSError):
                (self.path / "cgroup.procs").write_text(str(pid))

    @classmethod
    def hierarchy(cls) -> Path:
        """The cgroup hierarchy with CPU accounting (v1's cpuacct, else v2's root)."""
        return cls.V1 if (cls.V1 / "cpuacct.usage").exists() else cls.V2

    @classmethod
    def usable(cls) -> bool:
        """Whether this process may make a cgroup with CPU accounting here."""
        folder = cls.hierarchy()
        controllers = folder / "cgroup.controllers"
        if folder == cls.V2 and not (controllers.exists() and "cpu" in controllers.read_text().split()):
            return False
        probe = folder / f"steward-bench-probe-{os.getpid()}"
        try:
            probe.mkdir()
            probe.rmdir()
        except OSError:
            return False
        return True

    def seconds(self) -> float:
        """CPU seconds the cgroup's processes used since it was made."""
        if self.v2:
            stat_lines = (self.path / "cpu.stat").read_text().split("\n")
            usec = next(int(line.split()[1]) for line in stat_lines if line.startswith("usage_usec"))
            return usec / 1e6
        return int((self.path / "cpuacct.usage").read_text()) / 1e9

    def close(self) -> None:
        """Move the processes back to the root cgroup and remove this one."""
        root = self.path.parent / "cgroup.procs"
        with contextlib.suppress(OSError):
            for pid in (self.path / "cgroup.procs").read_text().split():
                with contextlib.suppress(OSError):
                    root.write_text(pid)
            self.path.rmdir()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Steward:
    """Steward under gunicorn as ``bin/up`` serves it (2 gthread workers x 4 threads), on the
    scratch database (the environment ``_setup_django`` set); ``post`` calls its API as dana."""

    def __init__(self, workdir: Path, port: int, token: str):
        import requests

        self.url = f"http://127.0.0.1:{port}"
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"
        self.log = (workdir / "gunicorn.log").open("wb")
        self.process = subprocess.Popen(  # noqa: S603 - our gunicorn serving Steward
            [
                str(Path(sys.executable).parent / "gunicorn"),
                "config.wsgi",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                "2",
                "--threads",
                "4",
                "--worker-class",
                "gthread",
                "--log-level",
                "warning",
            ],
            cwd=ROOT,
            env=os.environ,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 120
        while True:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    return
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("gunicorn did not start; see its log")
            time.sleep(0.2)

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST ``body`` as JSON; the answer's JSON. Raises RuntimeError unless 2xx."""
        answer = self.session.post(f"{self.url}{path}", json=body, timeout=120)
        if answer.status_code >= 300:
            raise RuntimeError(f"POST {path} answered {answer.status_code}: {answer.text[:500]}")
        return dict(answer.json())

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)
        self.log.close()


def run_bare(epochs: int, threads: int) -> dict[str, float]:
    """One bare run: its wall and CPU seconds from start to exit, and its own split."""
    env = os.environ | {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    cpu = _children_cpu_s()
    began = time.perf_counter()
    done = subprocess.run(  # noqa: S603 - our interpreter and our script
        [sys.executable, "-c", BARE, json.dumps(training_spec(epochs)), str(threads), str(DATA)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    wall = time.perf_counter() - began
    return {"wall": wall, "cpu": _children_cpu_s() - cpu, **json.loads(done.stdout.strip().splitlines()[-1])}


def run_job(
    steward: Steward, body: dict[str, Any], worker_pid: int, cgroup: CgroupCpu | None = None
) -> dict[str, float]:
    """One job POSTed to Steward and run by the worker: seconds from the POST's start to
    ``finished_at``; CPU seconds of the worker's and gunicorn's process trees over that time
    (from ``cgroup`` when given, else sampled from /proc)."""
    from runners.models import Job

    tree = None if cgroup is not None else TreeCpu((worker_pid, steward.process.pid))
    cpu_before = cgroup.seconds() if cgroup is not None else 0.0
    began = time.time()
    job_id = steward.post("/api/jobs/", body)["id"]

    def finished() -> bool:
        if tree is not None:
            tree.sample()
        return Job.objects.filter(pk=job_id, finished_at__isnull=False).exists()

    _wait("finished", finished, step_s=0.1)
    time.sleep(0.5)  # the pool reaps the child and acknowledges the task
    if tree is not None:
        tree.sample()
    cpu_used = tree.seconds() if tree is not None else cgroup.seconds() - cpu_before  # type: ignore[union-attr]
    job = Job.objects.get(pk=job_id)
    if job.state != "succeeded":
        raise RuntimeError(f"job {job_id} {job.state}: {job.error}\n{job.log_tail}")
    started, finished = job.started_at.timestamp(), job.finished_at.timestamp()
    child = float(job.wall_time_s or 0.0)
    return {
        "wall": finished - began,
        "cpu": cpu_used,
        "dispatch": started - began,
        "child": child,
        "worker": finished - started - child,
        "rmse": float(job.metrics.get("rmse", "nan")),
    }


def _template_at(ref: str, workdir: Path) -> Path:
    """A code root holding ``tabular-before/``: the tabular template's files as of git ``ref``."""
    root = workdir / "code-root"
    folder = root / "tabular-before"
    folder.mkdir(parents=True)
    names = subprocess.run(  # noqa: S603 - git on our repository
        [GIT, "ls-tree", "--name-only", f"{ref}:runners/workloads/tabular"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for name in names:
        (folder / name).write_bytes(
            subprocess.run(  # noqa: S603 - git on our repository
                [GIT, "show", f"{ref}:runners/workloads/tabular/{name}"],
                cwd=ROOT,
                capture_output=True,
                check=True,
            ).stdout
        )
    return root


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", default="2,20", help="training sizes, comma-separated epochs")
    parser.add_argument("--threads", default="2", help="torch threads, comma-separated counts")
    parser.add_argument("--no-engine", action="store_true", help="skip the built-in training job (c)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    parser.add_argument(
        "--before", metavar="REF", help="also run the tabular template as of git REF (b'), to compare"
    )
    args = parser.parse_args()
    sizes = [
        (int(epochs), int(threads))
        for threads in args.threads.split(",")
        for epochs in args.epochs.split(",")
    ]
    url = os.environ.get("DATABASE_URL", "")
    broker = os.environ.get("CELERY_BROKER_URL", "")
    if not url.startswith("postgres") or not broker.startswith("redis"):
        sys.exit("set DATABASE_URL to a PostgreSQL server and CELERY_BROKER_URL to a Redis database")
    print(
        f"load average at the start: {' '.join(f'{v:.2f}' for v in os.getloadavg())} on {os.cpu_count()} CPUs"
    )
    recreate_database(url, BENCH_DB)
    paths = (
        ["bare", "code run"] + (["before"] if args.before else []) + ([] if args.no_engine else ["engine"])
    )
    figures: dict[tuple[int, int], dict[str, list[dict[str, float]]]] = {
        size: {p: [] for p in paths} for size in sizes
    }
    with tempfile.TemporaryDirectory(prefix="bench-overhead-") as tmp:
        workdir = Path(tmp)
        fleet = Fleet(workdir)
        steward = None
        cgroup: CgroupCpu | None = None
        try:
            port = _free_port()
            if args.before:
                os.environ["STEWARD_CODE_ROOTS"] = (
                    f"{ROOT / 'runners' / 'workloads'},{_template_at(args.before, workdir)}"
                )
            # The worker gives code runs this API (through the sandbox's proxy).
            os.environ["STEWARD_API_URL"] = f"http://127.0.0.1:{port}"
            _setup_django(url, broker, workdir, BENCH_DB)
            _purge_queue()
            world = World()
            from governance.actions.tokens import do_create_api_token

            _token, secret = do_create_api_token(
                user=world.dana, name="overhead", is_read_only=False, actor=world.dana
            )
            steward = Steward(workdir, port, secret)
            team = world.model.team_id
            project = steward.post("/api/code-projects/", {"team": team, "name": "tabular"})["id"]
            versions = {
                "code run": steward.post("/api/code-versions/", {"project": project, "template": "tabular"})
            }
            if args.before:
                versions["before"] = steward.post(
                    "/api/code-versions/", {"project": project, "directory": "tabular-before"}
                )
            worker = fleet.worker("overhead").pid

            def code_run(epochs: int, threads: int, path: str = "code run") -> dict[str, Any]:
                return {
                    "kind": "code",
                    "code_version": versions[path]["id"],
                    "entry_point": "train",
                    "parameters": PARAMETERS | {"epochs": epochs},
                    "inputs": {"train": world.version.pk},
                    "spec": {"limits": {"threads": threads}},
                }

            def engine(epochs: int, threads: int) -> dict[str, Any]:
                spec = {k: v for k, v in training_spec(epochs).items() if k != "checkpoint_every"}
                return {
                    "kind": "train",
                    "dataset_version": world.version.pk,
                    "registered_model": world.model.pk,
                    "spec": spec | {"limits": {"threads": threads}},
                }

            # Warm: the worker's first jobs import their modules; gunicorn's workers theirs.
            for path in versions:
                run_job(steward, code_run(1, 1, path), worker)
            if not args.no_engine:
                run_job(steward, engine(1, 1), worker)
            # After the warm-up: the pool's children and gunicorn's workers exist, and what they
            # start later is born in the cgroup.
            cgroup = CgroupCpu((worker, steward.process.pid)) if CgroupCpu.usable() else None
            accounting = "a cgroup" if cgroup else "sampled from /proc at 10 Hz"
            print(f"CPU of the worker and gunicorn: {accounting}")
            for round_ in range(1, args.rounds + 1):
                for epochs, threads in sizes:
                    rows = figures[(epochs, threads)]
                    for path in paths if round_ % 2 else paths[::-1]:
                        if path == "bare":
                            rows["bare"].append(run_bare(epochs, threads))
                        elif path == "engine":
                            rows["engine"].append(run_job(steward, engine(epochs, threads), worker, cgroup))
                        else:
                            rows[path].append(
                                run_job(steward, code_run(epochs, threads, path), worker, cgroup)
                            )
                    walls = ", ".join(
                        f"{name} {runs[-1]['wall']:.2f} s ({runs[-1]['cpu']:.2f} CPU s)"
                        for name, runs in rows.items()
                    )
                    print(f"  round {round_}, {epochs} epochs, {threads} thread(s): {walls}", flush=True)
        finally:
            if cgroup is not None:
                cgroup.close()
            if steward is not None:
                steward.stop()
            fleet.stop()
            if not args.keep:
                drop_database(url, BENCH_DB)
    for size in sizes:
        report(size, figures[size], args.rounds, args.before)
    print(f"\nload average at the end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


def _median(rows: list[dict[str, float]], key: str) -> float:
    return statistics.median(row[key] for row in rows)


def paired_overhead(
    job: list[dict[str, float]], bare: list[dict[str, float]], measure: str
) -> tuple[float, float, float]:
    """The median over rounds of ``job / bare - 1`` (each round's own pair, in ``measure``), and
    the 95 % percentile-bootstrap interval of that median (10,000 resamples of the rounds, seed 0):
    ``(median, low, high)``, as fractions."""
    ratios = [j[measure] / b[measure] - 1 for j, b in zip(job, bare, strict=True)]
    draw = random.Random(0)
    medians = sorted(statistics.median(draw.choices(ratios, k=len(ratios))) for _ in range(10_000))
    return statistics.median(ratios), medians[249], medians[9_749]


def report(
    size: tuple[int, int], figures: dict[str, list[dict[str, float]]], rounds: int, before: str | None
) -> None:
    """Medians at one training size, and the overheads in wall time (the goal's measure) and in
    CPU time (the steadier one on a shared machine: others' load stretches wall times unevenly)."""
    epochs, threads = size
    bare = figures["bare"]
    print(
        f"\nthe tabular template's training, {epochs} epochs on hour.csv, {threads} thread(s), "
        f"medians of {rounds} rounds"
    )
    print(
        f"  (a) bare loop      {_median(bare, 'wall'):7.2f} s, {_median(bare, 'cpu'):6.2f} CPU s   "
        f"(imports {_median(bare, 'imports'):.2f} s, data {_median(bare, 'data'):.3f} s, "
        f"training {_median(bare, 'training'):.2f} s; rmse {_median(bare, 'rmse'):.1f})"
    )
    for label, name in (
        ("(b) code run", "code run"),
        (f"(b') at {before}", "before"),
        ("(c) engine alone", "engine"),
    ):
        job = figures.get(name)
        if not job:
            continue
        print(
            f"  {label:<18} {_median(job, 'wall'):7.2f} s, {_median(job, 'cpu'):6.2f} CPU s   "
            f"(dispatch {_median(job, 'dispatch'):.3f} s, child {_median(job, 'child'):.2f} s, "
            f"worker around it {_median(job, 'worker'):.3f} s; rmse {_median(job, 'rmse'):.1f})"
        )
        for measure in ("wall", "cpu"):
            ratio = _median(job, measure) / _median(bare, measure)
            paired, low, high = paired_overhead(job, bare, measure)
            verdict = "meets" if paired <= GOAL_OVERHEAD else "misses"
            print(
                f"      {name} vs bare ({measure}): overhead {100 * paired:+.1f} % "
                f"[95 % interval {100 * low:+.1f} % .. {100 * high:+.1f} %], median of the round pairs "
                f"({verdict} the goal <= {100 * GOAL_OVERHEAD:.0f} %); ratio of the medians x{ratio:.3f}"
            )


if __name__ == "__main__":
    main()
