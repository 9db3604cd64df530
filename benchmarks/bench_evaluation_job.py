"""Evaluation jobs (issue 15) on the adult data: rows/s through the API and a real worker against
the evaluation engine alone, in the same run.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/steward CELERY_BROKER_URL=redis://127.0.0.1:6379/12 \\
        .venv/bin/python benchmarks/bench_evaluation_job.py [--epochs 2] [--keep]

Runs against a scratch database (``steward_bench_evaluation`` on DATABASE_URL's server, created,
migrated and dropped) and a real Celery worker (``benchmarks/bench_jobs.Fleet``: prefork, one
slot, the product's settings). As a data scientist with an API token: two versions of a
classifier are trained by training jobs on the adult census data (32,561 rows, target ``label``,
positive class ``" >50K"``), v1 is given ``production``, then

- (a) ``POST /api/jobs/`` evaluates v1 alone: the default ``EvaluationSpec`` (200 bootstrap
  resamples, robustness, permutation importance 5 x 5,000 rows) with fairness for sex and race and
  slices by education;
- (b) the same for v2, which also evaluates v1 (production) on the same rows: champion/challenger;
- the engine alone: ``evaluate`` and ``evaluate_pair`` in this process on the same frame, the
  models loaded here (no child, no job row, no database).

Rows/s is the frame's rows over the seconds: for a job, from the POST to the job's end (the
worker's whole path: claim, read, the serving child's start and predictions, the engine, the
record, audit and lineage) and the evaluation phase alone as the job logs it; for the engine, the
call. The ratio engine / job is the price of the job path. No timed assertions; the load average
is printed (the machine may be shared: compare the ratios of one run).
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_jobs import Fleet, _purge_queue, _setup_django  # benchmarks/ is on sys.path
from scratch_db import drop_database, recreate_database

ROOT = Path(__file__).resolve().parent.parent
BENCH_DB = "steward_bench_evaluation"
DATA = ROOT.parent / "shared" / "data" / "adult" / "adult.csv"
POSITIVE = " >50K"
NUMERIC = ["age", "education-num", "capital-gain", "capital-loss", "hours-per-week"]
CATEGORICAL = ["workclass", "marital-status", "occupation", "relationship", "race", "sex"]
EVALUATION = {
    "task": "classification",
    "target": "label",
    "positive_label": POSITIVE,
    "sensitive_attributes": ["sex", "race"],
    "slice_columns": ["education"],
}


class World:
    """The team, a data scientist with an API token, the adult dataset version and the model."""

    def __init__(self) -> None:
        from django.contrib.auth import get_user_model
        from django.test import Client

        from governance.actions.datasets import do_create_dataset, do_register_dataset_version
        from governance.actions.registered_models import do_create_registered_model
        from governance.actions.teams import do_create_team, do_set_membership
        from governance.actions.tokens import do_create_api_token
        from governance.models import DatasetVersion

        users = get_user_model()
        self.admin = users.objects.create_superuser("bench-admin", password=secrets.token_urlsafe(16))
        self.dana = users.objects.create_user("dana", password=secrets.token_urlsafe(16))
        self.olivia = users.objects.create_user("olivia", password=secrets.token_urlsafe(16))
        self.team = do_create_team(name="bench", actor=self.admin)
        do_set_membership(user=self.dana, team=self.team, role="data_scientist", actor=self.admin)
        do_set_membership(user=self.olivia, team=self.team, role="model_owner", actor=self.admin)
        dataset = do_create_dataset(team=self.team, name="adult", actor=self.dana)
        self.version = do_register_dataset_version(
            dataset=dataset,
            file_path=DATA,
            filename="adult.csv",
            source=DatasetVersion.Source.PATH,
            actor=self.dana,
        )
        self.model = do_create_registered_model(
            team=self.team, name="adult-income", owner=self.olivia, actor=self.dana
        )
        _token, secret = do_create_api_token(
            user=self.dana, name="bench", is_read_only=False, actor=self.dana
        )
        self.client = Client(HTTP_AUTHORIZATION=f"Bearer {secret}")

    def post(self, body: dict[str, Any]) -> tuple[int, float]:
        began = time.monotonic()
        response = self.client.post("/api/jobs/", body, content_type="application/json")
        if response.status_code != 201:
            raise RuntimeError(f"POST /api/jobs/ answered {response.status_code}: {response.content[:500]!r}")
        return response.json()["id"], began


def _finish(job_id: int, timeout_s: float = 1800) -> Any:
    from runners.models import TERMINAL_STATES, Job

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = Job.objects.get(pk=job_id)
        if job.state in TERMINAL_STATES:
            if job.state != "succeeded":
                raise RuntimeError(f"job {job_id} {job.state}: {job.error}")
            return job
        time.sleep(0.05)
    raise RuntimeError(f"job {job_id} did not finish in {timeout_s} s")


def _train(world: World, epochs: int, hidden: list[int]) -> Any:
    spec = {
        "target": "label",
        "features": NUMERIC + CATEGORICAL,
        "categorical": CATEGORICAL,
        "task": "classification",
        "epochs": epochs,
        "hidden_layers": hidden,
        "seed": 1,
    }
    job_id, _ = world.post(
        {
            "kind": "train",
            "dataset_version": world.version.pk,
            "registered_model": world.model.pk,
            "spec": spec,
        }
    )
    return _finish(job_id).output_model_version


def _evaluate_job(world: World, version: Any, champion_alias: str | None) -> tuple[float, float, Any]:
    """(seconds POST -> finished, seconds of the evaluation phase as the job measured it, job)."""
    job_id, began = world.post(
        {
            "kind": "evaluate",
            "dataset_version": world.version.pk,
            "model_version": version.pk,
            "spec": {**EVALUATION, "champion_alias": champion_alias},
        }
    )
    job = _finish(job_id)
    return time.monotonic() - began, job.metrics["evaluation_s"], job


def _in_process(version: Any) -> Any:
    """The predictor protocol over ``version`` loaded in this process (torch here: the engine
    alone, the baseline a job cannot beat)."""
    import numpy as np

    from runners.evaluation import Predictions
    from runners.serving import predictors

    loaded = predictors.load(version.path, flavor=version.flavor, sha256=version.sha256, name=str(version))

    def predict(frame: Any) -> Predictions:
        labels = loaded.predict(frame).to_numpy()
        proba = loaded.predict_proba(frame, POSITIVE)
        return Predictions(labels=labels, proba=None if proba is None else np.asarray(proba))

    return predict


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--epochs", type=int, default=2, help="epochs of v1 (v2 trains one more)")
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
    with tempfile.TemporaryDirectory(prefix="bench-evaluation-") as tmp:
        fleet = Fleet(Path(tmp))
        try:
            _setup_django(url, broker, Path(tmp), BENCH_DB)
            _purge_queue()
            world = World()
            fleet.worker("w1")
            from governance.actions.aliases import do_set_alias, do_set_protected_aliases
            from governance.datafiles import read_frame
            from governance.models import Evaluation
            from runners.evaluation import EvaluationSpec, evaluate, evaluate_pair

            v1 = _train(world, args.epochs, [32, 16])
            v2 = _train(world, args.epochs + 1, [64, 32])
            do_set_protected_aliases(team=world.team, aliases=[], actor=world.admin)
            do_set_alias(model=world.model, alias="production", version=v1, actor=world.olivia)

            frame = read_frame(DATA, "csv")
            rows = len(frame)
            spec = EvaluationSpec.from_dict(EVALUATION)
            single_s, single_phase_s, single_job = _evaluate_job(world, v1, None)
            pair_s, pair_phase_s, pair_job = _evaluate_job(world, v2, "production")
            candidate, champion = _in_process(v2), _in_process(v1)
            began = time.monotonic()
            evaluate(frame, champion, spec)
            engine_single_s = time.monotonic() - began
            began = time.monotonic()
            comparison = evaluate_pair(frame, candidate, champion, spec)
            engine_pair_s = time.monotonic() - began

            recorded = Evaluation.objects.get(job_id=pair_job.pk)
            f1 = recorded.comparison["f1"]
            print(
                f"adult data: {rows} rows; v1 F1 {single_job.metrics['f1']:.4f}, v2 F1 {f1['candidate']:.4f}"
            )
            print(
                f"champion/challenger F1 difference {f1['difference']:+.4f} "
                f"[{f1['ci_low']:+.4f}, {f1['ci_high']:+.4f}] (engine alone: "
                f"{comparison.differences['f1']['difference']:+.4f})"
            )
            print(f"{'':34}{'seconds':>9}{'rows/s':>10}{'engine/this':>13}")
            for label, seconds, engine in [
                ("job, one version (POST -> end)", single_s, engine_single_s),
                ("  its evaluation phase", single_phase_s, engine_single_s),
                ("engine alone, one version", engine_single_s, engine_single_s),
                ("job, champion/challenger", pair_s, engine_pair_s),
                ("  its evaluation phase", pair_phase_s, engine_pair_s),
                ("engine alone, pair", engine_pair_s, engine_pair_s),
            ]:
                print(f"{label:34}{seconds:9.2f}{rows / seconds:10.0f}{engine / seconds:13.2f}")
        finally:
            fleet.stop()
            if not args.keep:
                drop_database(url, BENCH_DB)
    print(f"load average at the end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
