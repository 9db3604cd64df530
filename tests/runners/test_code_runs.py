"""Code runs (issue 17): a user's code version run by a worker in its sandbox, through the
worker's plain function ``execute_job``, with the real bike data."""

from __future__ import annotations

import json
import threading
import time

import pandas as pd
import pytest
from django.db import connection

from governance.actions.datasets import do_create_dataset, do_register_dataset_version
from governance.models import ApiToken, Dataset, DatasetVersion
from lineage.models import LineageEdge
from runners.actions import do_cancel_job
from runners.code_runs import do_submit_code_run
from runners.execute import execute_job
from runners.models import Job, JobDatasetRole, JobLogChunk
from tests.conftest import BIKE_HOURLY
from tests.runners.code_fixtures import make_code_version

PREPARE = {
    "MLproject": """
        name: bike-prep
        entry_points:
          prepare:
            parameters:
              hours: {type: path}
              min_cnt: {type: int, default: 1}
            command: "python prepare.py {hours} {min_cnt}"
    """,
    "prepare.py": """
        import os, sys
        import pandas as pd
        source, min_cnt = sys.argv[1], int(sys.argv[2])
        frame = pd.read_csv(source)
        print(f"read {len(frame)} rows from {os.path.basename(source)}")
        print("a warning on stderr", file=sys.stderr)
        daily = frame[frame["cnt"] >= min_cnt].groupby("dteday", as_index=False)["cnt"].sum()
        out = os.path.join(os.environ["STEWARD_OUTPUT_DIR"], "datasets")
        daily.to_csv(os.path.join(out, "bike-daily.csv"), index=False)
        print(f"wrote {len(daily)} days")
    """,
}


@pytest.mark.django_db
def test_data_preparation_run_registers_its_output(team, scientist, dataset_version):
    code = make_code_version(team, scientist, PREPARE)
    job = do_submit_code_run(
        code_version=code,
        entry_point="prepare",
        parameters={"hours": "hours"},
        inputs={"hours": dataset_version},
        outputs={"datasets": ["bike-daily"]},
        actor=scientist,
    )
    assert execute_job(job.pk) == "succeeded", Job.objects.get(pk=job.pk).error
    job.refresh_from_db()
    text = "".join(JobLogChunk.objects.filter(job=job).values_list("text", flat=True))
    assert "read 17379 rows from hours.csv\n" in text
    assert "a warning on stderr\n" in text
    output = job.datasets.get(role=JobDatasetRole.OUTPUT)
    assert output.name == "bike-daily"
    assert output.dataset_version.row_count == 731


def _log(job: Job) -> str:
    return "".join(JobLogChunk.objects.filter(job=job).order_by("seq").values_list("text", flat=True))


@pytest.mark.django_db
def test_a_prepared_dataset_version_feeds_a_second_run(team, scientist, dataset_version):
    prepare = do_submit_code_run(
        code_version=make_code_version(team, scientist, PREPARE),
        entry_point="prepare",
        parameters={"hours": "hours", "min_cnt": 5},
        inputs={"hours": dataset_version},
        outputs={"datasets": ["bike-daily"]},
        actor=scientist,
    )
    assert execute_job(prepare.pk) == "succeeded", Job.objects.get(pk=prepare.pk).error
    daily = prepare.datasets.get(role=JobDatasetRole.OUTPUT).dataset_version
    assert daily.source == DatasetVersion.Source.JOB
    assert [c["name"] for c in daily.schema] == ["dteday", "cnt"]
    edges = set(LineageEdge.objects.values_list("source_type", "source_id", "target_type", "target_id"))
    assert ("dataset_version", dataset_version.pk, "job", prepare.pk) in edges
    assert ("code_version", prepare.code_version_id, "job", prepare.pk) in edges
    assert ("job", prepare.pk, "dataset_version", daily.pk) in edges
    reader = make_code_version(
        team,
        scientist,
        {
            "count.py": """
                import os
                import pandas as pd
                frame = pd.read_csv(os.environ["STEWARD_INPUT_DAILY"])
                print(f"{len(frame)} days, {int(frame['cnt'].sum())} rides")
            """
        },
        project="bike-report",
    )
    second = do_submit_code_run(
        code_version=reader, entry_point="count.py", inputs={"daily": daily}, actor=scientist
    )
    assert execute_job(second.pk) == "succeeded", Job.objects.get(pk=second.pk).error
    frame = pd.read_csv(BIKE_HOURLY)
    kept = frame[frame["cnt"] >= 5]
    assert f"{kept['dteday'].nunique()} days, {int(kept['cnt'].sum())} rides\n" in _log(second)


