"""Benchmark of the model registry against MLflow 3.17's own server, side by side (issue 9's speed goal).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/steward .venv/bin/python benchmarks/bench_registry.py
    ... --models 1000 --versions 5 --threads 8 --seconds 10 --steward-workers 2 --steward-threads 4

Same data, same machine, one run:

* Baseline: a real MLflow server (``mlflow==3.17.2`` in its own venv, ``benchmarks/mlflow_baseline/.venv``,
  created on first use), ``mlflow server --backend-store-uri sqlite:///... --workers 2``.
* Steward: a scratch PostgreSQL database (``steward_bench`` beside DATABASE_URL's, created, migrated and
  dropped at the end), served as ``bin/up`` serves it (gunicorn, gthread workers, DEBUG off, a SECRET_KEY,
  ALLOWED_HOSTS), RBAC and audit on: the benchmark user is a data scientist in one team of several, with
  a read-write API token, not a superuser.

(a) Fill: ``--models`` registered models x ``--versions`` versions created through each server's MLflow
    API (``registered-models/create``, ``model-versions/create``) by ``--threads`` client threads: writes/s.
(b) Reads, ``--threads`` client threads (a keep-alive ``requests.Session`` each) for ``--seconds`` each:
    search by name prefix (100 rows), get one model, list one model's versions; on Steward each through
    its MLflow API and its own API. Requests/s, p50, p95, and the ratio Steward / MLflow. The three
    servers run the same operation one after the other, so load from other processes hits them alike.
(c) Steward in process (Django test Client): queries per request, time in SQL, and where the time
    goes (cProfile of ``--profile-requests`` requests of each kind, top functions by cumulative time).
No timed assertions: figures and ratios are printed against the goal (>= 5x MLflow's throughput on
every read, >= 2x on writes, p95 <= 50 ms on reads).
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import os
import pstats
import random
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from scratch_db import drop_database, recreate_database, scratch_url  # benchmarks/ is on sys.path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

BENCH_DB = os.environ.get("STEWARD_BENCH_DB", "steward_bench")  # a scratch database: dropped at the end
MLFLOW_VERSION = "3.17.2"
BASELINE_VENV = ROOT / "benchmarks" / "mlflow_baseline" / ".venv"
GOAL_READ_RATIO = 5.0
GOAL_WRITE_RATIO = 2.0
GOAL_P95_MS = 50.0
PREFIX_ROWS = 100  # models per name prefix: bench-00..., bench-01..., each 100 models
MLFLOW = "/api/2.0/mlflow"


# Servers ----------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ensure_mlflow_venv() -> Path:
    """The baseline's ``mlflow`` executable, installing ``mlflow==3.17.2`` into its own venv first
    if missing (a few minutes, once). The venv is gitignored."""
    executable = BASELINE_VENV / "bin" / "mlflow"
    if not executable.exists():
        print(
            f"creating {BASELINE_VENV.relative_to(ROOT)} with mlflow=={MLFLOW_VERSION} (once)...", flush=True
        )
        subprocess.run(["python3", "-m", "venv", str(BASELINE_VENV)], check=True)  # noqa: S603, S607
        subprocess.run(  # noqa: S603 - the venv's own pip
            [str(BASELINE_VENV / "bin" / "pip"), "install", "-q", f"mlflow=={MLFLOW_VERSION}"], check=True
        )
    return executable


@dataclass
class Server:
    """A server subprocess on 127.0.0.1:``port``, its output in ``log``."""

    name: str
    port: int
    process: subprocess.Popen
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, path: str, timeout_s: float = 120.0) -> None:
        """Poll ``path`` until the server answers anything. Raises RuntimeError if it exits or
        stays silent for ``timeout_s``, with the end of its log."""
        import requests

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited:\n{self.log.read_text()[-3000:]}")
            with contextlib.suppress(requests.RequestException):
                requests.get(self.url + path, timeout=2)
                return
            time.sleep(0.3)
        raise RuntimeError(
            f"{self.name} did not answer in {timeout_s:.0f} s:\n{self.log.read_text()[-3000:]}"
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_mlflow(workdir: Path, workers: int) -> Server:
    """``mlflow server`` on a fresh SQLite store, ``workers`` uvicorn workers."""
    executable = ensure_mlflow_venv()
    port = _free_port()
    log = workdir / "mlflow-server.log"
    command = [
        str(executable),
        "server",
        "--backend-store-uri",
        f"sqlite:///{workdir / 'mlflow.db'}",
        "--artifacts-destination",
        str(workdir / "mlartifacts"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]
    with log.open("w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=workdir)  # noqa: S603
    server = Server("mlflow server", port, process, log)
    server.wait_ready("/health", timeout_s=180)
    return server


def steward_env(workdir: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of the Steward server: production settings (DEBUG off, a SECRET_KEY,
    ALLOWED_HOSTS), the scratch database, a scratch var/ and the import root holding the source;
    ``extra`` on top."""
    env = dict(os.environ)
    env.update(
        {
            "DEBUG": "false",
            "SECRET_KEY": secrets.token_urlsafe(50),
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "LOG_LEVEL": "WARNING",
            **(extra or {}),
        }
    )
    return env


