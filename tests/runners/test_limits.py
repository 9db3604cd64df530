"""Per-job limits (issue 16): asked in the spec, bounded by the settings, enforced on the child's
process group by the worker (``runners.launcher``)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from django.conf import settings

from governance.models import ModelVersion
from runners.execute import checkpoint_folder, execute_job
from runners.models import Job, JobState
from tests.conftest import submit_training


@pytest.mark.parametrize(
    ("limits", "message"),
    [
        ({"memory_mb": 70000}, "limits.memory_mb: at most 65536 MB on this platform, got 70000"),
        ({"wall_time_s": 10**7}, "limits.wall_time_s: at most 604800 s on this platform, got 10000000"),
        ({"threads": 0}, "limits.threads: expected an integer of at least 1, got 0"),
        (
            {"soft_wall_time_s": 60, "wall_time_s": 30},
            "limits.soft_wall_time_s: must be below wall_time_s (30 s), got 60",
        ),
        (
            {"gpus": 1},
            "limits: unknown field(s) gpus; allowed: wall_time_s, soft_wall_time_s, memory_mb, threads",
        ),
    ],
)
def test_limits_beyond_the_platform_are_a_400_naming_the_limit(
    client_for, scientist, dataset_version, registered_model, training_spec, limits, message
):
    response = client_for(scientist).post(
        "/api/jobs/",
        {
            "kind": "train",
            "dataset_version": dataset_version.pk,
            "registered_model": registered_model.pk,
            "spec": training_spec | {"limits": limits},
        },
        format="json",
    )

    assert (response.status_code, response.json()) == (400, {"spec": [message]})
    assert Job.objects.count() == 0


def test_a_team_maximum_replaces_the_platform_one(
    client_for, scientist, team, dataset_version, registered_model, training_spec, settings
):
    settings.STEWARD_JOB_TEAM_LIMITS = {team.slug: {"memory_mb": 1024}}

    response = client_for(scientist).post(
        "/api/jobs/",
        {
            "kind": "train",
            "dataset_version": dataset_version.pk,
            "registered_model": registered_model.pk,
            "spec": training_spec | {"limits": {"memory_mb": 2048}},
        },
        format="json",
    )

    assert (response.status_code, response.json()) == (
        400,
        {"spec": ["limits.memory_mb: at most 1024 MB on this platform, got 2048"]},
    )


def test_a_job_over_its_memory_limit_is_killed_with_its_peak(
    dataset_version, registered_model, scientist, training_spec
):
    # 64 MB: less than the interpreter with torch and pandas loaded, a real overrun.
    job = submit_training(
        dataset_version, registered_model, scientist, training_spec | {"limits": {"memory_mb": 64}}
    )

    assert execute_job(job.pk) == JobState.FAILED

    job.refresh_from_db()
    assert re.fullmatch(r"exceeded the memory limit of 64 MB \(peak (\d+) MB\); stopped", job.error)
    assert int(re.search(r"peak (\d+)", job.error).group(1)) > 64
    assert job.peak_rss_mb > 64
    assert job.limits["memory_mb"] == 64
    assert ModelVersion.objects.count() == 0


def test_a_job_over_its_hard_wall_time_is_killed(dataset_version, registered_model, scientist, training_spec):
    spec = training_spec | {"epochs": 1000, "batch_size": 1, "limits": {"wall_time_s": 1}}
    job = submit_training(dataset_version, registered_model, scientist, spec)

    assert execute_job(job.pk) == JobState.FAILED

    job.refresh_from_db()
    assert job.error == "exceeded the wall time limit of 1 s; killed"
    assert job.wall_time_s >= 1
    assert ModelVersion.objects.count() == 0


def test_the_soft_wall_time_saves_a_checkpoint_and_stops(
    dataset_version, registered_model, scientist, training_spec
):
    spec = training_spec | {"epochs": 1000, "batch_size": 64, "checkpoint_every": 0}
    job = submit_training(
        dataset_version, registered_model, scientist, spec | {"limits": {"soft_wall_time_s": 1}}
    )

    assert execute_job(job.pk) == JobState.FAILED

    job.refresh_from_db()
    found = re.fullmatch(
        r"stopped at the soft time limit of 1 s after (\d+) epochs?; checkpoint saved", job.error
    )
    assert found, job.error
    epochs = int(found.group(1))
    assert [record["epoch"] for record in job.history] == list(range(1, epochs + 1))
    saved = sorted(path.name for path in checkpoint_folder(job.pk).iterdir())
    assert saved == [f"epoch-{epochs:05d}.pt"]
    assert ModelVersion.objects.count() == 0


def test_the_worker_s_job_path_never_loads_torch():
    """CUDA is only ever initialised in a job's child: the worker's modules, the drift checks' among
    them (every task module Celery loads), do not import torch."""
    script = (
        "import os, sys; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'config.settings'); "
        "import django; django.setup(); import runners.execute, runners.tasks, runners.launcher; "
        "import monitoring.execute, monitoring.tasks, config.celery; "
        "config.celery.app.loader.import_default_modules(); "
        "print(sorted(name for name in sys.modules if name.split('.')[0] == 'torch'))"
    )
    done = subprocess.run(  # noqa: S603 - our interpreter running a fixed script
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=settings.BASE_DIR
    )

    assert done.stdout.strip().splitlines()[-1] == "[]"