@pytest.mark.django_db
def test_a_missing_or_malformed_output_fails_the_run_and_registers_nothing(team, scientist):
    code = make_code_version(
        team,
        scientist,
        {
            "MLproject": """
                entry_points:
                  empty: {command: "python write.py empty"}
                  nothing: {command: "python write.py nothing"}
            """,
            "write.py": """
                import os, sys
                folder = os.path.join(os.environ["STEWARD_OUTPUT_DIR"], "datasets")
                with open(os.path.join(folder, "stray.txt"), "w") as handle:
                    handle.write("not declared")
                if sys.argv[1] == "empty":
                    open(os.path.join(folder, "clean.csv"), "w").close()
            """,
        },
    )
    versions = DatasetVersion.objects.count()
    missing = do_submit_code_run(
        code_version=code, entry_point="nothing", outputs={"datasets": ["clean"]}, actor=scientist
    )
    assert execute_job(missing.pk) == "failed"
    missing.refresh_from_db()
    assert missing.error == (
        "declared output dataset 'clean': no file datasets/clean.csv or .parquet in $STEWARD_OUTPUT_DIR"
    )
    assert "output datasets/stray.txt is not a declared output; ignored\n" in _log(missing)
    empty = do_submit_code_run(
        code_version=code, entry_point="empty", outputs={"datasets": ["clean"]}, actor=scientist
    )
    assert execute_job(empty.pk) == "failed"
    empty.refresh_from_db()
    assert empty.error == "clean.csv: the file is empty"
    assert DatasetVersion.objects.count() == versions
    assert not Dataset.objects.filter(name="clean").exists()


@pytest.mark.django_db
def test_a_failing_script_fails_the_job_with_its_last_stderr_lines(team, scientist):
    code = make_code_version(
        team,
        scientist,
        {
            "train.py": """
                import sys
                print("starting")
                def load():
                    raise KeyError("no column 'cnt_typo'")
                try:
                    load()
                except KeyError:
                    import traceback
                    traceback.print_exc()
                    sys.exit(3)
            """
        },
    )
    job = do_submit_code_run(code_version=code, entry_point="train.py", actor=scientist)
    assert execute_job(job.pk) == "failed"
    job.refresh_from_db()
    assert job.error.startswith(
        "the code exited with 3; its last stderr lines:\nTraceback (most recent call last):"
    )
    assert job.error.endswith("KeyError: \"no column 'cnt_typo'\"")
    assert "starting" in job.log_tail
    assert list(job.log_chunks.values_list("stream", flat=True).distinct().order_by("stream")) == [
        "stderr",
        "stdout",
        "steward",
    ]


@pytest.mark.django_db
def test_the_wall_time_limit_stops_a_run(team, scientist):
    code = make_code_version(
        team, scientist, {"sleep.py": "import time\nprint('sleeping', flush=True)\ntime.sleep(120)\n"}
    )
    job = do_submit_code_run(
        code_version=code, entry_point="sleep.py", spec={"limits": {"wall_time_s": 3}}, actor=scientist
    )
    assert execute_job(job.pk) == "failed"
    job.refresh_from_db()
    assert job.error == "exceeded the wall time limit of 3 s; killed"
    assert job.wall_time_s is not None
    # The run's token ended with it.
    assert not ApiToken.objects.filter(job_id=job.pk, revoked_at__isnull=True).exists()
    assert ApiToken.objects.filter(job_id=job.pk).count() == 1


