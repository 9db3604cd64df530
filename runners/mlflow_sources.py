"""Resolvers for the sources MLflow clients register versions from (issue 9): ``runs:/<run id>/
<path>``, ``models:/<logged model id>`` and ``mlflow-artifacts:/<path>``. Registered with
``governance.sources.register_source_resolver`` in ``RunnersConfig.ready`` (governance never
imports runners). Each returns the local directory or file, the run (job) that produced it and
the run's latest metrics and parameters, so the version records its run, metrics and parameters,
and records the lineage edge run -> version in the registration's transaction;
the actor must be able to view what the source names (else ObjectDoesNotExist, a 404)."""

from __future__ import annotations

import contextlib
import functools
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ObjectDoesNotExist, ValidationError

from governance.sources import ResolvedSource
from runners import run_artifacts
from runners.mlflow_artifacts import ArtifactPlace, checked_path, locate
from runners.models import Job, JobDataset, JobDatasetRole, JobKind, LoggedModel
from runners.tracking import do_record_run_output, mlflow_runs, run_artifact_location, run_pk

if TYPE_CHECKING:
    from django.contrib.auth.models import User

# The input a code run's model versions name as their training data, when the run has one.
TRAIN_INPUT = "train"


def training_input(job: Job) -> int | None:
    """The dataset version a code run trained on (issue 17), the reference drift monitors of its
    model versions compare with: its input named ``train`` if it has one, else its first input
    in the order the submission gave them; None for a tracked run or a run without inputs."""
    if job.kind != JobKind.CODE:
        return None
    inputs = list(
        JobDataset.objects.filter(job=job, role=JobDatasetRole.INPUT)
        .order_by("id")
        .values_list("name", "dataset_version_id")
    )
    named = [version_id for name, version_id in inputs if name == TRAIN_INPUT]
    ordered = named or [version_id for _, version_id in inputs]
    return ordered[0] if ordered else None


def _run_record(job: Job | None, extra_params: dict[str, Any] | None = None) -> dict[str, Any]:
    if job is None:
        return {"source_job_id": None, "metrics": {}, "params": dict(extra_params or {})}
    # Non-finite metrics (stored as "NaN"/"Infinity" strings) are left out of the version's metrics.
    metrics = {key: value for key, value in job.metrics.items() if isinstance(value, int | float)}
    return {
        "source_job_id": job.pk,
        "metrics": metrics,
        "params": {**job.params, **(extra_params or {})},
        "training_dataset_version_id": training_input(job),
        "on_registered": functools.partial(do_record_run_output, job.pk),
    }


def _gathered(path: str, source: str, record: dict[str, Any]) -> ResolvedSource:
    """The source's files gathered locally (``run_artifacts.gathered``), released by the caller
    once registered; ValidationError when nothing was uploaded at ``path``."""
    stack = contextlib.ExitStack()
    local = stack.enter_context(run_artifacts.gathered(path))
    if local is None:
        stack.close()
        raise ValidationError({"source": f"{source[:200]!r} names no artifact that was uploaded"})
    return ResolvedSource(path=local, release=stack.close, **record)


def resolve_runs_uri(source: str, *, actor: User | None) -> ResolvedSource:
    """``runs:/<run id>/<path>``: the run's artifact at ``path``."""
    rest = source.removeprefix("runs:").lstrip("/")
    run_id, _, relative = rest.partition("/")
    checked_path(relative)
    run = mlflow_runs().filter(pk=run_pk(run_id) or 0)
    if actor is not None:
        run = run.restrict(actor)
    job = run.first()
    if job is None:
        raise ObjectDoesNotExist(f"no run {run_id!r} that you may see")
    prefix = run_artifacts.artifact_prefix(run_artifact_location(job))
    return _gathered(run_artifacts.joined(prefix, relative.strip("/")), source, _run_record(job))


def resolve_models_uri(source: str, *, actor: User | None) -> ResolvedSource:
    """``models:/<logged model id>`` (MLflow 3): the logged model's artifacts, with its source
    run's metrics and parameters (and the logged model's own parameters)."""
    model_id = source.removeprefix("models:").strip("/")
    if not model_id.startswith("m-") or "/" in model_id:
        raise ValidationError(
            {
                "source": "models:/ sources name a logged model (models:/m-...); "
                "register other versions by path"
            }
        )
    models = LoggedModel.objects.select_related("source_run").filter(pk=model_id, deleted_at__isnull=True)
    if actor is not None:
        models = models.restrict(actor)
    model = models.first()
    if model is None:
        raise ObjectDoesNotExist(f"no logged model {model_id!r} that you may see")
    prefix = run_artifacts.artifact_prefix(model.artifact_location)
    return _gathered(prefix, source, _run_record(model.source_run, model.params))


def resolve_mlflow_artifacts_uri(source: str, *, actor: User | None) -> ResolvedSource:
    """``mlflow-artifacts:/experiments/...``: a run's or a logged model's artifact."""
    if actor is None:
        raise ValidationError({"source": "mlflow-artifacts: sources are resolved for a user"})
    place: ArtifactPlace = locate(source.removeprefix("mlflow-artifacts:"), actor)
    if place.version is not None:
        raise ValidationError({"source": "register a new version from a run's or logged model's artifacts"})
    job = place.run or (place.logged_model.source_run if place.logged_model else None)
    extra = place.logged_model.params if place.logged_model else None
    return _gathered(place.path, source, _run_record(job, extra))