def start_steward(
    workdir: Path,
    workers: int,
    threads: int,
    *,
    extra_env: dict[str, str] | None = None,
    label: str = "",
    worker_timeout_s: int = 30,
) -> Server:
    """Steward under gunicorn as ``bin/up`` serves it (gthread workers), production settings;
    ``extra_env`` on top of ``steward_env``; ``worker_timeout_s`` is gunicorn's ``--timeout``."""
    port = _free_port()
    label = label or f"{workers}x{threads}"
    log = workdir / f"steward-{label}.log"
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
        "--timeout",
        str(worker_timeout_s),
        "--log-level",
        "warning",
    ]
    with log.open("w") as out:
        process = subprocess.Popen(  # noqa: S603 - our gunicorn
            command, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=steward_env(workdir, extra_env)
        )
    server = Server(f"Steward ({label}, gunicorn {workers} workers x {threads} threads)", port, process, log)
    server.wait_ready("/api/2.0/mlflow/registered-models/search", timeout_s=60)
    return server


# Steward's scratch database and its users ----------------------------------------------------


def setup_django(url: str, workdir: Path) -> None:
    """Point this process (and, through the environment, the gunicorn it starts) at the scratch
    database and a scratch var/, then migrate."""
    sources = workdir / "sources"
    sources.mkdir()
    os.environ["DATABASE_URL"] = scratch_url(url, BENCH_DB)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ["STEWARD_VAR_DIR"] = str(workdir / "var")
    os.environ["STEWARD_AUDIT_SIGNING_KEY_FILE"] = str(workdir / "audit_signing_key.pem")
    os.environ["STEWARD_IMPORT_ROOTS"] = str(sources)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def make_source(workdir: Path) -> Path:
    """A small MLflow model directory (``MLmodel`` + a scikit-learn pickle's bytes, never loaded
    here) under the import root, for Steward's ``model-versions/create``."""
    model = workdir / "sources" / "model"
    model.mkdir(parents=True)
    (model / "MLmodel").write_text(
        "artifact_path: model\n"
        "flavors:\n"
        "  python_function:\n"
        "    loader_module: mlflow.sklearn\n"
        "    model_path: model.pkl\n"
        "    python_version: 3.11.7\n"
        "  sklearn:\n"
        "    pickled_model: model.pkl\n"
        "    serialization_format: cloudpickle\n"
        "    sklearn_version: 1.5.0\n"
        "mlflow_version: 3.17.2\n"
    )
    (model / "model.pkl").write_bytes(secrets.token_bytes(2048))
    (model / "requirements.txt").write_text("scikit-learn\n")
    return model


def make_users(other_teams: int) -> str:
    """Teams and users through Steward's actions (audited): the benchmark user ``dana`` is a data
    scientist in team ``bench``, one of ``other_teams + 1`` teams, each with members of its own.
    Returns dana's read-write API token secret."""
    from django.contrib.auth import get_user_model

    from governance.actions.teams import do_create_team, do_set_membership
    from governance.actions.tokens import do_create_api_token

    user_model = get_user_model()
    admin = user_model.objects.create_superuser("bench-admin", password=secrets.token_urlsafe(16))
    dana = user_model.objects.create_user("dana", password=secrets.token_urlsafe(16))
    team = do_create_team(name="bench", actor=admin)
    do_set_membership(user=dana, team=team, role="data_scientist", actor=admin)
    for i in range(other_teams):
        other = do_create_team(name=f"other-{i}", actor=admin)
        member = user_model.objects.create_user(f"member-{i}", password=secrets.token_urlsafe(16))
        do_set_membership(user=member, team=other, role="data_scientist", actor=admin)
    _token, secret = do_create_api_token(user=dana, name="bench", is_read_only=False, actor=dana)
    return secret