@pytest.mark.django_db
def test_dataloader_workers_run_inside_the_sandbox(team, scientist):
    code = make_code_version(
        team,
        scientist,
        {
            "loader.py": """
                import os
                import torch
                from torch.utils.data import DataLoader, TensorDataset
                torch.set_num_threads(int(os.environ["STEWARD_THREADS"]))
                data = TensorDataset(torch.arange(64, dtype=torch.float32).reshape(32, 2))
                total = sum(float(batch[0].sum()) for batch in DataLoader(data, batch_size=4, num_workers=2))
                print(f"sum {total:.0f} threads {torch.get_num_threads()}")
            """
        },
    )
    job = do_submit_code_run(
        code_version=code, entry_point="loader.py", spec={"limits": {"threads": 2}}, actor=scientist
    )
    assert execute_job(job.pk) == "succeeded", Job.objects.get(pk=job.pk).error
    assert f"sum {sum(range(64))} threads 2\n" in _log(job)


@pytest.mark.django_db
def test_the_log_api_pages_by_seq_and_serves_the_whole_text(team, scientist, outsider, client_for, settings):
    code = make_code_version(
        team,
        scientist,
        {
            "lines.py": """
                import sys
                for i in range(3000):
                    print(f"line {i}", file=sys.stderr if i % 1000 == 999 else sys.stdout)
            """
        },
    )
    job = do_submit_code_run(code_version=code, entry_point="lines.py", actor=scientist)
    assert execute_job(job.pk) == "succeeded", Job.objects.get(pk=job.pk).error
    client = client_for(scientist)
    total = job.log_chunks.count()
    seen, after = [], 0
    while True:
        page = client.get(f"/api/jobs/{job.pk}/log/", {"after": after}).json()
        assert (page["state"], page["finished"], page["truncated"]) == ("succeeded", True, False)
        if not page["chunks"]:
            assert page["next"] == after
            break
        assert [c["seq"] for c in page["chunks"]] == list(range(after + 1, page["next"] + 1))
        seen += page["chunks"]
        after = page["next"]
    assert len(seen) == total
    text = "".join(c["text"] for c in seen)
    # Each stream in its order (two pipes: their lines interleave as they were read).
    by_stream = {
        stream: [line for c in seen if c["stream"] == stream for line in c["text"].splitlines()]
        for stream in ("stdout", "stderr")
    }
    assert by_stream["stderr"] == ["line 999", "line 1999", "line 2999"]
    assert by_stream["stdout"] == [f"line {i}" for i in range(3000) if i % 1000 != 999]
    whole = client.get(f"/api/jobs/{job.pk}/log.txt")
    assert whole.status_code == 200
    assert b"".join(whole.streaming_content).decode() == text
    assert client.get(f"/api/jobs/{job.pk}/log/", {"after": "-1"}).status_code == 400
    assert client.get(f"/api/jobs/{job.pk}/log/", {"after": "x"}).status_code == 400
    assert client_for(outsider).get(f"/api/jobs/{job.pk}/log/").status_code == 404
    assert client_for(outsider).get(f"/api/jobs/{job.pk}/log.txt").status_code == 404


@pytest.mark.django_db
def test_a_log_over_the_bound_is_truncated_with_a_note(team, scientist, client_for, settings):
    settings.STEWARD_JOB_LOG_MAX_BYTES = 4000
    code = make_code_version(team, scientist, {"chatty.py": "for i in range(2000):\n    print(f'{i:05d}')\n"})
    job = do_submit_code_run(code_version=code, entry_point="chatty.py", actor=scientist)
    assert execute_job(job.pk) == "succeeded", Job.objects.get(pk=job.pk).error
    chunks = list(job.log_chunks.order_by("seq"))
    assert chunks[-1].stream == "steward"
    assert chunks[-1].text == "log truncated at 4000 bytes; later output is not kept\n"
    kept = "".join(c.text for c in chunks[:-1])
    assert len(kept.encode()) <= 4000
    numbers = [line for line in kept.splitlines() if line.isdigit()]
    assert numbers
    assert numbers == [f"{i:05d}" for i in range(len(numbers))]
    page = client_for(scientist).get(f"/api/jobs/{job.pk}/log/").json()
    assert page["truncated"] is True
    job.refresh_from_db()
    # The tail goes on past the bound.
    assert job.log_tail.splitlines()[-1] == "01999"


