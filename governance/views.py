"""Registry pages (datasets, models, the audit trail) and the helpers every UI view shares.

Views parse input, call an action, render. Every object comes through
``Model.objects.restrict(request.user)``, so another team's object is a 404; an action's
ValidationError or PermissionDenied re-renders the page with the reason (400 / 403), never a 500.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Page, Paginator
from django.db import IntegrityError
from django.db.models import Count, Max, Model, QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse

from governance import audit_tree
from governance.actions.registry import (
    do_create_dataset,
    do_create_registered_model,
    do_register_dataset_version,
)
from governance.api.base import staged_upload
from governance.datafiles import DataFileError
from governance.filtersets import AuditEventFilterSet, DatasetFilterSet, RegisteredModelFilterSet
from governance.forms import (
    DatasetForm,
    DatasetVersionUploadForm,
    RegisteredModelForm,
    style_audit_filters,
    style_filters,
)
from governance.keyset import InvalidCursor, KeysetPage, keyset_page
from governance.models import AuditEvent, Dataset, DatasetVersion, ModelVersion, RegisteredModel, Team
from governance.permissions import CHANGE, VIEW, can
from lineage.nodes import NodeRef
from lineage.queries import walk

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

T = TypeVar("T")
PAGE_SIZE = 50
LINEAGE_DEPTH = 3
# Metrics worth a column, in the order a reader compares models; anything else follows.
METRIC_ORDER = ["rmse", "mae", "r2", "accuracy", "log_loss", "loss"]
HIDDEN_METRICS = {"train_rows", "validation_rows"}
# Audit object types that have a page of their own (``AuditEvent.object_type`` is the model name).
OBJECT_PAGES = {
    "dataset": "dataset_detail",
    "datasetversion": "dataset_version_detail",
    "registeredmodel": "model_detail",
    "modelversion": "model_version_detail",
    "job": "job_detail",
    "driftcheck": "drift_check_detail",
    "alert": "alert_detail",
}


# Shared helpers -------------------------------------------------------------------------------


def visible_or_404(request: HttpRequest, queryset: QuerySet, pk: int) -> Any:
    """The row ``pk`` of ``queryset`` if ``request.user`` may view it, else Http404."""
    return get_object_or_404(queryset.restrict(request.user, VIEW), pk=pk)


def add_action_errors(form: forms.Form, exc: ValidationError) -> None:
    """Attach an action's ValidationError to the form fields it names, others to the whole form.

    A message keyed by something the form lacks but starting ``"<field>: "`` goes to that field:
    the training spec's errors arrive as ``{"spec": "epochs: must be between ..."}``.
    """
    if not hasattr(exc, "error_dict"):
        form.add_error(None, exc.messages)
        return
    for key, errors in exc.message_dict.items():
        for message in errors:
            prefix = message.split(":", 1)[0]
            field = key if key in form.fields else prefix if prefix in form.fields else None
            form.add_error(field, message)


def call_action(form: forms.Form, action: Callable[[], T]) -> tuple[T | None, int]:
    """Run ``action()``; on a refusal attach the reason to ``form``.

    Returns ``(result, 200)`` on success, else ``(None, status)``: 403 for PermissionDenied,
    400 for ValidationError or an invalid data file, 409 for a concurrent change.
    """
    try:
        return action(), 200
    except PermissionDenied as exc:
        form.add_error(None, str(exc) or "You may not do this.")
        return None, 403
    except ValidationError as exc:
        add_action_errors(form, exc)
        return None, 400
    except DataFileError as exc:
        form.add_error("file" if "file" in form.fields else None, str(exc))
        return None, 400
    except IntegrityError:
        form.add_error(None, "This conflicts with a concurrent change; try again.")
        return None, 409


def perform(request: HttpRequest, action: Callable[[], Any], success: str) -> int:
    """Run a button's ``action()`` and report the outcome as a message.

    Returns 200 when it succeeded, 403 for PermissionDenied, 400 for ValidationError.
    """
    try:
        action()
    except PermissionDenied as exc:
        messages.error(request, str(exc) or "You may not do this.")
        return 403
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return 400
    messages.success(request, success)
    return 200


def paginate(request: HttpRequest, queryset: QuerySet, per_page: int = PAGE_SIZE) -> Page:
    """The page of ``queryset`` named by ``?page=`` (the last page when out of range)."""
    return Paginator(queryset, per_page).get_page(request.GET.get("page"))


def may_create_in_any_team(user: AbstractBaseUser) -> bool:
    """Whether to offer "new" forms at all; the action still checks the chosen team."""
    return Team.objects.restrict(user, CHANGE).exists()


def pretty_json(value: Any) -> str:
    """``value`` as indented JSON with sorted keys, for <pre> blocks."""
    return json.dumps(value, indent=2, sort_keys=True, default=str)


def table_of(records: Iterable[dict], order: Sequence[str] = ()) -> tuple[list[str], list[list[Any]]]:
    """Column names (``order`` first, then first-seen) and rows for a list of dicts."""
    records = list(records)
    seen = list(dict.fromkeys(key for record in records for key in record))
    columns = [key for key in order if key in seen] + [key for key in seen if key not in order]
    return columns, [[record.get(column) for column in columns] for record in records]


def metric_columns(versions: Iterable[ModelVersion]) -> list[str]:
    """The metrics shown side by side for ``versions``, in ``METRIC_ORDER`` first."""
    names = {name for version in versions for name in version.metrics} - HIDDEN_METRICS
    return [m for m in METRIC_ORDER if m in names] + sorted(names - set(METRIC_ORDER))


def metric_rows(metrics: dict[str, Any]) -> list[tuple[str, str]]:
    """``(name, shown value)`` in ``METRIC_ORDER`` first, then by name; row counts as integers."""
    rank = {name: index for index, name in enumerate(METRIC_ORDER)}
    rows = []
    for name, value in sorted(metrics.items(), key=lambda item: (rank.get(item[0], len(rank)), item[0])):
        if isinstance(value, int | float) and name.endswith("_rows"):
            rows.append((name, f"{int(value):,}"))
        elif isinstance(value, int | float):
            rows.append((name, f"{value:.4f}"))
        else:
            rows.append((name, str(value)))
    return rows


def lineage_of(user: AbstractBaseUser, obj: Model) -> dict[str, list[dict]]:
    """Visible nodes upstream and downstream of ``obj``, nearest first (``lineage.queries.walk``)."""
    root = NodeRef.of(obj)
    sides = {}
    for direction in ("upstream", "downstream"):
        graph = walk(user, root, direction, LINEAGE_DEPTH)
        sides[direction] = [
            dict(node, kind=node["type"].replace("_", " ")) for node in graph["nodes"] if node["distance"]
        ]
    return sides


# Datasets -------------------------------------------------------------------------------------


@login_required
def dataset_list(request: HttpRequest) -> HttpResponse:
    """Datasets the user may view, filtered by team and name; POST creates a dataset."""
    form = DatasetForm(request.POST or None, user=request.user)
    status = 200
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        dataset, status = call_action(
            form,
            lambda: do_create_dataset(
                team=data["team"], name=data["name"], description=data["description"], actor=request.user
            ),
        )
        if dataset is not None:
            messages.success(request, f"Created dataset {dataset.name}.")
            return redirect(dataset)
    elif request.method == "POST":
        status = 400
    queryset = (
        Dataset.objects.restrict(request.user)
        .select_related("team")
        .annotate(version_count=Count("versions"), latest_version=Max("versions__version"))
        .order_by("name")
    )
    filterset = DatasetFilterSet(request.GET or None, queryset=queryset, request=request)
    style_filters(filterset.form)
    context = {
        "section": "datasets",
        "filterset": filterset,
        "page_obj": paginate(request, filterset.qs),
        "form": form,
        "may_create": may_create_in_any_team(request.user),
    }
    return render(request, "governance/dataset_list.html", context, status=status)


@login_required
def dataset_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """A dataset's versions; POST uploads a file as its next version."""
    dataset = visible_or_404(request, Dataset.objects.select_related("team", "created_by"), pk)
    form = DatasetVersionUploadForm(request.POST or None, request.FILES or None)
    status = 200
    if request.method == "POST" and form.is_valid():
        upload = form.cleaned_data["file"]

        def register() -> DatasetVersion:
            with staged_upload(upload) as path:
                return do_register_dataset_version(
                    dataset=dataset,
                    file_path=path,
                    filename=upload.name,
                    source=DatasetVersion.Source.UPLOAD,
                    description=form.cleaned_data["description"],
                    actor=request.user,
                )

        version, status = call_action(form, register)
        if version is not None:
            messages.success(request, f"Registered {version} ({version.row_count:,} rows).")
            return redirect(version)
    elif request.method == "POST":
        status = 400
    versions = (
        DatasetVersion.objects.restrict(request.user).filter(dataset=dataset).select_related("created_by")
    )
    context = {
        "section": "datasets",
        "dataset": dataset,
        "versions": versions,
        "form": form,
        "may_change": can(request.user, CHANGE, dataset.team_id),
    }
    return render(request, "governance/dataset_detail.html", context, status=status)


