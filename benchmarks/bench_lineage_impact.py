"""Benchmark of impact analysis on a large lineage graph (issue 10's speed goal: <= 50 ms).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/steward \
        .venv/bin/python benchmarks/bench_lineage_impact.py
    ... --nodes 100000 --edges-per-node 3 --window 40 --teams 4 --repeat 30 --depth 20

One run, on a scratch PostgreSQL database (``steward_bench_lineage`` beside DATABASE_URL's,
created, migrated and dropped at the end):

* Graph: ``--nodes`` lineage nodes that are real rows (dataset versions, jobs and model versions,
  40/35/25 %) spread over ``--teams`` teams, and ``--edges-per-node`` incoming edges per node from
  earlier nodes of its team within ``--window`` positions (a pipeline-like DAG: data flows
  forward, with fan-in and fan-out), 1 % of them from another team (what OpenLineage ingest can
  link), so RBAC has nodes to prune. Rows and edges are bulk-inserted: 100,000 audited actions
  would take hours and measure the registry, not the read.
* Who asks: ``dana``, a data scientist in one of the teams (RBAC on: other teams' nodes are left
  out and not walked through); the platform admin's figure is printed beside it.
* (a) The query alone: ``lineage.impact.impact`` in process (the walk + labels +
  attachments); the in-memory walk alone (``lineage.graph.EdgeIndex.reach``, the engine); and
  what a process pays once, its first walk (reading every edge into the index).
* (b) The product path: ``GET /api/lineage/impact/?node=&depth=`` over HTTP with dana's API token,
  to Steward under gunicorn as ``bin/up`` serves it (production settings).
Figures are printed (p50, p95, nodes reached) against the goal; nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import random
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

from scratch_db import drop_database, recreate_database, scratch_url  # benchmarks/ is on sys.path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

BENCH_DB = os.environ.get("STEWARD_BENCH_DB", "steward_bench_lineage")
GOAL_MS = 50.0
# The baseline: Marquez's own figure for a comparable lineage query (a reported number;
# Marquez needs a JVM and its own PostgreSQL schema, neither of which this machine runs).
MARQUEZ_MS = 2780.0
BATCH = 5000


def setup_django(url: str, workdir: Path) -> None:
    """Point this process (and the gunicorn it starts) at the scratch database, then migrate."""
    os.environ["DATABASE_URL"] = scratch_url(url, BENCH_DB)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ["STEWARD_VAR_DIR"] = str(workdir / "var")
    os.environ["STEWARD_AUDIT_SIGNING_KEY_FILE"] = str(workdir / "audit_signing_key.pem")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def build_graph(args: argparse.Namespace) -> dict:
    """Users, teams, ``args.nodes`` node rows and their edges. Returns ``{"dana", "admin",
    "token", "roots": [NodeRef...]}`` (roots: dana's dataset versions early in her sequence)."""
    from django.contrib.auth import get_user_model
    from django.db import connection

    from governance.actions.teams import do_create_team, do_set_membership
    from governance.actions.tokens import do_create_api_token
    from governance.models import Dataset, DatasetVersion, ModelVersion, RegisteredModel
    from lineage.models import LineageEdge
    from lineage.nodes import NodeRef
    from runners.models import Job

    rng = random.Random(10)
    users = get_user_model()
    admin = users.objects.create_superuser("bench-admin", password=secrets.token_urlsafe(16))
    dana = users.objects.create_user("dana", password=secrets.token_urlsafe(16))
    teams = [do_create_team(name=f"team-{i}", actor=admin) for i in range(args.teams)]
    do_set_membership(user=dana, team=teams[0], role="data_scientist", actor=admin)
    _token, secret = do_create_api_token(user=dana, name="bench", is_read_only=True, actor=dana)

    sequences: list[list[NodeRef]] = []
    started = time.perf_counter()
    per_team = args.nodes // args.teams
    for team in teams:
        dataset = Dataset.objects.create(
            team=team, name=f"data-{team.pk}", name_key=f"data-{team.pk}", description=""
        )
        model = RegisteredModel.objects.create(
            team=team, name=f"model-{team.pk}", name_key=f"model-{team.pk}", owner=admin, description=""
        )
        base = DatasetVersion.objects.create(
            dataset=dataset,
            version=per_team + 1,
            file="bench/base",
            original_filename="x.csv",
            format="csv",
            sha256="0" * 64,
            size_bytes=1,
            row_count=1,
            schema=[],
            source="upload",
            description="",
        )
        kinds = rng.choices(["dataset_version", "job", "model_version"], weights=[40, 35, 25], k=per_team)
        rows: dict[str, list] = {"dataset_version": [], "job": [], "model_version": []}
        for i, kind in enumerate(kinds, start=1):
            if kind == "dataset_version":
                rows[kind].append(
                    DatasetVersion(
                        dataset=dataset,
                        version=i,
                        file=f"bench/{i}",
                        original_filename="x.csv",
                        format="csv",
                        sha256="0" * 64,
                        size_bytes=1,
                        row_count=1,
                        schema=[],
                        source="upload",
                        description="",
                    )
                )
            elif kind == "job":
                rows[kind].append(
                    Job(
                        team=team,
                        kind="train",
                        registered_model=model,
                        dataset_version=base,
                        created_by=admin,
                        dispatch_error="",
                        log_tail="",
                        error="",
                        device="",
                        entry_point="",
                        celery_task_id="",
                        run_name="",
                        backend_job_id="",
                        hold_reason="",
                    )
                )
            else:
                rows[kind].append(
                    ModelVersion(
                        model=model,
                        version=i,
                        artifact=f"bench/{i}",
                        sha256="0" * 64,
                        size_bytes=1,
                        source="",
                        description="",
                    )
                )
        created = {
            kind: [obj.pk for obj in type(objs[0]).objects.bulk_create(objs, batch_size=BATCH)]
            for kind, objs in rows.items()
            if objs
        }
        counters = dict.fromkeys(created, 0)
        sequence = []
        for kind in kinds:
            sequence.append(NodeRef(kind, created[kind][counters[kind]]))
            counters[kind] += 1
        sequences.append(sequence)
    print(f"  {args.nodes:,} node rows in {time.perf_counter() - started:.1f} s", flush=True)

    started = time.perf_counter()
    edges = []
    seen: set[tuple] = set()
    for t, sequence in enumerate(sequences):
        for i in range(1, len(sequence)):
            for _ in range(args.edges_per_node):
                if rng.random() < 0.01 and args.teams > 1:
                    other = sequences[(t + rng.randrange(1, args.teams)) % args.teams]
                    source = other[rng.randrange(max(0, i - args.window), min(i, len(other)))]
                else:
                    source = sequence[rng.randrange(max(0, i - args.window), i)]
                key = (source, sequence[i])
                if key in seen:
                    continue
                seen.add(key)
                relation = "input" if sequence[i].type == "job" else "output"
                edges.append(
                    LineageEdge(
                        source_type=source.type,
                        source_id=source.id,
                        target_type=sequence[i].type,
                        target_id=sequence[i].id,
                        relation=relation,
                    )
                )
    LineageEdge.objects.bulk_create(edges, batch_size=BATCH)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    print(f"  {len(edges):,} edges in {time.perf_counter() - started:.1f} s", flush=True)
    third = len(sequences[0]) // 3
    roots = [ref for ref in sequences[0][third : third + 400] if ref.type == "dataset_version"][:10]
    return {"dana": dana, "admin": admin, "token": secret, "roots": roots}


def _stats(times_s: list[float]) -> str:
    ms = sorted(t * 1000 for t in times_s)
    p95 = ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))]
    return f"p50 {statistics.median(ms):7.1f} ms   p95 {p95:7.1f} ms   (n={len(ms)})"