@pytest.mark.django_db
def test_code_runs_are_submitted_through_the_jobs_api(
    team, scientist, viewer, dataset_version, other_team, outsider, client_for
):
    code = make_code_version(team, scientist, PREPARE)
    client = client_for(scientist)
    body = {
        "kind": "code",
        "code_version": code.pk,
        "entry_point": "prepare",
        "parameters": {"hours": "hours"},
        "inputs": {"hours": dataset_version.pk},
        "outputs": {"datasets": ["bike-daily"]},
        "experiment_name": "bike prep",
        "spec": {"limits": {"wall_time_s": 600}},
    }
    created = client.post("/api/jobs/", body, format="json")
    assert created.status_code == 201, created.json()
    job = Job.objects.get(pk=created.json()["id"])
    assert (job.kind, job.code_version_id, job.entry_point, job.experiment.name) == (
        "code",
        code.pk,
        "prepare",
        "bike prep",
    )
    assert job.spec["parameters"] == {"hours": "hours", "min_cnt": 1}
    assert job.spec["inputs"] == {"hours": dataset_version.pk}
    assert job.spec["outputs"] == {"datasets": ["bike-daily"]}
    assert job.spec["limits"] == {"wall_time_s": 600}
    assert list(job.datasets.values_list("role", "name", "dataset_version")) == [
        ("input", "hours", dataset_version.pk)
    ]
    assert job.experiment.team_id == team.pk
    refusals = {
        "entry_point": ({"entry_point": "train"}, "no entry point 'train'; bike-code v1 has prepare"),
        "missing": ({"parameters": {}}, "missing parameter(s) hours (no default)"),
        "undeclared": ({"parameters": {"hours": "hours", "epochs": 3}}, "undeclared parameter(s) epochs"),
        "type": ({"parameters": {"hours": "hours", "min_cnt": "many"}}, "min_cnt: expected int, got 'many'"),
        "input name": ({"inputs": {"bad name": dataset_version.pk}}, "'bad name': 1 to 64 of"),
        "output name": ({"outputs": {"datasets": ["a/b"]}}, "'a/b': 1 to 64 of"),
        "backend": ({"spec": {"backend": "ray"}}, "backend"),
        "absolute path": (
            {"parameters": {"hours": "/etc/passwd"}},
            "hours: a path parameter names one of the run's inputs (hours) or a file inside",
        ),
        "leaving path": ({"parameters": {"hours": "data/../../x.csv"}}, "hours: a path parameter names"),
        # A misspelt field is refused, not dropped (the run would succeed and register nothing).
        "misspelt field": (
            {"output": {"datasets": ["bike-daily"]}},
            '"output": ["unknown field; known: code_version, entry_point, experiment_name, inputs, kind, '
            'models, outputs, parameters, spec"]',
        ),
    }
    for case, (change, message) in refusals.items():
        answer = client.post("/api/jobs/", body | change, format="json")
        assert answer.status_code == 400, case
        assert message in json.dumps(answer.json()), (case, answer.json())
    # Another team's dataset version is not visible: refused as unknown, nothing written.
    foreign = do_register_dataset_version(
        dataset=do_create_dataset(team=other_team, name="fraud", actor=outsider),
        file_path=BIKE_HOURLY,
        filename="hour.csv",
        source=DatasetVersion.Source.PATH,
        actor=outsider,
    )
    jobs = Job.objects.count()
    answer = client.post("/api/jobs/", body | {"inputs": {"hours": foreign.pk}}, format="json")
    assert answer.status_code == 400
    assert "does not exist" in json.dumps(answer.json())
    assert client_for(viewer).post("/api/jobs/", body, format="json").status_code == 403
    assert client_for(outsider).post("/api/jobs/", body, format="json").status_code == 400
    assert Job.objects.count() == jobs


