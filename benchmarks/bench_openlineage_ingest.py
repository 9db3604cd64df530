"""OpenLineage ingest throughput, issue 10's goal: >= 2,000 events/s through the real client with
4 threads on this 2-core machine.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/steward \\
        .venv/bin/python benchmarks/bench_openlineage_ingest.py
    ... --runs 500 --threads 4 --workers 2 --server-threads 4 --batch 100

Steward runs on a scratch PostgreSQL database (``steward_bench_openlineage``, created, migrated,
dropped at the end) under gunicorn as ``bin/up`` serves it (``bench_serving.start_gunicorn``:
gthread workers, DEBUG off), RBAC and audit on. The client is a data scientist's read-write token.

Workload: pipelines of 20 jobs reading 2 of 40 shared tables and writing 1 of them (datasets are
reused across runs, as daily jobs reuse their tables). Each run is START (with its inputs) then
COMPLETE (with its output and a column-lineage facet): two events.

1. single endpoint: ``--threads`` threads, each with its own ``OpenLineageClient``
   (``HttpTransport``, ``api_key`` auth, keep-alive session), emitting its share of runs;
2. batch endpoint: the same events serialised by the client's ``Serde``, ``--batch`` per POST to
   ``/api/v1/lineage/batch`` (the clients send no batches; this is what a forwarder would do);
3. where the time goes: the action alone in this process (no HTTP), its SQL statements per event,
   and this client process's own CPU share (it shares the 2 cores with gunicorn and PostgreSQL).

Prints events/s and the goal beside them. No timed assertions.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import secrets
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench_serving import _free_port, start_gunicorn  # benchmarks/ is on sys.path
from scratch_db import drop_database, recreate_database, scratch_url

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
BENCH_DB = "steward_bench_openlineage"
GOAL = 2000
JOBS, TABLES = 20, 40


def setup(url: str, workdir: Path) -> str:
    """Scratch database, migrated; a team, its data scientist and a read-write token (secret)."""
    os.environ.update(
        {
            "DATABASE_URL": scratch_url(url, BENCH_DB),
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "STEWARD_VAR_DIR": str(workdir / "var"),
            "STEWARD_AUDIT_SIGNING_KEY_FILE": str(workdir / "audit_signing_key.pem"),
        }
    )
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from governance.actions.teams import do_create_team, do_set_membership
    from governance.actions.tokens import do_create_api_token

    call_command("migrate", verbosity=0)
    users = get_user_model()
    admin = users.objects.create_superuser("bench-admin", password=secrets.token_urlsafe(16))
    dana = users.objects.create_user("dana", password=secrets.token_urlsafe(16))
    team = do_create_team(name="bench", actor=admin)
    do_set_membership(user=dana, team=team, role="data_scientist", actor=admin)
    return do_create_api_token(user=dana, name="bench", is_read_only=False, actor=dana)[1]


def run_events(index: int, prefix: str) -> list:
    """START and COMPLETE of run ``index``: job ``index % JOBS``, two input tables, one output."""
    import datetime

    from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
    from openlineage.client.generated import column_lineage_dataset as cl
    from openlineage.client.uuid import generate_new_uuid

    job_no = index % JOBS
    job = Job(namespace="airflow://bench", name=f"{prefix}.dag.task{job_no}")
    run = Run(runId=str(generate_new_uuid()))
    inputs = [
        InputDataset(namespace="postgres://db:5432", name=f"bench.public.t{(job_no + k) % TABLES}")
        for k in (0, 1)
    ]
    source = cl.InputField(namespace="postgres://db:5432", name=inputs[0].name, field="cnt")
    output = OutputDataset(
        namespace="postgres://db:5432",
        name=f"bench.public.t{(job_no + 2) % TABLES}",
        facets={
            "columnLineage": cl.ColumnLineageDatasetFacet(fields={"cnt": cl.Fields(inputFields=[source])})
        },
    )
    start = datetime.datetime(2026, 12, 1, tzinfo=datetime.UTC) + datetime.timedelta(seconds=index)
    return [
        RunEvent(eventType=RunState.START, eventTime=start.isoformat(), run=run, job=job, inputs=inputs),
        RunEvent(
            eventType=RunState.COMPLETE,
            eventTime=(start + datetime.timedelta(seconds=30)).isoformat(),
            run=run,
            job=job,
            outputs=[output],
        ),
    ]


TICKS = os.sysconf("SC_CLK_TCK")


def _proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) process ``pid`` has used; 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


def server_cpu(master: int) -> dict[int, tuple[str, float]]:
    """``{pid: (kind, CPU seconds so far)}`` of gunicorn (master + workers) and of the PostgreSQL
    backends serving the scratch database: where the time goes while the shared machine's load
    varies."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        pid, ppid = int(entry.name), int(stat.rsplit(")", 1)[1].split()[1])
        if pid == master or ppid == master:
            found[pid] = ("gunicorn", _proc_cpu(pid))
        elif cmdline.startswith("postgres:") and BENCH_DB in cmdline:
            found[pid] = ("postgres", _proc_cpu(pid))
    return found


