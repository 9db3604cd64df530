"""Calibration of issue 11's column rules, and what leaving the report off the check's path saves.

Usage: ``.venv/bin/python benchmarks/bench_drift_rules.py [--trials 200]``. No database.

1. False alarms over many no-drift trials: reference and current are disjoint random draws of the
   same real rows (bike 2011 hourly; adult census), so every drift verdict is a false alarm. Per rule:
   - integer codes as categories (bike season, mnth, weekday, weathersit; chi-square, alpha 0.05);
   - high-cardinality top-k + other (adult occupation|country|age|hours, 11,208 values; chi-square
     and Jensen-Shannon on top 50 + other);
   - Benjamini-Hochberg: the share of trials where any of the 12 bike columns (K-S / chi-square at
     0.05) drifts, without and with BH (BH keeps the family-wise rate under the global null <= q).
   Goal: p-value tests within alpha +- 2 points; distance tests far below.
2. The check's critical path on the bike data (2012 against 2011, 12 columns): the engine's verdict
   alone against verdict + evidently report (what a check did before issue 11), same process.
3. ``--product``: the same check through the product path: POST /api/drift-checks/ on a scratch
   database (``steward_bench_drift_rules`` on DATABASE_URL's server, dropped at the end) and a real
   ``celery -A config worker`` (prefork, one slot) on CELERY_BROKER_URL (give it a Redis db of its
   own: its default queue is purged). Per check: POST -> verdict stored (the check succeeded, the
   alert raised) and POST -> report stored; before issue 11 the verdict waited for the report, so
   "before" is the second figure and "after" the first.

    .venv/bin/python benchmarks/bench_drift_rules.py --trials 200
    DATABASE_URL=postgres://... CELERY_BROKER_URL=redis://127.0.0.1:6379/14 \
        .venv/bin/python benchmarks/bench_drift_rules.py --trials 0 --product
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from monitoring import drift  # noqa: E402 - after the project root is importable
from monitoring.engine import build_profile, run_check  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
BENCH_DB = "steward_bench_drift_rules"
BIKE_COLUMNS = [
    "season",
    "mnth",
    "hr",
    "holiday",
    "weekday",
    "workingday",
    "weathersit",
    "temp",
    "atemp",
    "hum",
    "windspeed",
    "cnt",
]
CODES = ["season", "mnth", "weekday", "weathersit"]
CATEGORICAL = {"season", "mnth", "holiday", "weekday", "workingday", "weathersit"}


def _halves(
    frame: pd.DataFrame, rng: np.random.Generator, current_rows: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    order = rng.permutation(len(frame))
    reference = frame.iloc[order[: len(frame) - current_rows]]
    return reference, frame.iloc[order[len(frame) - current_rows :]]


def calibrate(trials: int) -> None:
    rng = np.random.default_rng(11)
    bike = pd.read_csv(DATA / "bike-sharing" / "hour.csv")
    bike = bike[bike["yr"] == 0].reset_index(drop=True)
    adult = pd.read_csv(DATA / "adult" / "adult.csv")
    adult["profile"] = (
        adult[["occupation", "native-country", "age", "hours-per-week"]].astype(str).agg("|".join, axis=1)
    )
    methods = {c: "chisquare" if c in CATEGORICAL else "ks" for c in BIKE_COLUMNS}
    codes = dict.fromkeys(CODES, 0)
    top_chi = top_js = 0
    any_plain = any_bh = 0
    for _ in range(trials):
        reference, current = _halves(bike, rng, 3000)
        profile = build_profile(reference)
        plain = run_check(profile, current, {"columns": BIKE_COLUMNS, "methods": methods})
        bh = run_check(
            profile, current, {"columns": BIKE_COLUMNS, "methods": methods, "multiple_testing": "bh"}
        )
        for column in CODES:
            codes[column] += plain.column(column).is_drifted
        any_plain += plain.number_of_drifted_columns > 0
        any_bh += bh.number_of_drifted_columns > 0
        # The adult key needs > 10,000 values in the reference: all rows but a 5,000-row window.
        reference, current = _halves(adult[["profile"]], rng, 5000)
        profile = build_profile(reference)
        top_chi += (
            run_check(profile, current, {"methods": {"profile": "chisquare"}}).column("profile").is_drifted
        )
        top_js += run_check(profile, current).column("profile").is_drifted
    print(f"no-drift trials: {trials} (alpha = 0.05; goal 3-7 % for p-value tests)")
    for column, count in codes.items():
        print(f"  integer codes as categories, {column:<10} chi-square: {count / trials:6.1%}")
    print(f"  high cardinality top 50 + other, chi-square:        {top_chi / trials:6.1%}")
    print(f"  high cardinality top 50 + other, Jensen-Shannon:    {top_js / trials:6.1%}")
    print(f"  any of 12 columns drifts, no control:               {any_plain / trials:6.1%}")
    print(f"  any of 12 columns drifts, Benjamini-Hochberg:       {any_bh / trials:6.1%}")


def critical_path(repeats: int) -> None:
    bike = pd.read_csv(DATA / "bike-sharing" / "hour.csv")
    reference, current = bike[bike["yr"] == 0], bike[bike["yr"] == 1]
    verdict, report = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        run_check(build_profile(reference), current, {"columns": BIKE_COLUMNS})
        verdict.append(time.perf_counter() - start)
        start = time.perf_counter()
        drift.compare(reference, current, BIKE_COLUMNS, max_rows=50_000)
        report.append(time.perf_counter() - start)
    v, r = float(np.median(verdict)), float(np.median(report))
    print(f"bike 2012 vs 2011, 12 columns, median of {repeats}:")
    print(f"  verdict (engine, profile built each time): {v * 1000:8.1f} ms")
    print(f"  before issue 11 (verdict + report inline): {(v + r) * 1000:8.1f} ms")
    print(f"  ratio before / after:                      {(v + r) / v:8.1f}x")


def _setup_django(workdir: Path) -> str:
    """The scratch database on ``DATABASE_URL``'s server, set up as ``bench_jobs`` sets its own
    (production settings, migrated); returns the server's URL (to drop the database after)."""
    from bench_jobs import _setup_django as setup  # benchmarks/ is on sys.path
    from scratch_db import recreate_database

    url = os.environ["DATABASE_URL"]
    recreate_database(url, BENCH_DB)
    setup(url, os.environ.get("CELERY_BROKER_URL") or "filesystem://localhost/", workdir, BENCH_DB)
    return url


