"""The mixed workload of issue 13's load test, for locust (run by ``bench_load.py``).

Three kinds of users, each at a sustained rate (``constant_throughput``):
- ``PagesUser``: a person in the web UI (logged in with the login form): dashboard, models, jobs,
  alerts, the audit trail.
- ``ApiUser``: a script with a read-write API token: registry and audit reads, a model's
  description edited, a dataset created, now and then a training job submitted (a real worker
  trains it).
- ``PredictUser``: online prediction of one row of 2012's hours from the demo model's alias.

The environment gives what the set-up made: STEWARD_LOAD_TOKEN, STEWARD_LOAD_USER and
STEWARD_LOAD_PASSWORD, STEWARD_LOAD_MODEL_ID, STEWARD_LOAD_DATASET_VERSION_ID, STEWARD_LOAD_ROWS
(a JSON list of rows), STEWARD_LOAD_SPEC (a JSON training spec).
"""

from __future__ import annotations

import json
import os
import random
import re
import uuid

from locust import HttpUser, constant_throughput, task

TOKEN = os.environ.get("STEWARD_LOAD_TOKEN", "")
ROWS = json.loads(os.environ.get("STEWARD_LOAD_ROWS", "[]"))
SPEC = json.loads(os.environ.get("STEWARD_LOAD_SPEC", "{}"))


class PagesUser(HttpUser):
    """A person browsing, about one page a second."""

    wait_time = constant_throughput(1)
    weight = 2

    def on_start(self) -> None:
        form = self.client.get("/login/", name="/login/ (form)")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text)
        self.client.post(
            "/login/",
            {
                "username": os.environ["STEWARD_LOAD_USER"],
                "password": os.environ["STEWARD_LOAD_PASSWORD"],
                "csrfmiddlewaretoken": token.group(1) if token else "",
            },
            headers={"Referer": f"{self.host}/login/"},
            name="/login/ (post)",
        )

    @task(3)
    def dashboard(self) -> None:
        self.client.get("/", name="page: dashboard")

    @task(2)
    def models(self) -> None:
        self.client.get("/models/", name="page: models")

    @task(1)
    def model(self) -> None:
        self.client.get(f"/models/{os.environ['STEWARD_LOAD_MODEL_ID']}/", name="page: model")

    @task(1)
    def jobs(self) -> None:
        self.client.get("/jobs/", name="page: jobs")

    @task(1)
    def alerts(self) -> None:
        self.client.get("/alerts/", name="page: alerts")

    @task(1)
    def audit(self) -> None:
        self.client.get("/audit/", name="page: audit trail")


class ApiUser(HttpUser):
    """A script, about two calls a second."""

    wait_time = constant_throughput(2)
    weight = 2

    def on_start(self) -> None:
        self.client.headers["Authorization"] = f"Bearer {TOKEN}"

    @task(4)
    def models(self) -> None:
        self.client.get("/api/models/", name="api: GET models")

    @task(2)
    def datasets(self) -> None:
        self.client.get("/api/datasets/", name="api: GET datasets")

    @task(2)
    def audit(self) -> None:
        self.client.get("/api/audit-events/", name="api: GET audit-events")

    @task(2)
    def jobs(self) -> None:
        self.client.get("/api/jobs/", name="api: GET jobs")

    @task(1)
    def edit_model(self) -> None:
        self.client.patch(
            f"/api/models/{os.environ['STEWARD_LOAD_MODEL_ID']}/",
            json={"description": f"load test {random.random():.6f}"},
            name="api: PATCH model",
        )

    @task(1)
    def create_dataset(self) -> None:
        with self.client.post(
            "/api/datasets/",
            json={"team": int(os.environ["STEWARD_LOAD_TEAM_ID"]), "name": f"load-{uuid.uuid4().hex[:12]}"},
            name="api: POST dataset",
            catch_response=True,
        ) as answer:
            if answer.status_code != 201:
                answer.failure(f"{answer.status_code}: {answer.text[:200]}")

    @task(1)
    def submit_job(self) -> None:
        # About one job every 20 s per user: a real worker trains each one.
        if random.random() > 0.05:
            return
        with self.client.post(
            "/api/jobs/",
            json={
                "kind": "train",
                "dataset_version": int(os.environ["STEWARD_LOAD_DATASET_VERSION_ID"]),
                "registered_model": int(os.environ["STEWARD_LOAD_MODEL_ID"]),
                "spec": SPEC,
            },
            name="api: POST job",
            catch_response=True,
        ) as answer:
            if answer.status_code != 201:
                answer.failure(f"{answer.status_code}: {answer.text[:200]}")


class PredictUser(HttpUser):
    """Online prediction, five requests a second."""

    wait_time = constant_throughput(5)
    weight = 1

    def on_start(self) -> None:
        self.client.headers["Authorization"] = f"Bearer {TOKEN}"

    @task
    def predict(self) -> None:
        self.client.post(
            "/api/models/bike-demand/aliases/staging/predict",
            json={"rows": [random.choice(ROWS)]},
            name="api: predict 1 row",
        )