@login_required
def dataset_version_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """One immutable file: schema, hash, size, provenance, and what was made from it."""
    version = visible_or_404(
        request, DatasetVersion.objects.select_related("dataset__team", "created_by"), pk
    )
    trained = (
        ModelVersion.objects.restrict(request.user)
        .filter(training_dataset_version=version)
        .select_related("model")
    )
    context = {
        "section": "datasets",
        "version": version,
        "download_url": reverse("datasetversion-download", args=[version.pk]),
        "trained_model_versions": trained,
        "lineage": lineage_of(request.user, version),
    }
    return render(request, "governance/dataset_version_detail.html", context)


# Models ---------------------------------------------------------------------------------------


@login_required
def model_list(request: HttpRequest) -> HttpResponse:
    """Registered models the user may view; POST registers a new model name."""
    form = RegisteredModelForm(request.POST or None, user=request.user)
    status = 200
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        model, status = call_action(
            form,
            lambda: do_create_registered_model(
                team=data["team"],
                name=data["name"],
                owner=data["owner"],
                description=data["description"],
                actor=request.user,
            ),
        )
        if model is not None:
            messages.success(request, f"Registered model {model.name}.")
            return redirect(model)
    elif request.method == "POST":
        status = 400
    queryset = (
        RegisteredModel.objects.restrict(request.user)
        .select_related("team", "owner")
        .annotate(version_count=Count("versions"), latest_version=Max("versions__version"))
        .order_by("name")
    )
    filterset = RegisteredModelFilterSet(request.GET or None, queryset=queryset, request=request)
    style_filters(filterset.form)
    context = {
        "section": "models",
        "filterset": filterset,
        "page_obj": paginate(request, filterset.qs),
        "form": form,
        "may_create": may_create_in_any_team(request.user),
    }
    return render(request, "governance/model_list.html", context, status=status)


