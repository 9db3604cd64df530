"""What every UI view shares: the restricted lookup, running an action behind a form or a button,
pagination and the small formatting helpers of the pages.

Views parse input, call an action, render. Every object comes through
``Model.objects.restrict(request.user)``, so another team's object is a 404; an action's refusal
re-renders the page with the reason and the status ``governance.errors`` gives it, never a 500.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, cast

from django import forms
from django.contrib import messages
from django.core.paginator import Page, Paginator
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render

from governance.errors import DETAIL, error_answer
from governance.forms import style_filters
from governance.models import ModelVersion, RegisteredModel, Team
from governance.permissions import CHANGE, VIEW, restrict

if TYPE_CHECKING:
    from django.contrib.auth.models import AnonymousUser, User

T = TypeVar("T")
PAGE_SIZE = 50
# Metrics worth a column, in the order a reader compares models; anything else follows.
METRIC_ORDER = ["rmse", "mae", "r2", "accuracy", "log_loss", "loss"]
HIDDEN_METRICS = {"train_rows", "validation_rows"}


def visible_or_404(request: HttpRequest, queryset: QuerySet, pk: int) -> Any:
    """The row ``pk`` of ``queryset`` if ``request.user`` may view it (``permissions.restrict``:
    team-owned rows, users, platform role grants, API tokens), else Http404."""
    return get_object_or_404(restrict(queryset, request.user, VIEW), pk=pk)


def visible_model_or_404(request: HttpRequest, pk: int) -> RegisteredModel:
    """The registered model ``pk``, not deleted, if ``request.user`` may view it; else Http404
    ("no such model": the API's answer for a model that is absent or not the caller's to see)."""
    model = (
        restrict(RegisteredModel.objects.filter(deleted_at__isnull=True), request.user, VIEW)
        .filter(pk=pk)
        .first()
    )
    if model is None:
        raise Http404("no such model")
    return model


def _add_errors(form: forms.Form, errors: Mapping[str, list[str]]) -> None:
    """Attach an action's errors to the form fields they name, others to the whole form. A message
    keyed by something the form lacks but starting ``"<field>: "`` goes to that field: the training
    spec's errors arrive as ``{"spec": ["epochs: must be between ..."]}``."""
    for key, field_errors in errors.items():
        for message in field_errors:
            prefix = message.split(":", 1)[0]
            field = key if key in form.fields else prefix if prefix in form.fields else None
            form.add_error(None if key == DETAIL else field, message)


def call_action(form: forms.Form, action: Callable[[], T]) -> tuple[T | None, int]:
    """Run ``action()``; on a domain error (``governance.errors``) attach the reason to ``form``.

    Returns ``(result, 200)`` on success, else ``(None, status)``: 403 for PermissionDenied,
    400 for ValidationError or an invalid data file, 409 for a concurrent change.
    """
    try:
        return action(), 200
    except Exception as exc:
        answer = error_answer(exc)
        if answer is None:
            raise
        _add_errors(form, answer.messages_by_field())
        return None, answer.status


def perform(request: HttpRequest, action: Callable[[], Any], success: str) -> int:
    """Run a button's ``action()`` and report the outcome as a flash message.

    Returns 200 when it succeeded, else the status ``governance.errors`` gives the refusal.
    """
    try:
        action()
    except Exception as exc:
        answer = error_answer(exc)
        if answer is None:
            raise
        found = answer.messages_by_field().values()
        messages.error(request, " ".join(message for field in found for message in field))
        return answer.status
    messages.success(request, success)
    return 200