def _world(workdir: Path) -> tuple[object, int, int]:
    """A team, a bike model version trained on 2011 (1 epoch), the 2012 rows; (client, ids)."""
    from django.contrib.auth import get_user_model
    from django.test import Client

    from governance.actions.datasets import do_create_dataset, do_register_dataset_version
    from governance.actions.model_versions import do_register_model_version
    from governance.actions.registered_models import do_create_registered_model
    from governance.actions.teams import do_create_team, do_set_membership
    from governance.actions.tokens import do_create_api_token
    from governance.models import DatasetVersion
    from runners import training
    from runners.specs import parse_spec

    users = get_user_model()
    admin = users.objects.create_superuser("bench-admin", password=secrets.token_urlsafe(16))
    dana = users.objects.create_user("dana", password=secrets.token_urlsafe(16))
    olivia = users.objects.create_user("olivia", password=secrets.token_urlsafe(16))
    team = do_create_team(name="bench", actor=admin)
    do_set_membership(user=dana, team=team, role="data_scientist", actor=admin)
    do_set_membership(user=olivia, team=team, role="model_owner", actor=admin)
    bike = DATA / "bike-sharing" / "hour.csv"
    dataset = do_create_dataset(team=team, name="bike-sharing-hourly", actor=dana)
    version = do_register_dataset_version(
        dataset=dataset, file_path=bike, filename="hour.csv", source=DatasetVersion.Source.PATH, actor=dana
    )
    frame = pd.read_csv(bike)
    spec = parse_spec(
        {"target": "cnt", "features": BIKE_COLUMNS[:-1], "epochs": 1, "seed": 1, "where": {"yr": 0}},
        list(frame.columns),
    )
    trained = training.train(frame[frame["yr"] == 0], spec)
    model = do_create_registered_model(team=team, name="bike-demand", owner=olivia, actor=dana)
    model_version = do_register_model_version(
        model=model,
        artifact_bytes=trained.artifact,
        metrics=trained.metrics,
        signature=trained.signature,
        training_spec=spec.as_dict(),
        training_dataset_version=version,
        source_job_id=None,
        actor=None,
        on_behalf_of=dana,
    )
    path = workdir / "hour-2012.csv"
    frame[frame["yr"] == 1].to_csv(path, index=False)
    current = do_create_dataset(team=team, name="bike-sharing-2012", actor=dana)
    current_version = do_register_dataset_version(
        dataset=current, file_path=path, filename=path.name, source=DatasetVersion.Source.PATH, actor=dana
    )
    _token, secret = do_create_api_token(user=dana, name="bench", is_read_only=False, actor=dana)
    return Client(HTTP_AUTHORIZATION=f"Bearer {secret}"), model_version.pk, current_version.pk


