"""Registry pages: datasets and their versions, registered models and their versions' metrics."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse

from governance.actions.datasets import (
    do_create_dataset,
    do_erase_dataset_version,
    do_register_dataset_version,
)
from governance.actions.model_versions import do_update_model_version
from governance.actions.pii import describe_plan, pii_refusal, protection_needed
from governance.actions.registered_models import (
    do_archive_registered_model,
    do_create_registered_model,
    do_delete_registered_model,
    do_unarchive_registered_model,
)
from governance.actions.retention import expires_at
from governance.artifacts import staged_upload
from governance.charts import CHART_POINTS_MAX, Series, chart
from governance.filtersets import DatasetFilterSet, RegisteredModelFilterSet
from governance.forms import (
    DatasetForm,
    DatasetVersionEraseForm,
    DatasetVersionUploadForm,
    ModelVersionCardForm,
    RegisteredModelForm,
)
from governance.models import (
    AuditEvent,
    Dataset,
    DatasetVersion,
    ModelAlias,
    ModelVersion,
    PiiScan,
    RegisteredModel,
    RetentionPolicy,
    StoredObject,
)
from governance.permissions import CHANGE, MANAGE, can
from governance.queries import by_name_with_versions
from governance.views.helpers import (
    button_view,
    filtered_list,
    form_page,
    form_view,
    may_create_in_any_team,
    metric_columns,
    visible_or_404,
)

# Datasets -------------------------------------------------------------------------------------


@login_required
def dataset_list(request: HttpRequest) -> HttpResponse:
    """Datasets the user may view, filtered by team and name; POST creates a dataset."""

    def page() -> dict[str, Any]:
        queryset = by_name_with_versions(Dataset.objects.restrict(request.user).select_related("team"))
        return {
            "section": "datasets",
            **filtered_list(request, DatasetFilterSet, queryset),
            "may_create": may_create_in_any_team(request.user),
        }

    return form_view(
        request,
        DatasetForm(request.POST or None, user=request.user),
        lambda data: do_create_dataset(
            team=data["team"], name=data["name"], description=data["description"], actor=request.user
        ),
        success_message=lambda dataset: f"Created dataset {dataset.name}.",
        template="governance/dataset_list.html",
        context=page,
    )


@login_required
def dataset_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """A dataset's versions; POST uploads a file as its next version."""
    dataset = visible_or_404(request, Dataset.objects.select_related("team", "created_by"), pk)

    def register(data: dict[str, Any]) -> DatasetVersion:
        upload = data["file"]
        with staged_upload(upload) as path:
            return do_register_dataset_version(
                dataset=dataset,
                file_path=path,
                filename=upload.name,
                source=DatasetVersion.Source.UPLOAD,
                description=data["description"],
                actor=request.user,
            )

    def page() -> dict[str, Any]:
        versions = DatasetVersion.objects.restrict(request.user).filter(dataset=dataset)
        return {
            "section": "datasets",
            "dataset": dataset,
            "versions": versions.select_related("created_by"),
            "may_change": can(request.user, CHANGE, dataset.team_id),
        }

    return form_view(
        request,
        DatasetVersionUploadForm(request.POST or None, request.FILES or None),
        register,
        success_message=lambda version: f"Registered {version} ({version.row_count:,} rows).",
        template="governance/dataset_detail.html",
        context=page,
    )