def measure_in_process(world: dict, args: argparse.Namespace) -> None:
    from django.contrib.auth import get_user_model

    from lineage.graph import edge_index, reset_edge_index
    from lineage.impact import impact

    reset_edge_index()
    started = time.perf_counter()
    index = edge_index()
    print(
        f"  first walk of a process: {index.edge_count:,} edges read in {time.perf_counter() - started:.2f} s"
    )
    for who in ("dana", "admin"):
        user = get_user_model().objects.get(pk=world[who].pk)  # fresh: roles read once, as a request does
        impact(user, world["roots"][0], args.depth)  # warm the plan cache and the connection
        engine, whole, sizes = [], [], []
        for i in range(args.repeat):
            root = world["roots"][i % len(world["roots"])]
            started = time.perf_counter()
            index.reach((root.type, root.id), "downstream", args.depth)
            engine.append(time.perf_counter() - started)
            started = time.perf_counter()
            report = impact(user, root, args.depth)
            whole.append(time.perf_counter() - started)
            sizes.append((len(report["nodes"]), len(report["edges"])))
        nodes = statistics.median(n for n, _ in sizes)
        edges_n = statistics.median(e for _, e in sizes)
        print(f"  {who:5} in-memory walk  {_stats(engine)}   (every team's nodes: the engine alone)")
        print(f"  {who:5} impact()        {_stats(whole)}   median {nodes:.0f} nodes, {edges_n:.0f} edges")
        if args.profile and who == "dana":
            import cProfile
            import pstats

            profiler = cProfile.Profile()
            profiler.enable()
            for root in world["roots"]:
                impact(user, root, args.depth)
            profiler.disable()
            pstats.Stats(profiler).sort_stats("tottime").print_stats(25)


