"""Issue 11's product path at the engine's speed: uploads and a drift check, streamed.

Usage::

    DATABASE_URL=postgres://... CELERY_BROKER_URL=redis://127.0.0.1:6379/14 \
        .venv/bin/python benchmarks/bench_drift_product.py --rows 1000000 [--memory-rows 10000000]

1. Speed (``--rows``, 1M by default): ``bench_drift``'s synthetic data (20 numeric + 5 categorical
   columns, the current side shifted in 6 of them) written as Parquet, then through the product
   path: both files uploaded through the API (multipart, ``POST /api/dataset-versions/``) to
   Steward under gunicorn (``bench_registry.start_steward``), a model version registered on the
   reference, ``POST /api/drift-checks/`` and ``GET`` polled until the check succeeded, on a real
   ``celery -A config worker`` (``bench_drift_rules._worker``, one prefork slot). The evidently
   report is off (``STEWARD_DRIFT_REPORT_ENABLED=false``): it is a separate artifact after the
   verdict. The PII scans the uploads queue on the same worker are waited for before the check
   (``pii_wait_s``, not counted in the product path's time: they are not part of a drift check).
   Beside it, in the same run, evidently's ``DataDriftPreset`` on the same frames and the engine
   alone (``bench_drift.run_child``, fresh interpreters). Goals: evidently / product path
   >= 100x, evidently / engine >= 200x.
2. Memory (``--memory-rows``, 0 to skip): the same path at that many rows; peak RSS of the web
   server's and the worker's process trees (the sum of VmRSS over each tree, sampled every 50 ms
   from /proc; and the largest VmHWM of one process). Goal <= 1 GB each.

3. Fan-out (``--fanout-rows``, 0 to skip; ``--fanout-only`` runs just this, no database): the
   reference profile of a ``--rows`` Parquet file in one pass against its parts (runs of row
   groups of about ``--fanout-rows`` rows, ``monitoring.profiles.profile_parts``' rule) profiled in
   a pool of one process per core and merged, as the chord does on that many workers (without
   the broker's few milliseconds per task).

A scratch database (``steward_bench_drift_product`` on DATABASE_URL's server) is created and
dropped; the worker's broker queue is purged: give it a Redis db of its own.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import bench_drift  # noqa: E402 - benchmarks/ is on sys.path
import bench_drift_rules  # noqa: E402
import bench_registry  # noqa: E402

BENCH_DB = "steward_bench_drift_product"
GOAL_PRODUCT_RATIO = 100.0
GOAL_ENGINE_RATIO = 200.0
GOAL_PEAK_RSS = 1024**3


def write_side(side: str, rows: int, path: Path) -> Path:
    """``bench_drift``'s chunks of one side as a Parquet file, one row group per chunk."""
    writer = None
    for index, start in enumerate(range(0, rows, bench_drift.GEN_CHUNK_ROWS)):
        table = pa.Table.from_pandas(
            bench_drift.make_chunk(side, index, min(bench_drift.GEN_CHUNK_ROWS, rows - start)),
            preserve_index=False,
        )
        writer = writer or pq.ParquetWriter(path, table.schema)
        writer.write_table(table)
    if writer is not None:
        writer.close()
    return path


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants, from /proc/<pid>/task/*/children."""
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        for task in Path(f"/proc/{current}/task").glob("*/children"):
            try:
                todo.extend(int(child) for child in task.read_text().split())
            except OSError:
                continue
    return out