@login_required
def dataset_version_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """One immutable file: schema, hash, size, provenance, and what was made from it.

    The lineage panel is the ``lineage_panel`` template tag of the lineage app: governance
    imports no other app (issue 8 layering).
    """
    version = visible_or_404(
        request,
        DatasetVersion.objects.select_related("dataset__team", "created_by", "erased_by", "legal_hold_by"),
        pk,
    )
    trained = (
        ModelVersion.objects.restrict(request.user)
        .filter(training_dataset_version=version)
        .exclude(status=ModelVersion.Status.DELETED)
        .select_related("model")
    )
    plan = protection_needed(version)
    context = {
        "section": "datasets",
        "version": version,
        "download_url": reverse("datasetversion-download", args=[version.pk]),
        "trained_model_versions": trained,
        "pii_scan": PiiScan.objects.filter(dataset_version=version).first(),
        # What a job on it would be told (issue 12), before anyone tries: refused, or reading a
        # protected copy instead (masked, hashed or dropped columns).
        "pii_refusal": pii_refusal(version) if not plan else "",
        "pii_plan": describe_plan(plan),
        "stored": StoredObject.objects.filter(key=version.file).first(),
        # Retention (issue 12): when the team's policy deletes it (None: never, or held).
        "expires_at": expires_at(
            version,
            RetentionPolicy.objects.filter(team_id=version.dataset.team_id).prefetch_related("rules").first(),
        ),
        "may_erase": version.erased_at is None and can(request.user, MANAGE, version.dataset.team_id),
    }
    return render(request, "governance/dataset_version_detail.html", context)


@login_required
def dataset_version_erase(request: HttpRequest, pk: int) -> HttpResponse:
    """Erase a dataset version (GDPR Art. 17; team managers): asks why, then destroys its bytes."""
    version = visible_or_404(request, DatasetVersion.objects.select_related("dataset__team"), pk)
    back = reverse("dataset_version_detail", args=[version.pk])
    return form_view(
        request,
        DatasetVersionEraseForm(request.POST or None),
        lambda data: do_erase_dataset_version(
            dataset_version=version, reason=data["reason"], actor=request.user
        ),
        success_message=lambda erased: f"Erased {erased}: its stored bytes are destroyed.",
        template="generic/form.html",
        context=lambda: form_page("datasets", f"Erase {version}", "Erase", back),
    )


# Models ---------------------------------------------------------------------------------------


@login_required
def model_list(request: HttpRequest) -> HttpResponse:
    """Registered models the user may view; POST registers a new model name."""

    def page() -> dict[str, Any]:
        queryset = by_name_with_versions(
            RegisteredModel.objects.restrict(request.user)
            .filter(deleted_at__isnull=True)
            .select_related("team", "owner")
        )
        return {
            "section": "models",
            **filtered_list(request, RegisteredModelFilterSet, queryset),
            "may_create": may_create_in_any_team(request.user),
        }

    return form_view(
        request,
        RegisteredModelForm(request.POST or None, user=request.user),
        lambda data: do_create_registered_model(
            team=data["team"],
            name=data["name"],
            owner=data["owner"],
            description=data["description"],
            actor=request.user,
        ),
        success_message=lambda model: f"Registered model {model.name}.",
        template="governance/model_list.html",
        context=page,
    )


# A model page draws at most this many metrics' histories (the first in the versions table's order).
HISTORY_METRICS_MAX = 8


def metric_history_charts(versions: list[ModelVersion], columns: list[str]) -> list[tuple[str, str, dict]]:
    """``(metric, element id, chart)`` for each of the first ``HISTORY_METRICS_MAX`` of ``columns``: the
    metric's value in each of the newest ``CHART_POINTS_MAX`` of ``versions``, x = version number
    (a version without it, or with a non-number, is a gap)."""
    ordered = sorted(versions, key=lambda version: version.version)[-CHART_POINTS_MAX:]
    return [
        (
            name,
            f"metric-history-{index}",
            chart(
                "line",
                x_label="version",
                x=[version.version for version in ordered],
                x_labels=[f"v{version.version}" for version in ordered],
                series=[Series(name, [version.metrics.get(name) for version in ordered])],
            ),
        )
        for index, name in enumerate(columns[:HISTORY_METRICS_MAX], start=1)
    ]