def cpu_used(
    before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]
) -> tuple[float, float]:
    """(gunicorn, PostgreSQL) CPU seconds between two ``server_cpu`` samples; a process that
    ended meanwhile (a closed database connection) is not counted, so this is a lower bound."""
    totals = {"gunicorn": 0.0, "postgres": 0.0}
    for pid, (kind, seconds) in after.items():
        totals[kind] += seconds - before.get(pid, (kind, 0.0))[1]
    return totals["gunicorn"], totals["postgres"]


def threaded(threads: int, work) -> tuple[float, float]:
    """Run ``work(thread_index)`` in ``threads`` threads; (wall seconds, this process's CPU seconds)."""
    cpu = resource.getrusage(resource.RUSAGE_SELF)
    errors: list[BaseException] = []

    def guarded(i: int) -> None:
        try:
            work(i)
        except BaseException as exc:  # reported after the join
            errors.append(exc)

    pool = [threading.Thread(target=guarded, args=(i,)) for i in range(threads)]
    began = time.perf_counter()
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    wall = time.perf_counter() - began
    after = resource.getrusage(resource.RUSAGE_SELF)
    if errors:
        raise errors[0]
    return wall, (after.ru_utime - cpu.ru_utime) + (after.ru_stime - cpu.ru_stime)


def single_endpoint(base: str, secret: str, runs: int, threads: int) -> tuple[int, float, float]:
    from openlineage.client import OpenLineageClient
    from openlineage.client.transport.http import ApiKeyTokenProvider, HttpConfig, HttpTransport

    events = [run_events(i, "single") for i in range(runs)]

    def work(t: int) -> None:
        config = HttpConfig(
            url=base, auth=ApiKeyTokenProvider({"apiKey": secret}), retry={"total": 0}, timeout=30
        )
        client = OpenLineageClient(transport=HttpTransport(config))
        for pair in events[t::threads]:
            for event in pair:
                client.emit(event)

    wall, cpu = threaded(threads, work)
    return runs * 2, wall, cpu


def batch_endpoint(base: str, secret: str, runs: int, threads: int, size: int) -> tuple[int, float, float]:
    import requests
    from openlineage.client.serde import Serde

    # START events in earlier batches than their COMPLETE: a forwarder sends in arrival order.
    bodies = [
        json.loads(Serde.to_json(e)) for pair in (run_events(i, "batch") for i in range(runs)) for e in pair
    ]
    chunks = [bodies[i : i + size] for i in range(0, len(bodies), size)]

    def work(t: int) -> None:
        session = requests.Session()
        headers = {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}
        for chunk in chunks[t::threads]:
            answer = session.post(
                f"{base}/api/v1/lineage/batch", data=json.dumps(chunk), headers=headers, timeout=60
            )
            answer.raise_for_status()
            if answer.json()["summary"]["failed"]:
                raise RuntimeError(answer.text[:500])

    wall, cpu = threaded(threads, work)
    return len(bodies), wall, cpu


def in_process(runs: int) -> tuple[int, float, float, float, float]:
    """The action alone (parse + apply), one thread: (events, wall s, SQL statements per event,
    this process's CPU s, its PostgreSQL backend's CPU s)."""
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from openlineage.client.serde import Serde

    from governance.models import Team
    from lineage.openlineage.events import parse_event
    from runners.openlineage.actions import do_ingest_events

    dana, team = get_user_model().objects.get(username="dana"), Team.objects.get(name="bench")
    bodies = [
        json.loads(Serde.to_json(e)) for pair in (run_events(i, "inproc") for i in range(runs)) for e in pair
    ]
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backend = cursor.fetchone()[0]
    began, cpu, db = time.perf_counter(), time.process_time(), _proc_cpu(backend)
    with CaptureQueriesContext(connection) as queries:
        for body in bodies:
            do_ingest_events([(parse_event(body), body)], team=team, actor=dana)
    wall = time.perf_counter() - began
    return len(bodies), wall, len(queries) / len(bodies), time.process_time() - cpu, _proc_cpu(backend) - db