@login_required
def model_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """A model's versions side by side with their validation metrics, and its training jobs."""
    model = visible_or_404(request, RegisteredModel.objects.select_related("team", "owner"), pk)
    versions = list(
        ModelVersion.objects.restrict(request.user)
        .filter(model=model)
        .select_related("training_dataset_version__dataset")
    )
    columns = metric_columns(versions)
    context = {
        "section": "models",
        "model": model,
        "metric_columns": columns,
        "version_rows": [(v, [v.metrics.get(c) for c in columns]) for v in versions],
        # The reverse accessor keeps governance from importing runners (DESIGN: layers).
        "training_jobs": model.training_jobs.restrict(request.user).select_related(
            "created_by", "registered_model", "dataset_version__dataset"
        )[:10],
    }
    return render(request, "governance/model_detail.html", context)


# Audit trail ----------------------------------------------------------------------------------


@login_required
def audit_event_list(request: HttpRequest) -> HttpResponse:
    """Audit events newest first, filtered, in keyset pages (``?before=`` / ``?after=`` cursors,
    constant cost at any depth); an htmx request gets only the table.

    Invalid filters are a 400 listing no events, with the form's errors and no export links.
    """
    filterset = AuditEventFilterSet(
        request.GET or None,
        queryset=AuditEvent.objects.restrict(request.user).select_related("team"),
        request=request,
    )
    style_audit_filters(filterset.form, request.user)
    status = 200
    is_filter_valid = not filterset.is_bound or filterset.is_valid()
    if not is_filter_valid:
        # django-filter's .qs skips invalid filters, i.e. would list every event unfiltered.
        page, status = KeysetPage(rows=[], newer=None, older=None, is_first=True), 400
    else:
        try:
            page = keyset_page(
                filterset.qs, before=request.GET.get("before"), after=request.GET.get("after"), size=PAGE_SIZE
            )
        except InvalidCursor:
            messages.error(request, "That page link is broken; here are the newest events.")
            page, status = keyset_page(filterset.qs, size=PAGE_SIZE), 400
    filters = request.GET.copy()
    for cursor in ("before", "after"):
        filters.pop(cursor, None)
    context = {
        "section": "audit",
        "filterset": filterset,
        "page": page,
        "is_filter_valid": is_filter_valid,
        "export_query": filters.urlencode(),
        "may_audit": audit_tree.may_audit(request.user),
        "presets": [
            ("Role changes", "?action=membership."),
            ("Platform roles", "?action=platform_role."),
            ("Data registered", "?action=dataset_version."),
            ("Model versions", "?action=model_version."),
            ("Jobs", "?action=job."),
            ("Alerts", "?action=alert."),
        ],
    }
    if request.htmx:
        return render(request, "htmx/audit_table.html", context, status=status)
    return render(request, "governance/audit_event_list.html", context, status=status)