# Load generation ----------------------------------------------------------------------------


@dataclass
class Result:
    """Requests done, errors, wall seconds and latencies (seconds) of one measured phase."""

    requests: int = 0
    errors: int = 0
    elapsed: float = 0.0
    latencies: list[float] = field(default_factory=list)
    first_error: str = ""

    def add(self, other: Result) -> None:
        """Fold ``other`` (a later slice of the same measurement) into this one."""
        self.requests += other.requests
        self.errors += other.errors
        self.elapsed += other.elapsed
        self.latencies.extend(other.latencies)
        self.first_error = self.first_error or other.first_error

    @property
    def rate(self) -> float:
        return self.requests / self.elapsed if self.elapsed else 0.0

    def percentile_ms(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def _session(headers: dict[str, str]):
    import requests

    session = requests.Session()
    session.headers.update(headers)
    # One connection per thread, kept alive.
    adapter = requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=1, max_retries=0)
    session.mount("http://", adapter)
    return session


def _collect(threads: int, work: Callable[[int, Result], None]) -> Result:
    """Run ``work(thread_index, result)`` in ``threads`` threads, started together; merge."""
    barrier = threading.Barrier(threads + 1)
    parts = [Result() for _ in range(threads)]
    crashes: list[BaseException] = []

    def run(index: int) -> None:
        try:
            barrier.wait()
            work(index, parts[index])
        except BaseException as exc:
            crashes.append(exc)

    pool = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for thread in pool:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in pool:
        thread.join()
    wall = time.perf_counter() - started
    if crashes:
        raise crashes[0]
    merged = Result()
    for part in parts:
        merged.add(part)
    # A thread that timed its own window (after a warm-up) says so; else the wall time.
    windows = [part.elapsed for part in parts if part.elapsed]
    merged.elapsed = max(windows) if windows else wall
    return merged


def _timed(session, result: Result, method: str, url: str, **kwargs) -> object:
    started = time.perf_counter()
    response = session.request(method, url, timeout=60, **kwargs)
    result.latencies.append(time.perf_counter() - started)
    result.requests += 1
    if response.status_code != 200:
        result.errors += 1
        result.first_error = (
            result.first_error or f"{method} {url} {kwargs}: {response.status_code} {response.text[:300]}"
        )
        return None
    return response.json()


def model_name(i: int) -> str:
    return f"bench-{i:04d}"


def fill(
    base: str,
    headers: dict[str, str],
    models: range,
    versions: int,
    threads: int,
    source: Callable[[str, int], str],
) -> Result:
    """Create registered models ``models`` (numbers) with ``versions`` versions each through the
    MLflow API, the ``index``-th of them by thread ``index % threads``. Each request is one write."""

    def work(index: int, result: Result) -> None:
        session = _session(headers)
        for i in models[index::threads]:
            name = model_name(i)
            _timed(session, result, "POST", f"{base}{MLFLOW}/registered-models/create", json={"name": name})
            for v in range(1, versions + 1):
                _timed(
                    session,
                    result,
                    "POST",
                    f"{base}{MLFLOW}/model-versions/create",
                    json={"name": name, "source": source(name, v)},
                )

    return _collect(threads, work)


@dataclass
class Read:
    """One read operation: ``request(rng)`` gives (path, params) of a request; ``rows(json)`` how many
    rows its answer holds (checked before measuring, so every server does the same work)."""

    op: str
    api: str
    request: Callable[[random.Random], tuple[str, dict]]
    rows: Callable[[dict], int]
    expected_rows: int