def form_view(
    request: HttpRequest,
    form: forms.Form,
    action: Callable[[dict[str, Any]], T],
    *,
    success: Callable[[T], Any] | None = None,
    success_message: Callable[[T], str] | None = None,
    template: str | None = None,
    context: Callable[[], dict[str, Any]] | None = None,
    render_page: Callable[[forms.Form, int], HttpResponse] | None = None,
    also: Sequence[forms.Form | forms.BaseFormSet] = (),
) -> HttpResponse:
    """The one shape of a UI form page: GET shows the form, POST validates it, runs the action,
    and redirects on success or re-renders the page with the reasons.

    ``form`` is bound to ``request.POST`` (and ``FILES``) on POST, unbound on GET.
    ``action(cleaned_data)`` calls a ``do_<verb>_<noun>`` action and returns its result; a domain
    error (``governance.errors``) lands on the form's fields with its status (400, 403, 409), an
    invalid form is a 400 without calling it. On success ``success_message(result)`` is flashed
    and ``success(result)`` is answered (default: a redirect to the result): anything
    ``redirect()`` takes (a model, a URL name, a URL) or an HttpResponse. The page is either
    ``template`` rendered with ``context()`` plus ``form`` (``context`` is called only when the
    page is shown, so its queries are not made for a redirect) or, for pages with their own
    renderer, ``render_page(form, status)``.
    ``also`` are further forms or formsets posted with ``form`` (an escalation policy's levels):
    every one must be valid before the action runs.
    """
    if render_page is None:
        if template is None:
            raise TypeError("form_view needs template= or render_page=")

        def render_page(form: forms.Form, status: int) -> HttpResponse:
            page = dict(context() if context else {}, form=form)
            return render(request, template, page, status=status)

    if request.method != "POST":
        return render_page(form, 200)
    if not all(each.is_valid() for each in (form, *also)):
        return render_page(form, 400)
    result, status = call_action(form, lambda: action(form.cleaned_data))
    if status != 200:
        return render_page(form, status)
    done = cast(T, result)  # status 200: the action returned
    if success_message is not None:
        messages.success(request, success_message(done))
    answer = success(done) if success is not None else done
    return answer if isinstance(answer, HttpResponse) else redirect(answer)


def form_page(section: str, title: str, submit_label: str, back: str) -> dict[str, Any]:
    """The context of ``generic/form.html`` (plus ``form``, which ``form_view`` adds)."""
    return {"section": section, "title": title, "submit_label": submit_label, "cancel_url": back}


def button_view(
    request: HttpRequest,
    action: Callable[[], T],
    *,
    section: str,
    question: str,
    explanation: str = "",
    label: str,
    back: str,
    success_message: str,
    success: Callable[[T], Any] | None = None,
    refused: Callable[[int], HttpResponse] | None = None,
) -> HttpResponse:
    """The one shape of a button that changes state: GET asks first (``confirm_page``), POST runs
    ``action()`` through ``perform`` (the outcome as a flash message).

    On success the answer redirects to ``success(result)`` (anything ``redirect()`` takes), else to
    ``back``; on a refusal it is ``refused(status)`` (the object's page re-rendered with the
    status ``governance.errors`` gives), else a redirect to ``back``.
    """
    if request.method != "POST":
        return confirm_page(request, section, question, explanation, label, back)
    results: list[T] = []
    status = perform(request, lambda: results.append(action()), success_message)
    if status == 200:
        return redirect(success(results[0]) if success is not None else back)
    return refused(status) if refused is not None else redirect(back)


def confirm_page(
    request: HttpRequest, section: str, question: str, explanation: str, label: str, back: str
) -> HttpResponse:
    """``generic/confirm.html``: the GET of a button that changes state asks first."""
    context = {
        "section": section,
        "question": question,
        "explanation": explanation,
        "confirm_label": label,
        "cancel_url": back,
    }
    return render(request, "generic/confirm.html", context)


def paginate(request: HttpRequest, queryset: QuerySet, per_page: int = PAGE_SIZE) -> Page:
    """The page of ``queryset`` named by ``?page=`` (the last page when out of range)."""
    return Paginator(queryset, per_page).get_page(request.GET.get("page"))


def filtered_list(
    request: HttpRequest, filterset_class: type, queryset: QuerySet, data: Any = None
) -> dict[str, Any]:
    """A list page's ``filterset`` (``data``, default the query string) and ``page_obj``."""
    filterset = filterset_class(data or request.GET or None, queryset=queryset, request=request)
    style_filters(filterset.form)
    return {"filterset": filterset, "page_obj": paginate(request, filterset.qs)}


def may_create_in_any_team(user: User | AnonymousUser) -> bool:
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