def _changes(before: dict | None, after: dict | None) -> list[dict[str, str]]:
    """Keys whose value differs between ``before`` and ``after``: added, removed or changed."""
    before, after = before or {}, after or {}
    rows = []
    for key in sorted(set(before) | set(after)):
        if key in before and key in after and before[key] == after[key]:
            continue
        change = "changed" if key in before and key in after else ("added" if key in after else "removed")
        rows.append(
            {
                "key": key,
                "change": change,
                "before": json.dumps(before[key], default=str) if key in before else "",
                "after": json.dumps(after[key], default=str) if key in after else "",
            }
        )
    return rows


@login_required
def audit_event_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """One event: who on behalf of whom, the object, before/after side by side, the changed keys,
    and whether it verifies against the latest signed checkpoint (``audit_tree.verify_event``)."""
    event = visible_or_404(request, AuditEvent.objects.select_related("team", "leaf", "personal_data"), pk)
    object_url = None
    if event.object_type in OBJECT_PAGES and event.object_id.isdigit():
        object_url = reverse(OBJECT_PAGES[event.object_type], args=[int(event.object_id)])
    context = {
        "section": "audit",
        "event": event,
        "object_url": object_url,
        "before_json": pretty_json(event.before) if event.before is not None else "",
        "after_json": pretty_json(event.after) if event.after is not None else "",
        "changes": _changes(event.before, event.after),
        "verification": audit_tree.verify_event(event),
        # Leaf indexes and tree sizes count every team's events: auditors only.
        "may_audit": audit_tree.may_audit(request.user),
    }
    return render(request, "governance/audit_event_detail.html", context)
