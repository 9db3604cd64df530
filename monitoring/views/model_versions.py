"""A model version's page: open alerts, monitors, metrics, signature, lineage, drift checks, jobs."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from governance.charts import step_table
from governance.models import Evaluation, ModelVersion, StoredObject
from governance.permissions import CHANGE, can
from governance.views.helpers import metric_rows, pretty_json, visible_or_404
from governance.views.promotions import promotion_panel
from lineage.queries import lineage_of
from monitoring.evidence import may_download_evidence
from monitoring.forms import DriftCheckForm
from monitoring.models import UNRESOLVED, Alert, DriftCheck, Monitor
from monitoring.permissions import may_monitor_model_version
from monitoring.views.relations import JOB_TABLE_RELATIONS
from runners.forms import EvaluationJobForm, InferenceJobForm
from runners.models import Job, JobKind
from runners.queries import CURVE_POINTS_MAX, metric_curves


@login_required
def model_version_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """A trained version: open alerts, monitors, metrics, signature, lineage, drift checks, jobs."""
    user = request.user
    version = visible_or_404(
        request,
        ModelVersion.objects.select_related(
            "model__team", "model__owner", "training_dataset_version__dataset", "created_by"
        ),
        pk,
    )
    source_job = None
    if version.source_job_id is not None:
        source_job = Job.objects.restrict(user).filter(pk=version.source_job_id).first()
    # The training run's step curves (a built-in job's epochs, or what an MLflow client logged).
    curves = metric_curves(source_job) if source_job is not None else {}
    context = {
        "section": "models",
        "version": version,
        "curves": curves,
        "curve_table": step_table(curves),
        "curve_points_max": CURVE_POINTS_MAX,
        "metrics": metric_rows(version.metrics),
        "signature": version.signature,
        "training_spec_json": pretty_json(version.training_spec),
        "source_job": source_job,
        "lineage": lineage_of(user, version),
        "monitors": Monitor.objects.restrict(user)
        .filter(model_version=version)
        .select_related("escalation_policy")
        .annotate(open_alerts=Count("alerts", filter=Q(alerts__state__in=UNRESOLVED))),
        "drift_checks": DriftCheck.objects.restrict(user)
        .filter(model_version=version)
        .select_related("model_version__model", "current_dataset_version__dataset")[:20],
        "alerts": Alert.objects.restrict(user).filter(model_version=version).select_related("owner")[:20],
        # Issue 15: its evaluations, newest first (self-reported ones marked on the page).
        "evaluations": Evaluation.objects.restrict(user)
        .filter(model_version=version)
        .select_related("dataset_version__dataset", "champion_version__model")[:20],
        "inference_jobs": Job.objects.restrict(user)
        .filter(model_version=version, kind=JobKind.INFER)
        .select_related(*JOB_TABLE_RELATIONS)[:10],
        "evaluation_jobs": Job.objects.restrict(user)
        .filter(model_version=version, kind=JobKind.EVALUATE)
        .select_related(*JOB_TABLE_RELATIONS)[:10],
        "may_change": may_monitor_model_version(user, version),
        "may_edit_card": can(user, CHANGE, version.model.team_id)
        and version.status != ModelVersion.Status.DELETED,
        "may_download_evidence": may_download_evidence(user, version),
        # How its artifact is kept (issue 12): encryption, location, tier; None in direct mode.
        "stored": StoredObject.objects.filter(key=version.artifact).first(),
        # "Compare with...": the model's other versions (same team, so visible).
        "other_versions": version.model.versions.exclude(pk=version.pk)
        .exclude(status=ModelVersion.Status.DELETED)
        .order_by("-version"),
        "drift_form": DriftCheckForm(user=user),
        "infer_form": InferenceJobForm(user=user),
        "evaluate_form": EvaluationJobForm(
            user=user, initial=_evaluation_initial(version), auto_id="id_evaluate_%s"
        ),
        **promotion_panel(user, version),
    }
    return render(request, "monitoring/model_version_detail.html", context)


def _evaluation_initial(version: ModelVersion) -> dict[str, object]:
    """The evaluation form's first values from the version's signature (a Steward model's target
    and task): the owner fills in what the data says (positive label, sensitive attributes)."""
    signature = version.signature if isinstance(version.signature, dict) else {}
    initial: dict[str, object] = {"champion_alias": "production"}
    if signature.get("target"):
        initial["target"] = signature["target"]
    if signature.get("task") in ("classification", "regression"):
        initial["task"] = signature["task"]
    return initial