def _worker(workdir: Path) -> subprocess.Popen:
    log = workdir / "worker.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config", "worker", "--concurrency", "1", "-l", "info"],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env=os.environ,
            start_new_session=True,
        )
    deadline = time.monotonic() + 120
    while " ready." not in log.read_text(errors="replace"):
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the worker did not start: {log.read_text(errors='replace')[-2000:]}")
        time.sleep(0.1)
    return process


def product_path(repeats: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-drift-rules-") as folder:
        workdir = Path(folder)
        url = _setup_django(workdir)
        from celery import current_app
        from scratch_db import drop_database

        from monitoring.models import DriftCheck

        worker = None
        try:
            client, model_version, current = _world(workdir)
            with current_app.connection_for_write() as conn:
                conn.default_channel.queue_purge("celery")
            worker = _worker(workdir)
            verdicts, reports = [], []
            for index in range(repeats + 1):  # the first builds the reference profile: not counted
                began = time.monotonic()
                response = client.post(
                    "/api/drift-checks/",
                    {"model_version": model_version, "current_dataset_version": current},
                    content_type="application/json",
                )
                check_id = response.json()["id"]
                verdict_at = report_at = None
                deadline = began + 600
                while report_at is None and time.monotonic() < deadline:
                    state, report_state = DriftCheck.objects.values_list("state", "report_state").get(
                        pk=check_id
                    )
                    now = time.monotonic()
                    if verdict_at is None and state in ("succeeded", "failed"):
                        verdict_at = now
                    if report_state in ("succeeded", "failed"):
                        report_at = now
                    time.sleep(0.01)
                if verdict_at is None or report_at is None:
                    raise RuntimeError(f"check {check_id} did not finish within 600 s")
                check = DriftCheck.objects.get(pk=check_id)
                if (check.state, check.report_state) != ("succeeded", "succeeded"):
                    raise RuntimeError(
                        f"check {check_id}: {check.state} {check.error}; report {check.report_error}"
                    )
                if index:
                    verdicts.append(verdict_at - began)
                    reports.append(report_at - began)
            after, before = float(np.median(verdicts)), float(np.median(reports))
            print(f"product path (API + a real prefork worker), bike 2012 vs 2011, median of {repeats}:")
            print(f"  POST -> verdict stored, alert raised (after issue 11): {after * 1000:8.0f} ms")
            print(f"  POST -> report stored (the verdict's wait before):      {before * 1000:8.0f} ms")
            print(f"  ratio before / after:                                   {before / after:8.1f}x")
        finally:
            if worker is not None:
                os.killpg(worker.pid, signal.SIGTERM)
                worker.wait(60)
            drop_database(url, BENCH_DB)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--product", action="store_true", help="also time the API + worker path")
    args = parser.parse_args()
    if args.trials:
        calibrate(args.trials)
        critical_path(args.repeats)
    if args.product:
        product_path(args.repeats)


if __name__ == "__main__":
    main()