@login_required
def model_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """A model's versions side by side with their validation metrics, and its training jobs."""
    # Deleted models and versions are gone from the pages (their rows stay for audit and lineage).
    model = visible_or_404(
        request, RegisteredModel.objects.filter(deleted_at__isnull=True).select_related("team", "owner"), pk
    )
    versions = list(
        ModelVersion.objects.restrict(request.user)
        .filter(model=model)
        .exclude(status=ModelVersion.Status.DELETED)
        .select_related("training_dataset_version__dataset")
    )
    columns = metric_columns(versions)
    aliases = list(
        ModelAlias.objects.restrict(request.user).filter(model=model).select_related("model_version")
    )
    # Who moved each alias last: its newest move in the audit log (the same rows the trail shows).
    moves = AuditEvent.objects.restrict(request.user).filter(
        action="model_alias.move",
        object_type="modelalias",
        object_id__in=[str(alias.pk) for alias in aliases],
    )
    last_move: dict[str, AuditEvent] = {}
    for event in moves.order_by("-id"):
        last_move.setdefault(event.object_id, event)
    context = {
        "section": "models",
        "model": model,
        "aliases": [(alias, last_move.get(str(alias.pk))) for alias in sorted(aliases, key=lambda a: a.name)],
        "may_change": can(request.user, CHANGE, model.team_id),
        "metric_columns": columns,
        "version_rows": [(v, [v.metrics.get(c) for c in columns]) for v in versions],
        "metric_charts": metric_history_charts(versions, columns),
        # The reverse accessor keeps governance from importing runners (DESIGN: layers).
        "training_jobs": model.training_jobs.restrict(request.user).select_related(
            "created_by", "registered_model", "dataset_version__dataset"
        )[:10],
    }
    return render(request, "governance/model_detail.html", context)


def _live_model(request: HttpRequest, pk: int) -> RegisteredModel:
    return visible_or_404(request, RegisteredModel.objects.filter(deleted_at__isnull=True), pk)


@login_required
def model_archive(request: HttpRequest, pk: int) -> HttpResponse:
    """GET asks to confirm; POST archives (or, archived, unarchives) the model."""
    model = _live_model(request, pk)
    if model.archived_at is None:
        verb, action, explanation = (
            "Archive",
            do_archive_registered_model,
            "It stays readable; it takes no new version and no new alias until unarchived.",
        )
    else:
        verb, action, explanation = (
            "Unarchive",
            do_unarchive_registered_model,
            "It takes versions and aliases again.",
        )
    return button_view(
        request,
        lambda: action(model=model, actor=request.user),
        section="models",
        question=f"{verb} the model {model.name}?",
        explanation=explanation,
        label=verb,
        back=model.get_absolute_url(),
        success_message=f"{verb}d the model {model.name}.",
    )


@login_required
def model_delete(request: HttpRequest, pk: int) -> HttpResponse:
    """GET asks to confirm; POST deletes the model and its versions (soft: kept for the audit trail)."""
    model = _live_model(request, pk)
    return button_view(
        request,
        lambda: do_delete_registered_model(model=model, with_versions=True, actor=request.user),
        section="models",
        question=f"Delete the model {model.name} and its versions?",
        explanation="Its versions and aliases go too; the records stay in the audit trail and lineage, "
        "version numbers are never reused and the name becomes free.",
        label="Delete",
        back=model.get_absolute_url(),
        success_message=f"Deleted the model {model.name}.",
        success=lambda _model: reverse("model_list"),
    )


@login_required
def model_version_card(request: HttpRequest, pk: int) -> HttpResponse:
    """GET shows, POST saves a version's description, intended purpose and known limitations
    (``do_update_model_version``: audited, CHANGE on the team re-checked inside)."""
    version = visible_or_404(
        request, ModelVersion.objects.exclude(status=ModelVersion.Status.DELETED).select_related("model"), pk
    )
    initial = {
        "description": version.description,
        "intended_purpose": version.intended_purpose,
        "known_limitations": version.known_limitations,
    }
    return form_view(
        request,
        ModelVersionCardForm(request.POST or None, initial=initial),
        lambda data: do_update_model_version(version=version, **data, actor=request.user),
        success_message=lambda saved: f"Saved the model card of {saved}.",
        template="generic/form.html",
        context=lambda: form_page("models", f"Model card of {version}", "Save", version.get_absolute_url()),
    )