# The ceiling: a WSGI app that reads each request and answers 201 without looking at it.
NOOP_RECEIVER = """def application(environ, start_response):
    environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    start_response("201 Created", [("Content-Length", "0")])
    return [b""]
"""


def ceiling(workdir: Path, args: argparse.Namespace) -> float:
    """Events/s of the real client (same threads, same gunicorn) against ``NOOP_RECEIVER``: what
    the client and HTTP alone allow on this machine, whatever the server does. Prints it."""
    import subprocess

    import requests

    (workdir / "noop_receiver.py").write_text(NOOP_RECEIVER)
    port = _free_port()
    command = [
        str(ROOT / ".venv" / "bin" / "gunicorn"),
        "noop_receiver:application",
        "--pythonpath",
        str(workdir),
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(args.workers),
        "--threads",
        str(args.server_threads),
        "--worker-class",
        "gthread",
        "--log-level",
        "warning",
    ]
    server = subprocess.Popen(command, cwd=workdir)  # noqa: S603
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                requests.post(base + "/api/v1/lineage", data=b"{}", timeout=2)
                break
            except requests.RequestException:
                time.sleep(0.2)
        single_endpoint(base, "unused", 20, args.threads)  # warm-up
        events, wall, cpu = single_endpoint(base, "unused", args.runs, args.threads)
    finally:
        server.terminate()
        server.wait(timeout=30)
    rate = events / wall
    print(
        f"ceiling: the same client against a receiver that does nothing: {rate:,.0f} events/s "
        f"(goal >= {GOAL:,}: {rate / GOAL:.2f}x); client CPU {cpu / events * 1000:.2f} ms per event"
    )
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=500, help="runs per phase (2 events each)")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--server-threads", type=int, default=4, help="gunicorn threads per worker")
    parser.add_argument("--batch", type=int, default=100, help="events per batch POST")
    args = parser.parse_args()
    url = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/steward")
    recreate_database(url, BENCH_DB)
    gunicorn = None
    try:
        with tempfile.TemporaryDirectory() as tmp:
            workdir = Path(tmp)
            secret = setup(url, workdir)
            gunicorn, base, _log = start_gunicorn(workdir, args.workers, args.server_threads)
            print(
                f"gunicorn {args.workers} workers x {args.server_threads} threads; {args.threads} client "
                f"threads; {os.cpu_count()} CPUs shared by client, server and PostgreSQL; "
                f"load average {os.getloadavg()[0]:.1f}"
            )
            single_endpoint(base, secret, 20, args.threads)  # warm-up: connections, imports
            phases = (
                (
                    "single: real client, POST /api/v1/lineage",
                    lambda: single_endpoint(base, secret, args.runs, args.threads),
                ),
                (
                    f"batch: {args.batch} per POST /api/v1/lineage/batch",
                    lambda: batch_endpoint(base, secret, args.runs, args.threads, args.batch),
                ),
            )
            rates = []
            for name, phase in phases:
                server_before = server_cpu(gunicorn.pid)
                events, wall, cpu = phase()
                web, db = cpu_used(server_before, server_cpu(gunicorn.pid))
                rate = events / wall
                rates.append(rate)
                per_event = (cpu + web + db) / events
                print(
                    f"{name}: {events} events in {wall:.2f} s = {rate:,.0f} events/s "
                    f"(goal >= {GOAL:,}: {rate / GOAL:.2f}x)\n    CPU ms per event: client "
                    f"{cpu / events * 1000:.2f}, gunicorn {web / events * 1000:.2f}, PostgreSQL "
                    f"{db / events * 1000:.2f}; at that cost 2 idle cores: {2 / per_event:,.0f} events/s"
                )
            ceiling_rate = ceiling(workdir, args)
            print(f"    Steward's single endpoint: {rates[0] / ceiling_rate:.2f}x that ceiling")
            events, wall, statements, cpu, db = in_process(args.runs)
            print(
                f"action alone, in process, 1 thread: {events / wall:,.0f} events/s, {statements:.1f} SQL "
                f"statements per event; CPU ms per event: Python {cpu / events * 1000:.2f}, "
                f"PostgreSQL {db / events * 1000:.2f}"
            )
    finally:
        if gunicorn is not None:
            gunicorn.terminate()
            gunicorn.wait(timeout=30)
        drop_database(url, BENCH_DB)


if __name__ == "__main__":
    main()
