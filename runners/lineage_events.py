"""A job's state changes as OpenLineage run transitions (issue 10, "Emit").

``JOBS`` (``runners.actions``) calls ``announce_job`` at each start and end; ``describe_job``
turns the committed row into a ``lineage.openlineage.emit.RunTransition``: its job name, inputs
(the dataset, model and input dataset versions it read) and, when it completed, outputs (the
model or dataset versions it registered). ``dataset_version_ref`` / ``model_version_ref`` are the
naming of Steward's versions as OpenLineage datasets, also used by monitoring's drift checks.
"""

from __future__ import annotations

import datetime

from governance.models import DatasetVersion, ModelVersion
from lineage.openlineage import emit
from runners.lifecycle import CANCELLED, FAILED, RUNNING
from runners.models import Job, JobDatasetRole, JobKind, JobState

# Lifecycle states -> OpenLineage event types.
EVENT_OF_STATE = {RUNNING: "START", JobState.SUCCEEDED: "COMPLETE", FAILED: "FAIL", CANCELLED: "ABORT"}
JOB_TYPES = {
    JobKind.TRAIN: "TRAINING",
    JobKind.INFER: "INFERENCE",
    JobKind.CODE: "CODE",
    JobKind.TRACKED: "TRACKED",
}


def dataset_version_ref(version: DatasetVersion) -> emit.DatasetRef:
    """``datasets/<team slug>/<dataset>@v<n>`` with its page and its columns (name, dtype)."""
    dataset = version.dataset
    return emit.DatasetRef(
        name=f"datasets/{dataset.team.slug}/{dataset.name}@v{version.version}",
        url=version.get_absolute_url(),
        version=str(version.version),
        fields=[
            [str(column.get("name", "")), str(column.get("dtype", ""))] for column in version.schema or []
        ],
    )


def model_version_ref(version: ModelVersion) -> emit.DatasetRef:
    """``models/<team slug>/<model>@v<n>`` with its page and its signature's features."""
    model = version.model
    features = (version.signature or {}).get("features") or []
    return emit.DatasetRef(
        name=f"models/{model.team.slug}/{model.name}@v{version.version}",
        url=version.get_absolute_url(),
        version=str(version.version),
        fields=[[str(name), ""] for name in features],
    )


def iso(moment: datetime.datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def announce_job(job_id: int, state: str) -> None:
    """Emit the job's transition to ``state`` after commit (``emit.announce``: nothing, not even
    a query, when OpenLineage is not configured)."""
    emit.announce(lambda: describe_job(job_id, state))


def _job_name(job: Job) -> str:
    """The recurring job a run belongs to: ``<team>.<kind>.<what>`` (the model trained, the
    model applied, the code's entry point)."""
    team = job.team.slug
    if job.kind == JobKind.TRAIN and job.registered_model is not None:
        return f"{team}.train.{job.registered_model.name}"
    if job.kind == JobKind.INFER and job.model_version is not None:
        return f"{team}.infer.{job.model_version.model.name}"
    if job.kind == JobKind.CODE and job.code_version is not None:
        return f"{team}.code.{job.code_version.project.name}.{job.entry_point}"
    if job.kind == JobKind.TRACKED and job.experiment is not None:
        return f"{team}.mlflow.{job.experiment.name}"
    return f"{team}.{job.kind}.{job.run_name or job.pk}"


def describe_job(job_id: int, state: str) -> emit.RunTransition | None:
    """The run transition of job ``job_id`` reaching ``state`` (a lifecycle state), read from the
    committed row; None for a state that is not a transition OpenLineage knows."""
    event_type = EVENT_OF_STATE.get(state)
    if event_type is None:
        return None
    job = Job.objects.select_related(
        "team",
        "registered_model",
        "dataset_version__dataset__team",
        "model_version__model__team",
        "code_version__project",
        "experiment",
        "output_model_version__model__team",
        "output_dataset_version__dataset__team",
    ).get(pk=job_id)
    inputs = []
    if job.model_version is not None:
        inputs.append(model_version_ref(job.model_version))
    if job.dataset_version is not None:
        inputs.append(dataset_version_ref(job.dataset_version))
    given = sorted((job.spec.get("models") or {}).values()) if job.kind == JobKind.CODE else []
    inputs += [
        model_version_ref(version)
        for version in ModelVersion.objects.select_related("model__team").filter(pk__in=given).order_by("pk")
    ]
    outputs = []
    if job.state == JobState.SUCCEEDED:
        if job.output_model_version is not None:
            outputs.append(model_version_ref(job.output_model_version))
        if job.output_dataset_version is not None and job.kind != JobKind.CODE:
            outputs.append(dataset_version_ref(job.output_dataset_version))
    if job.kind == JobKind.TRACKED:
        # An MLflow client's run: the Steward dataset versions it logged as inputs, and the model
        # versions registered from it so far.
        logged = job.run_inputs.filter(dataset_version__isnull=False).order_by("pk")
        inputs += [
            dataset_version_ref(item.dataset_version)
            for item in logged.select_related("dataset_version__dataset__team")
        ]
        if job.state == JobState.SUCCEEDED:
            registered = ModelVersion.objects.filter(source_job_id=job.pk).select_related("model__team")
            outputs += [model_version_ref(version) for version in registered.order_by("pk")]
    for item in job.datasets.select_related("dataset_version__dataset__team").order_by("pk"):
        if item.role == JobDatasetRole.INPUT:
            inputs.append(dataset_version_ref(item.dataset_version))
        elif job.state == JobState.SUCCEEDED:
            outputs.append(dataset_version_ref(item.dataset_version))
    moment = job.started_at if event_type == "START" else job.finished_at
    return emit.RunTransition(
        event_type=event_type,
        event_time=iso(moment or job.created_at) or "",
        run_key=f"jobs/{job.pk}",
        job_name=_job_name(job),
        job_type=JOB_TYPES.get(JobKind(job.kind), str(job.kind).upper()),
        url=job.get_absolute_url(),
        inputs=inputs,
        outputs=outputs,
        nominal_time=iso(job.not_before or job.created_at),
        error=job.error if event_type == "FAIL" else "",
        attempt=job.attempt,
    )
