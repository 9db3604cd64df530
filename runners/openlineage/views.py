"""Small pages for external OpenLineage objects (issue 10): a list, and one page per job, run
and dataset, so lineage panels and graphs can link to them. Read-only; events change them."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from governance.views.helpers import visible_or_404
from runners.openlineage.models import OpenLineageDataset, OpenLineageJob, OpenLineageRun

SECTION = "jobs"
LIST_LIMIT = 200


@login_required
def openlineage_list(request: HttpRequest) -> HttpResponse:
    """The external jobs (with their latest runs) and datasets the user may view, newest first."""
    jobs = OpenLineageJob.objects.restrict(request.user).select_related("team").order_by("-updated_at", "-id")
    runs = OpenLineageRun.objects.restrict(request.user).select_related("job").order_by("-updated_at", "-id")
    datasets = OpenLineageDataset.objects.restrict(request.user).select_related("team")
    context = {
        "section": SECTION,
        "jobs": jobs[:LIST_LIMIT],
        "runs": runs[:LIST_LIMIT],
        "datasets": datasets.order_by("-updated_at", "-id")[:LIST_LIMIT],
    }
    return render(request, "runners/openlineage_list.html", context)


@login_required
def openlineage_job_detail(request: HttpRequest, pk: int) -> HttpResponse:
    job = visible_or_404(request, OpenLineageJob.objects.select_related("team"), pk)
    context = {
        "section": SECTION,
        "job": job,
        "runs": job.runs.order_by("-created_at", "-id")[:LIST_LIMIT],
        "uses": job.static_datasets.all(),
    }
    return render(request, "runners/openlineage_job.html", context)


@login_required
def openlineage_run_detail(request: HttpRequest, pk: int) -> HttpResponse:
    run = visible_or_404(request, OpenLineageRun.objects.select_related("team", "job"), pk)
    uses = run.datasets.select_related("dataset", "dataset_version__dataset")
    return render(request, "runners/openlineage_run.html", {"section": SECTION, "run": run, "uses": uses})


@login_required
def openlineage_dataset_detail(request: HttpRequest, pk: int) -> HttpResponse:
    dataset = visible_or_404(request, OpenLineageDataset.objects.select_related("team"), pk)
    uses = dataset.uses.filter(run__isnull=False).select_related("run__job").order_by("-run__created_at")
    context = {"section": SECTION, "dataset": dataset, "uses": uses[:LIST_LIMIT]}
    return render(request, "runners/openlineage_dataset.html", context)