def measure(
    base: str, headers: dict[str, str], read: Read, threads: int, seconds: float, warmup: float
) -> Result:
    """``threads`` threads sending ``read`` requests back to back for ``seconds`` (after ``warmup``
    seconds not counted)."""

    def work(index: int, result: Result) -> None:
        rng = random.Random(index + int(time.time()))
        session = _session(headers)
        warm_until = time.perf_counter() + warmup
        while time.perf_counter() < warm_until:
            path, params = read.request(rng)
            session.get(base + path, params=params, timeout=60)
        deadline = time.perf_counter() + seconds
        started = time.perf_counter()
        while time.perf_counter() < deadline:
            path, params = read.request(rng)
            _timed(session, result, "GET", base + path, params=params)
        result.elapsed = time.perf_counter() - started

    return _collect(threads, work)


def check(base: str, headers: dict[str, str], read: Read) -> None:
    """One request of ``read``; RuntimeError unless it answers 200 with the expected rows."""
    check = _session(headers).get(
        base + read.request(random.Random(0))[0], params=read.request(random.Random(0))[1], timeout=60
    )
    if check.status_code != 200:
        raise RuntimeError(f"{read.api} {read.op}: {check.status_code} {check.text[:200]}")
    rows = read.rows(check.json())
    if rows != read.expected_rows:
        raise RuntimeError(
            f"{read.api} {read.op}: {rows} rows, expected {read.expected_rows}: {check.text[:200]}"
        )