TRAIN = {
    "MLproject": """
        name: bike-train
        entry_points:
          main:
            parameters:
              data: {type: path}
              epochs: {type: int, default: 3}
              lr: {type: float, default: 0.05}
            command: "python train.py --data {data} --epochs {epochs} --lr {lr}"
    """,
    "train.py": """
        import argparse, os
        import mlflow
        import pandas as pd
        import torch

        parser = argparse.ArgumentParser()
        parser.add_argument("--data")
        parser.add_argument("--epochs", type=int)
        parser.add_argument("--lr", type=float)
        args = parser.parse_args()
        torch.set_num_threads(int(os.environ["STEWARD_THREADS"]))
        torch.manual_seed(0)
        frame = pd.read_csv(args.data)
        features = ["temp", "hum", "windspeed", "hr"]
        x = torch.tensor(frame[features].to_numpy(), dtype=torch.float32)
        x = (x - x.mean(0)) / x.std(0)
        y = torch.tensor(frame["cnt"].to_numpy(), dtype=torch.float32)
        y = (y - y.mean()) / y.std()
        model = torch.nn.Linear(len(features), 1)
        optimizer = torch.optim.SGD(model.parameters(), lr=args.lr)
        with mlflow.start_run() as run:
            print(f"run {run.info.run_id} of experiment {run.info.experiment_id}")
            mlflow.log_params({"epochs": args.epochs, "lr": args.lr, "rows": len(frame)})
            for epoch in range(args.epochs):
                optimizer.zero_grad()
                loss = torch.nn.functional.mse_loss(model(x).squeeze(1), y)
                loss.backward()
                optimizer.step()
                mlflow.log_metric("train_loss", float(loss), step=epoch)
                print(f"epoch {epoch} loss {float(loss):.4f}")
            path = os.path.join(os.environ["TMPDIR"], "weights.txt")
            with open(path, "w") as handle:
                handle.write(" ".join(f"{w:.6f}" for w in model.weight.detach().flatten().tolist()))
            mlflow.log_artifact(path)
    """,
}


@pytest.mark.django_db(transaction=True)
def test_a_training_script_logs_to_its_run_through_the_mlflow_client(
    team, scientist, dataset_version, live_server, settings
):
    """The user's script trains on the real bike data and logs params, metrics with steps and an
    artifact with the real mlflow client, through the sandbox's proxy, with its job's token.
    The tracking endpoints accept a code run as an MLflow run and scope the token to it in the
    ``jobtoken`` work of issue 17: until it is merged, this run's MLflow calls are refused."""
    settings.STEWARD_API_URL = live_server.url
    code = make_code_version(team, scientist, TRAIN)
    job = do_submit_code_run(
        code_version=code,
        entry_point="main",
        parameters={"data": "hours", "epochs": 4},
        inputs={"hours": dataset_version},
        experiment_name="bike training",
        actor=scientist,
    )
    state = execute_job(job.pk)
    job.refresh_from_db()
    log = _log(job)
    assert "running main: python train.py --data /job/inputs/hours.csv --epochs 4 --lr 0.05" in log or (
        "--data " in log and "hours.csv --epochs 4 --lr 0.05" in log
    )
    # Needs jobtoken (issue 17): the tracking API takes the code run as the MLflow run.
    assert state == "succeeded", job.error
    assert f"run {job.pk} of experiment {job.experiment_id}\n" in log
    assert job.params == {"epochs": "4", "lr": "0.05", "rows": "17379"}
    history = list(job.metric_history.filter(key="train_loss").values_list("step", flat=True))
    assert history == [0, 1, 2, 3]
    losses = [line.split()[-1] for line in log.splitlines() if line.startswith("epoch ")]
    assert [f"{v:.4f}" for v in job.metric_history.values_list("value", flat=True)] == losses
    assert not ApiToken.objects.filter(job_id=job.pk, revoked_at__isnull=True).exists()


@pytest.mark.django_db(transaction=True)
def test_cancel_stops_a_running_code_run(team, owner, scientist):
    """A cancel request from another connection stops the run's process group within polls."""
    code = make_code_version(
        team,
        scientist,
        {"wait.py": "import time\nprint('ready', flush=True)\ntime.sleep(120)\nprint('woke')\n"},
    )
    job = do_submit_code_run(code_version=code, entry_point="wait.py", actor=scientist)

    def cancel_when_ready() -> None:
        try:
            for _ in range(600):
                if JobLogChunk.objects.filter(job_id=job.pk, text__contains="ready").exists():
                    do_cancel_job(job=Job.objects.get(pk=job.pk), actor=owner)
                    return
                time.sleep(0.1)
        finally:
            connection.close()

    canceller = threading.Thread(target=cancel_when_ready)
    canceller.start()
    state = execute_job(job.pk)
    canceller.join()
    job.refresh_from_db()
    assert (state, job.error) == ("cancelled", "cancelled while running")
    assert "woke" not in _log(job)
    assert not ApiToken.objects.filter(job_id=job.pk, revoked_at__isnull=True).exists()
