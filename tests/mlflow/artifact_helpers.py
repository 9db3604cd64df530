"""Reading and planting tracked runs' files as the artifact store keeps them (issue 12,
``runners.run_artifacts``), for tests that look past the MLflow client."""

from __future__ import annotations

from pathlib import Path

from runners import run_artifacts
from runners.models import Job
from runners.tracking import run_artifact_location


def run_path(job: Job, relative: str) -> str:
    """The recorded path of ``relative`` under the run's artifacts."""
    return run_artifacts.joined(run_artifacts.artifact_prefix(run_artifact_location(job)), relative)


def run_file(job: Job, relative: str) -> bytes | None:
    """The bytes of the run's file ``relative`` (read back through the store), None if none."""
    path = run_path(job, relative)
    if run_artifacts.find(path) is None:
        return None
    with run_artifacts.open_file(path) as handle:
        return handle.read()


def plant_folder(job: Job, folder: Path, under: str) -> None:
    """Store every file of the local ``folder`` under the run's ``under/`` (as a client's uploads)."""
    prefix = run_artifacts.artifact_prefix(run_artifact_location(job))
    for item in sorted(folder.rglob("*")):
        if item.is_file():
            relative = f"{under}/{item.relative_to(folder).as_posix()}"
            run_artifacts.do_store_file(prefix=prefix, relative=relative, team_id=job.team_id, source=item)