def reads(models: int, versions: int, ids: dict[str, int] | None) -> dict[str, list[Read]]:
    """The reads of the benchmark by API: MLflow's on both servers, Steward's own on Steward
    (``ids``: model name -> Steward id, for the version list by model)."""
    prefixes = max(1, models // PREFIX_ROWS)

    def prefix(rng: random.Random) -> str:
        return f"bench-{rng.randrange(prefixes):02d}"

    def name(rng: random.Random) -> str:
        return model_name(rng.randrange(models))

    mlflow = [
        Read(
            "search by name prefix",
            "MLflow API",
            lambda rng: (
                f"{MLFLOW}/registered-models/search",
                {"filter": f"name LIKE '{prefix(rng)}%'", "max_results": PREFIX_ROWS},
            ),
            lambda body: len(body.get("registered_models", [])),
            min(PREFIX_ROWS, models),
        ),
        Read(
            "get one model",
            "MLflow API",
            lambda rng: (f"{MLFLOW}/registered-models/get", {"name": name(rng)}),
            lambda body: 1 if "registered_model" in body else 0,
            1,
        ),
        Read(
            "list one model's versions",
            "MLflow API",
            lambda rng: (f"{MLFLOW}/model-versions/search", {"filter": f"name='{name(rng)}'"}),
            lambda body: len(body.get("model_versions", [])),
            versions,
        ),
    ]
    own: list[Read] = []
    if ids is not None:

        def results(body: dict) -> int:
            return len(body.get("results", []))

        own = [
            Read(
                "search by name prefix",
                "Steward API",
                lambda rng: ("/api/models/", {"prefix": prefix(rng), "page_size": PREFIX_ROWS}),
                results,
                min(PREFIX_ROWS, models),
            ),
            Read(
                "get one model",
                "Steward API",
                lambda rng: ("/api/models/", {"name": name(rng)}),
                results,
                1,
            ),
            Read(
                "list one model's versions",
                "Steward API",
                lambda rng: ("/api/model-versions/", {"model": ids[name(rng)]}),
                results,
                versions,
            ),
        ]
    return {"mlflow": mlflow, "own": own}


# In-process figures (Steward) -------------------------------------------------------------------


def _in_process_client(secret: str):
    from django.test import Client

    return Client(HTTP_AUTHORIZATION=f"Bearer {secret}")


def queries_per_request(
    secret: str, all_reads: list[Read], show_sql: bool = False
) -> list[tuple[str, str, int, float, float]]:
    """(api, op, queries, SQL ms, total ms) of one in-process request of each read (after one
    warm-up request): the query count is the constant the issue asks to state."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client = _in_process_client(secret)
    rows = []
    for read in all_reads:
        path, params = read.request(random.Random(1))
        client.get(path, params)
        with CaptureQueriesContext(connection) as queries:
            started = time.perf_counter()
            response = client.get(path, params)
            total_ms = (time.perf_counter() - started) * 1000
        if response.status_code != 200:
            raise RuntimeError(
                f"{read.api} {read.op} in process: {response.status_code} {response.content[:300]!r}"
            )
        sql_ms = sum(float(q["time"]) for q in queries.captured_queries) * 1000
        if show_sql:
            print(f"  -- {read.api}, {read.op}: {path} {params}")
            for query in queries.captured_queries:
                print(f"     {query['time']}s  {query['sql'][:300]}")
        rows.append((read.api, read.op, len(queries), sql_ms, total_ms))
    return rows


def _package(filename: str, function: str) -> str:
    """Where a profiled function lives: a Steward app, an installed package, the standard
    library, or C code (named after what it belongs to)."""
    if filename == "~":  # C code: "<method 'execute' of 'psycopg...' objects>" and the like
        for known in ("psycopg", "json", "sha256", "uuid"):
            if known in function:
                return f"C: {known}"
        return "C: other builtins"
    path = Path(filename)
    if "site-packages" in path.parts:
        parts = path.parts[path.parts.index("site-packages") + 1 :]
        if parts[0] == "django" and len(parts) > 2:
            return f"django.{parts[1]}"
        return parts[0].removesuffix(".py")
    with contextlib.suppress(ValueError):
        relative = path.relative_to(ROOT)
        return ".".join(relative.parts[:2]).removesuffix(".py")
    return f"stdlib: {path.stem}"


def profile(call: Callable[[int], object], requests_: int, top: int) -> list[str]:
    """cProfile of ``call(0) .. call(requests_ - 1)`` (in-process requests, after one warm-up
    ``call(-1)``): self time per request grouped by package (sums to the whole), then the functions
    with the most self time. Milliseconds per request, profiler overhead included (it inflates
    Python-heavy code, not SQL)."""
    call(-1)
    profiler = cProfile.Profile()
    profiler.enable()
    for i in range(requests_):
        call(i)
    profiler.disable()
    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    by_package: dict[str, float] = {}
    functions = []
    for (filename, line, function), (_cc, _nc, tottime, _ct, _callers) in stats.items():
        package = _package(filename, function)
        by_package[package] = by_package.get(package, 0.0) + tottime
        functions.append(
            (tottime, f"{Path(filename).name}:{line}({function})" if filename != "~" else function)
        )
    total = sum(by_package.values())
    per = 1000 / requests_
    lines = [f"  {total * per:6.2f} ms per request in all; self time by package:"]
    ranked = sorted(by_package.items(), key=lambda item: -item[1])
    shown = [f"{name} {seconds * per:.2f}" for name, seconds in ranked[:top] if seconds * per >= 0.05]
    for start in range(0, len(shown), 4):
        lines.append("    " + ";  ".join(shown[start : start + 4]))
    lines.append("  functions with the most self time (ms per request):")
    for tottime, where in sorted(functions, reverse=True)[:top]:
        lines.append(f"    {tottime * per:6.3f}  {where[:110]}")
    return lines


def _writes(client, source: str) -> dict[str, Callable[[int], object]]:
    """In-process writes through the MLflow API, for the profile: ``call(i)`` creates model
    ``profile-<i>``, or a version of model ``profile-versions``. Raises RuntimeError on a refusal."""

    def post(path: str, body: dict) -> None:
        response = client.post(f"{MLFLOW}/{path}", body, content_type="application/json")
        if response.status_code != 200:
            raise RuntimeError(f"{path} in process: {response.status_code} {response.content[:300]!r}")

    post("registered-models/create", {"name": "profile-versions"})
    return {
        "create a registered model": lambda i: post("registered-models/create", {"name": f"profile-{i}"}),
        "create a model version": lambda i: post(
            "model-versions/create", {"name": "profile-versions", "source": source}
        ),
    }


# Report ------------------------------------------------------------------------------------------


def _row(label: str, result: Result, baseline: Result | None, goal_ratio: float, is_read: bool) -> str:
    ratio = result.rate / baseline.rate if baseline and baseline.rate else float("nan")
    p95 = result.percentile_ms(0.95)
    verdict = ""
    if baseline is not None:
        ok = ratio >= goal_ratio and (not is_read or p95 <= GOAL_P95_MS)
        verdict = "meets goal" if ok else "MISSES goal"
    errors = f"  {result.errors} errors" if result.errors else ""
    ratio_text = f"{ratio:6.2f}x" if baseline is not None else "   base"
    p50 = result.percentile_ms(0.5)
    return f"  {label:40} {result.rate:9,.0f}/s {p50:8.1f} {p95:8.1f}   {ratio_text}  {verdict}{errors}"


HEADER = f"  {'':40} {'req/s':>11} {'p50 ms':>8} {'p95 ms':>8}   {'ratio':>7}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=1000)
    parser.add_argument("--versions", type=int, default=5)
    parser.add_argument("--threads", type=int, default=8, help="client threads, fill and reads")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per read operation")
    parser.add_argument("--warmup", type=float, default=0.5, help="unmeasured seconds before each slice")
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="slices per read, alternating the servers (seconds split among them)",
    )
    parser.add_argument("--mlflow-workers", type=int, default=2)
    parser.add_argument("--steward-workers", type=int, default=2)
    parser.add_argument("--steward-threads", type=int, default=4)
    parser.add_argument(
        "--sweep",
        default="",
        help="gunicorn configurations to compare on 'get one model' before the run, e.g. '2x4,4x1,4x2,5x1'",
    )
    parser.add_argument("--other-teams", type=int, default=3, help="teams besides the benchmark user's")
    parser.add_argument("--profile-requests", type=int, default=200)
    parser.add_argument("--profile-top", type=int, default=12)
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--show-sql", action="store_true", help="print each in-process request's SQL")
    parser.add_argument("--only", choices=["mlflow", "steward"], help="one server only (development)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    args = parser.parse_args()
    url = os.environ.get("DATABASE_URL", "")
    with_steward = args.only != "mlflow"
    with_mlflow = args.only != "steward"
    if with_steward and not url.startswith(("postgres://", "postgresql://")):
        sys.exit("set DATABASE_URL to a PostgreSQL server (the scratch database is created beside it)")

    servers: list[Server] = []
    workdir = Path(tempfile.mkdtemp(prefix="bench_registry_"))
    try:
        print(
            f"Registry benchmark: {args.models:,} models x {args.versions} versions,"
            f" {args.threads} client threads,"
            f" {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at the start"
        )
        mlflow = start_mlflow(workdir, args.mlflow_workers) if with_mlflow else None
        if mlflow:
            servers.append(mlflow)
            print(
                f"  baseline: mlflow {MLFLOW_VERSION} server, sqlite,"
                f" {args.mlflow_workers} workers ({mlflow.url})"
            )
        steward = secret = None
        if with_steward:
            recreate_database(url, BENCH_DB)
            setup_django(url, workdir)
            source = str(make_source(workdir))
            secret = make_users(args.other_teams)
            steward = start_steward(workdir, args.steward_workers, args.steward_threads)
            servers.append(steward)
            import django

            print(
                f"  Steward: Django {django.get_version()}, PostgreSQL {BENCH_DB}, {steward.name}, DEBUG off,"
                f" RBAC on (data scientist in 1 of {args.other_teams + 1} teams), audit on ({steward.url})"
            )
        steward_headers = {"Authorization": f"Bearer {secret}"} if secret else {}

        print(
            f"\n(a) fill through the MLflow API: {args.models * (1 + args.versions):,} writes,"
            f" {args.threads} threads"
        )
        print(HEADER)
        # In chunks of 100 models, alternating servers, so that load from other processes on the
        # machine hits both alike.
        targets = []
        if mlflow:
            targets.append(("MLflow server", mlflow.url, {}, lambda name, v: f"s3://bench/{name}/{v}"))
        if steward:
            targets.append(("Steward MLflow API", steward.url, steward_headers, lambda name, v: source))
        fills = {label: Result() for label, *_ in targets}
        for start in range(0, args.models, 100):
            chunk = range(start, min(start + 100, args.models))
            for label, base, headers, make_source_uri in targets:
                fills[label].add(fill(base, headers, chunk, args.versions, args.threads, make_source_uri))
        base_fill = fills.get("MLflow server")
        for label, result in fills.items():
            print(
                _row(label, result, base_fill if result is not base_fill else None, GOAL_WRITE_RATIO, False)
            )
            if result.errors:
                print(f"    first error: {result.first_error}")

        ids = None
        if with_steward:
            from governance.models import RegisteredModel

            ids = dict(RegisteredModel.objects.values_list("name", "id"))
            from django.db import connection

            with connection.cursor() as cursor:
                cursor.execute("VACUUM ANALYZE")

        if steward and args.sweep:
            print(f"\n    gunicorn sweep, 'get one model' through the MLflow API, {args.seconds:.0f} s each")
            probe = reads(args.models, args.versions, ids)["mlflow"][1]
            for config in args.sweep.split(","):
                workers, threads = (int(part) for part in config.split("x"))
                candidate = start_steward(workdir, workers, threads)
                try:
                    result = measure(
                        candidate.url, steward_headers, probe, args.threads, args.seconds, args.warmup
                    )
                finally:
                    candidate.stop()
                print(_row(f"{workers} workers x {threads} threads", result, None, GOAL_READ_RATIO, True))

        print(
            f"\n(b) reads, {args.threads} threads x {args.seconds:.0f} s each in {args.rounds} slices"
            " alternating the servers, keep-alive sessions;"
            f" ratio = Steward / MLflow server; goal >= {GOAL_READ_RATIO:.0f}x, p95 <= {GOAL_P95_MS:.0f} ms"
        )
        print(HEADER)
        catalogue = reads(args.models, args.versions, ids)
        for index, read in enumerate(catalogue["mlflow"]):
            print(f"  {read.op}")
            # (label, server, headers, read) of each contender; a contender whose answer is not
            # the expected rows (an API not there yet) is reported, not measured.
            contenders = []
            if mlflow:
                contenders.append(("MLflow server", mlflow.url, {}, read))
            if steward:
                contenders.append(("Steward, MLflow API", steward.url, steward_headers, read))
                contenders.append(("Steward, own API", steward.url, steward_headers, catalogue["own"][index]))
            measured = []
            for label, base, headers, each in contenders:
                try:
                    check(base, headers, each)
                except RuntimeError as exc:
                    print(f"  {label:40} not measured: {str(exc)[:160]}")
                else:
                    measured.append((label, base, headers, each))
            # Rounds alternating the contenders, so load from other processes hits them alike.
            results = {label: Result() for label, *_ in measured}
            for _ in range(args.rounds):
                for label, base, headers, each in measured:
                    results[label].add(
                        measure(base, headers, each, args.threads, args.seconds / args.rounds, args.warmup)
                    )
            baseline = results.get("MLflow server")
            for label, result in results.items():
                print(
                    _row(label, result, baseline if result is not baseline else None, GOAL_READ_RATIO, True)
                )

        if with_steward and secret and not args.no_profile:
            all_reads = catalogue["mlflow"] + catalogue["own"]
            print("\n(c) Steward in process (Django test Client, one request after a warm-up)")
            print(f"  {'':48} {'queries':>7} {'SQL ms':>8} {'total ms':>9}")
            for api, op, count, sql_ms, total_ms in queries_per_request(secret, all_reads, args.show_sql):
                print(f"  {api + ', ' + op:48} {count:7} {sql_ms:8.2f} {total_ms:9.2f}")
            print(f"\n  where the time goes: cProfile of {args.profile_requests} in-process requests each")
            client = _in_process_client(secret)
            for read in all_reads:
                print(f"\n  -- {read.api}, {read.op}")
                rng = random.Random(2)
                print(
                    "\n".join(
                        profile(
                            lambda _i, r=read, g=rng: client.get(*r.request(g)),
                            args.profile_requests,
                            args.profile_top,
                        )
                    )
                )
            for label, call in _writes(client, source).items():
                print(f"\n  -- MLflow API, {label}")
                print("\n".join(profile(call, args.profile_requests, args.profile_top)))
        print(f"\nload average {os.getloadavg()[0]:.2f} at the end (other processes share these CPUs)")
    finally:
        for server in servers:
            server.stop()
        if with_steward and not args.keep:
            with contextlib.suppress(Exception):
                drop_database(url, BENCH_DB)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