def measure_http(world: dict, args: argparse.Namespace, workdir: Path) -> None:
    import requests
    from bench_registry import start_steward

    server = start_steward(workdir, workers=1, threads=2)
    try:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {world['token']}"
        url = f"{server.url}/api/lineage/impact/"
        started = time.perf_counter()
        first = session.get(url, params={"node": world["roots"][0].key, "depth": args.depth}, timeout=30)
        first.raise_for_status()
        print(f"  first request of the server (reads every edge): {time.perf_counter() - started:.2f} s")
        times = []
        for i in range(args.repeat):
            root = world["roots"][i % len(world["roots"])]
            started = time.perf_counter()
            response = session.get(url, params={"node": root.key, "depth": args.depth}, timeout=30)
            times.append(time.perf_counter() - started)
            response.raise_for_status()
        print(f"  dana  GET /api/lineage/impact/   {_stats(times)}   {len(first.content):,} bytes")
        p50_ms = statistics.median(times) * 1000
        print(
            f"  p50 against the goal ({GOAL_MS:.0f} ms): {p50_ms / GOAL_MS:.2f}x the goal; against Marquez's "
            f"reported {MARQUEZ_MS / 1000:.2f} s: {MARQUEZ_MS / p50_ms:.0f}x faster (not run here: no JVM)"
        )
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--nodes", type=int, default=100_000)
    parser.add_argument("--edges-per-node", type=int, default=3)
    parser.add_argument("--window", type=int, default=40)
    parser.add_argument("--teams", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--depth", type=int, default=20)
    parser.add_argument("--no-http", action="store_true")
    parser.add_argument("--profile", action="store_true", help="cProfile dana's impact() (own time)")
    args = parser.parse_args()
    url = os.environ["DATABASE_URL"]
    recreate_database(url, BENCH_DB)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            workdir = Path(tmp)
            setup_django(url, workdir)
            print(f"Lineage impact, PostgreSQL, depth {args.depth}, RBAC on (goal <= {GOAL_MS:.0f} ms)")
            world = build_graph(args)
            print("(a) the query alone, in process")
            measure_in_process(world, args)
            if not args.no_http:
                print("(b) the product path: HTTP, gunicorn 1 worker x 2 threads, dana's API token")
                measure_http(world, args, workdir)
    finally:
        drop_database(url, BENCH_DB)


if __name__ == "__main__":
    main()