def _status(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class PeakRss:
    """Samples the VmRSS sum of a process tree every 50 ms in a thread; ``peak`` is the largest,
    ``hwm`` the largest VmHWM of one process of the tree (its own peak, between samples too)."""

    def __init__(self, pid: int):
        self.pid, self.peak, self.hwm = pid, 0, 0
        self.phases: dict[str, int] = {}  # phase -> peak tree sum during it
        self._phase, self._phase_peak = "", 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            pids = _tree(self.pid)
            now = sum(_status(pid, "VmRSS") for pid in pids)
            self.peak, self._phase_peak = max(self.peak, now), max(self._phase_peak, now)
            if self._phase:
                self.phases[self._phase] = self._phase_peak
            self.hwm = max([self.hwm, *(_status(pid, "VmHWM") for pid in pids)])
            time.sleep(0.05)

    def phase(self, name: str) -> None:
        """Start phase ``name``: its peak is kept apart in ``phases``."""
        self._phase, self._phase_peak = name, 0

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _world() -> tuple[dict[str, str], int]:
    """dana's token header and her team's id (``bench_registry.make_users``: audited actions)."""
    from governance.models import Team

    secret = bench_registry.make_users(0)
    return {"Authorization": f"Bearer {secret}"}, Team.objects.get(name="bench").pk


def _upload(session, base: str, team: int, name: str, path: Path) -> tuple[int, float]:
    """Create dataset ``name`` and upload ``path`` as its first version; (version id, seconds)."""
    response = session.post(f"{base}/api/datasets/", json={"team": team, "name": name})
    response.raise_for_status()
    dataset = response.json()["id"]
    started = time.perf_counter()
    with path.open("rb") as handle:
        response = session.post(
            f"{base}/api/dataset-versions/", data={"dataset": dataset}, files={"file": (path.name, handle)}
        )
    elapsed = time.perf_counter() - started
    if response.status_code != 201:
        raise RuntimeError(f"upload of {path.name}: {response.status_code} {response.text[:500]}")
    return response.json()["id"], elapsed


def _model_version(reference_version: int) -> int:
    """A registered model version trained on the reference (its artifact is never loaded: the
    data has no ``prediction`` column, so the check runs no model)."""
    from django.contrib.auth import get_user_model

    from governance.actions.model_versions import do_register_model_version
    from governance.actions.registered_models import do_create_registered_model
    from governance.models import DatasetVersion

    dana = get_user_model().objects.get(username="dana")
    reference = DatasetVersion.objects.select_related("dataset__team").get(pk=reference_version)
    name = f"bench-drift-{reference_version}"
    model = do_create_registered_model(team=reference.dataset.team, name=name, owner=dana, actor=dana)
    version = do_register_model_version(
        model=model,
        artifact_bytes=b"not loaded by this benchmark",
        metrics={},
        signature={"task": "regression", "features": reference.column_names[1:], "target": "num_00"},
        training_spec={},
        training_dataset_version=reference,
        source_job_id=None,
        actor=dana,
    )
    return version.pk


def _wait_for_pii_scans(versions: list[int]) -> float:
    """Wait until the PII scans queued by the uploads are finished (they run on the same worker:
    the check would queue behind them); returns the seconds waited."""
    from governance.models import PiiScan

    started = time.perf_counter()
    active = (PiiScan.Status.QUEUED, PiiScan.Status.RUNNING)
    while PiiScan.objects.filter(dataset_version__in=versions, status__in=active).exists():
        time.sleep(0.1)
    return time.perf_counter() - started


def _check(session, base: str, model_version: int, current: int) -> tuple[dict, float]:
    started = time.perf_counter()
    response = session.post(
        f"{base}/api/drift-checks/", json={"model_version": model_version, "current_dataset_version": current}
    )
    if response.status_code not in (200, 201, 202):
        raise RuntimeError(f"drift check: {response.status_code} {response.text[:500]}")
    check_id = response.json()["id"]
    while True:
        body = session.get(f"{base}/api/drift-checks/{check_id}/").json()
        if body["state"] in ("succeeded", "failed"):
            break
        if time.perf_counter() - started > 3600:
            raise RuntimeError(f"check {check_id} did not finish within an hour")
        time.sleep(0.02)
    elapsed = time.perf_counter() - started
    print(f"  check {check_id}: created {body['created_at']}, started {body['started_at']},")
    print(f"  finished {body['finished_at']}")
    if body["state"] != "succeeded":
        raise RuntimeError(f"check {check_id} failed: {body.get('error')}")
    return body, elapsed


def product_path(
    rows: int,
    workdir: Path,
    base: str,
    headers: dict[str, str],
    team: int,
    label: str,
    phase: Callable[[str], None] = lambda name: None,
) -> dict:
    """Upload both sides, register the model, run one check; times and the check's verdicts.
    ``phase(name)`` is called as each phase starts (the memory run's per-phase peaks)."""
    import requests

    session = requests.Session()
    session.headers.update(headers)
    started = time.perf_counter()
    reference_file = write_side("reference", rows, workdir / f"reference-{label}.parquet")
    current_file = write_side("current", rows, workdir / f"current-{label}.parquet")
    generate_s = time.perf_counter() - started
    phase("uploads")
    reference, upload_reference_s = _upload(session, base, team, f"reference-{label}", reference_file)
    current, upload_current_s = _upload(session, base, team, f"current-{label}", current_file)
    phase("PII scans")
    pii_wait_s = _wait_for_pii_scans([reference, current])
    model_version = _model_version(reference)
    phase("drift check")
    body, check_s = _check(session, base, model_version, current)
    reference_file.unlink()
    current_file.unlink()
    return {
        "generate_s": generate_s,
        "upload_reference_s": upload_reference_s,
        "upload_current_s": upload_current_s,
        "pii_wait_s": pii_wait_s,
        "check_s": check_s,
        "total_s": upload_reference_s + upload_current_s + check_s,
        "columns": {r["column"]: r for r in body["results"]},
        "drifted": body["drifted_count"],
    }


def _profile_part(path: str, row_groups: list[int]) -> dict:
    from governance import datafiles
    from monitoring.engine import build_profile

    return build_profile(datafiles.iter_frames(Path(path), "parquet", row_groups=row_groups)).to_dict()


def fanout(rows: int, fanout_rows: int, workdir: Path) -> None:
    """Single-pass profile against parts profiled in a process pool and merged; prints both."""
    from concurrent.futures import ProcessPoolExecutor

    from governance import datafiles
    from monitoring.engine import DatasetProfile

    path = write_side("reference", rows, workdir / "fanout.parquet")
    parts: list[list[int]] = [[]]
    counted = 0
    for index, count in enumerate(datafiles.row_group_rows(path)):
        if parts[-1] and counted + count > fanout_rows:
            parts.append([])
            counted = 0
        parts[-1].append(index)
        counted += count
    started = time.perf_counter()
    single = _profile_part(str(path), list(range(sum(len(p) for p in parts))))
    single_s = time.perf_counter() - started
    workers = os.cpu_count() or 1
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=workers) as pool:
        profiles = list(pool.map(_profile_part, [str(path)] * len(parts), parts))
    merged = DatasetProfile.from_dict(profiles[0])
    for part in profiles[1:]:
        merged.merge(DatasetProfile.from_dict(part))
    parts_s = time.perf_counter() - started
    assert merged.rows == single["rows"] == rows
    print(f"\nreference profile of {rows:,} rows (Parquet), {os.cpu_count()} cores:")
    print(f"  one pass:                                {single_s:8.2f} s")
    print(f"  {len(parts)} parts on {workers} processes + merge:       {parts_s:8.2f} s")
    print(f"  speed-up: {single_s / parts_s:.2f}x (load {os.getloadavg()[0]:.1f})")
    path.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows per side for the speed run")
    parser.add_argument(
        "--memory-rows", type=int, default=0, help="rows per side for the memory run (0: skip)"
    )
    parser.add_argument("--no-evidently", action="store_true", help="skip evidently and the engine alone")
    parser.add_argument("--fanout-rows", type=int, default=0, help="rows per profile part (0: skip)")
    parser.add_argument("--fanout-only", action="store_true", help="only the fan-out measurement")
    args = parser.parse_args()
    if args.fanout_only:
        with tempfile.TemporaryDirectory(prefix="bench-drift-fanout-") as folder:
            fanout(args.rows, args.fanout_rows or max(1, args.rows // 4), Path(folder))
        return

    with tempfile.TemporaryDirectory(prefix="bench-drift-product-") as folder:
        workdir = Path(folder)
        url = os.environ["DATABASE_URL"]
        from scratch_db import drop_database, recreate_database

        recreate_database(url, BENCH_DB)
        from bench_jobs import _setup_django

        _setup_django(
            url, os.environ.get("CELERY_BROKER_URL") or "filesystem://localhost/", workdir, BENCH_DB
        )
        os.environ["STEWARD_DRIFT_REPORT_ENABLED"] = "false"
        os.environ.setdefault("STEWARD_MAX_DATASET_BYTES", str(64 * 1024**3))
        (workdir / "sources").mkdir(exist_ok=True)
        from celery import current_app

        server = worker = None
        try:
            headers, team = _world()
            with current_app.connection_for_write() as conn:
                conn.default_channel.queue_purge("celery")
            server = bench_registry.start_steward(workdir, 1, 2, label="web", worker_timeout_s=3600)
            worker = bench_drift_rules._worker(workdir)
            print(f"machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f} at start")

            speed = product_path(args.rows, workdir, server.url, headers, team, "speed")
            print(f"\nproduct path, {args.rows:,} rows per side x 25 columns (Parquet):")
            for key in ("upload_reference_s", "upload_current_s", "pii_wait_s", "check_s", "total_s"):
                print(f"  {key:22} {speed[key]:9.2f} s")
            print(f"  drifted columns: {speed['drifted']} of {len(speed['columns'])}")
            if not args.no_evidently:
                ours = bench_drift.run_child("ours", args.rows)
                theirs = bench_drift.run_child("evidently", args.rows)
                agree = sum(
                    bool(speed["columns"][name]["is_drifted"]) == column["drift"]
                    for name, column in theirs["columns"].items()
                    if name in speed["columns"]
                )
                print(f"  engine alone (profile + check):   {ours['engine_s']:9.2f} s")
                print(f"  evidently DataDriftPreset:        {theirs['engine_s']:9.2f} s")
                print(
                    f"  evidently / product path: {theirs['engine_s'] / speed['total_s']:8.1f}x "
                    f"(goal >= {GOAL_PRODUCT_RATIO:.0f}x); evidently / check alone: "
                    f"{theirs['engine_s'] / speed['check_s']:.1f}x"
                )
                print(
                    f"  evidently / engine alone: {theirs['engine_s'] / ours['engine_s']:8.1f}x "
                    f"(goal >= {GOAL_ENGINE_RATIO:.0f}x)"
                )
                print(f"  verdicts agreeing with evidently: {agree} of {len(theirs['columns'])}")

            if args.memory_rows:
                with PeakRss(server.process.pid) as web, PeakRss(worker.pid) as work:
                    for peak in (web, work):
                        peak.phase("idle, generating the files")

                    def phase(name: str) -> None:
                        web.phase(name)
                        work.phase(name)

                    memory = product_path(
                        args.memory_rows, workdir, server.url, headers, team, "memory", phase
                    )
                print(f"\nproduct path, {args.memory_rows:,} rows per side (Parquet):")
                for key in ("upload_reference_s", "upload_current_s", "pii_wait_s", "check_s"):
                    print(f"  {key:22} {memory[key]:9.2f} s")
                for name, peak in (("web (gunicorn tree)", web), ("worker (celery tree)", work)):
                    print(
                        f"  peak RSS {name:22} {peak.peak / 2**20:8.0f} MiB (tree sum), "
                        f"{peak.hwm / 2**20:6.0f} MiB (one process's VmHWM); "
                        f"goal <= {GOAL_PEAK_RSS / 2**20:.0f} MiB"
                    )
                    for phase_name, phase_peak in peak.phases.items():
                        print(f"    {phase_name:30} {phase_peak / 2**20:8.0f} MiB (tree sum)")
            if args.fanout_rows:
                fanout(args.rows, args.fanout_rows, workdir)
            print(f"machine load at end: {os.getloadavg()[0]:.1f}")
        finally:
            if worker is not None:
                os.killpg(worker.pid, 15)
                worker.wait(timeout=30)
            if server is not None:
                server.stop()
            from django.db import connections

            connections.close_all()
            drop_database(url, BENCH_DB)


if __name__ == "__main__":
    main()
