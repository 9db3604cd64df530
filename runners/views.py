"""Job pages: submit training and inference, follow a job live, cancel it."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from governance.models import ModelVersion
from governance.views.helpers import (
    button_view,
    filtered_list,
    form_page,
    form_view,
    may_create_in_any_team,
    metric_rows,
    pretty_json,
    table_of,
    visible_or_404,
)
from runners import actions
from runners.filtersets import JobFilterSet
from runners.forms import InferenceJobForm, TrainingJobForm
from runners.models import Job, JobKind
from runners.permissions import may_cancel_job

HISTORY_ORDER = ["epoch", "train_loss", "val_loss", "val_rmse", "val_mae", "val_r2", "val_accuracy"]
JOB_RELATIONS = (
    "created_by",
    "dataset_version__dataset",
    "registered_model",
    "model_version__model",
    "output_model_version__model",
    "output_dataset_version__dataset",
    "experiment",
)


@login_required
def job_list(request: HttpRequest) -> HttpResponse:
    """Jobs the user may view, filtered by state and kind; POST submits a training job."""

    def page() -> dict[str, Any]:
        queryset = Job.objects.restrict(request.user).select_related(*JOB_RELATIONS)
        return {
            "section": "jobs",
            **filtered_list(request, JobFilterSet, queryset),
            "filter_fields": ["state", "kind", "team"],
            "may_create": may_create_in_any_team(request.user),
        }

    form = TrainingJobForm(request.POST or None, user=request.user)
    return form_view(
        request,
        form,
        lambda data: actions.do_submit_job(
            kind=JobKind.TRAIN,
            dataset_version=data["dataset_version"],
            registered_model=data["registered_model"],
            spec=form.spec(),
            actor=request.user,
        ),
        success_message=lambda job: f"Submitted {job}; it starts when a worker picks it up.",
        template="runners/job_list.html",
        context=page,
    )


def _progress_context(request: HttpRequest, job: Job) -> dict:
    columns, rows = table_of(job.history, HISTORY_ORDER)
    return {
        "job": job,
        "history_columns": columns,
        "history_rows": rows,
        "metrics": metric_rows(job.metrics),
        "may_change": may_cancel_job(request.user, job),
    }


def _job_page(request: HttpRequest, job: Job, status: int = 200) -> HttpResponse:
    context = _progress_context(request, job) | {
        "section": "jobs",
        "spec_json": pretty_json(job.spec),
        "params_json": pretty_json(job.params),
        "run_inputs": job.run_inputs.select_related("dataset_version__dataset", "external_dataset"),
    }
    return render(request, "runners/job_detail.html", context, status=status)


@login_required
def job_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """A job's inputs and spec, and its live progress (polled while it runs)."""
    return _job_page(request, visible_or_404(request, Job.objects.select_related(*JOB_RELATIONS), pk))


@login_required
def job_progress(request: HttpRequest, pk: int) -> HttpResponse:
    """The progress fragment htmx polls every 2 s; once finished it renders without the poll."""
    job = visible_or_404(request, Job.objects.select_related(*JOB_RELATIONS), pk)
    return render(request, "htmx/job_progress.html", _progress_context(request, job))


@login_required
def job_cancel(request: HttpRequest, pk: int) -> HttpResponse:
    """GET asks to confirm; POST cancels a queued job or asks a running one to stop."""
    job = visible_or_404(request, Job.objects.select_related(*JOB_RELATIONS), pk)

    def refused(status: int) -> HttpResponse:
        job.refresh_from_db()
        return _job_page(request, job, status)

    return button_view(
        request,
        lambda: actions.do_cancel_job(job=job, actor=request.user),
        section="jobs",
        question=f"Cancel {job}?",
        explanation="A queued job is cancelled at once; a running one stops after its current epoch.",
        label="Cancel the job",
        back=job.get_absolute_url(),
        success_message=f"Cancellation of {job} requested.",
        refused=refused,
    )


@login_required
def model_version_infer(request: HttpRequest, pk: int) -> HttpResponse:
    """Predict a dataset version with a model version (an inference job); GET shows the form."""
    model_version = visible_or_404(request, ModelVersion.objects.select_related("model"), pk)
    form = InferenceJobForm(request.POST or None, user=request.user)
    return form_view(
        request,
        form,
        lambda data: actions.do_submit_job(
            kind=JobKind.INFER,
            dataset_version=data["dataset_version"],
            model_version=model_version,
            spec=form.spec(),
            actor=request.user,
        ),
        success_message=lambda job: f"Submitted {job}.",
        template="generic/form.html",
        context=lambda: form_page(
            "models", f"Run inference with {model_version}", "Run inference", model_version.get_absolute_url()
        ),
    )
