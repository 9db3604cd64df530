"""Evaluation pages (issue 15): one evaluation's metrics, curves, slices, fairness, robustness,
importance and its champion comparison."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from governance.models import Evaluation
from governance.views.helpers import visible_or_404


@login_required
def evaluation_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """One evaluation the user may view (another team's: 404)."""
    evaluation = visible_or_404(
        request,
        Evaluation.objects.select_related(
            "team",
            "model_version__model",
            "dataset_version__dataset",
            "champion_version__model",
            "created_by",
        ),
        pk,
    )
    return render(
        request, "governance/evaluation_detail.html", {"section": "models", "evaluation": evaluation}
    )
