"""Job pages: submit training, inference and evaluation, follow a job live, cancel it."""

from __future__ import annotations

import datetime
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from governance.charts import Series, chart, step_table
from governance.models import Evaluation, ModelVersion, RegisteredModel
from governance.permissions import ALL_TEAMS, CHANGE, MANAGE, VIEW, can, team_scope
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
from runners import actions, budgets, schedules
from runners.accounting import budget_lines, month_labels, month_start, parse_month, storage_rows, usage_rows
from runners.filtersets import JobFilterSet, JobScheduleFilterSet
from runners.forms import (
    BudgetForm,
    EvaluationJobForm,
    InferenceJobForm,
    JobScheduleForm,
    PredictionTokenForm,
    ServingPolicyForm,
    TrainingJobForm,
)
from runners.models import Job, JobDatasetRole, JobKind, JobSchedule, JobState
from runners.permissions import may_cancel_job, may_change_job_schedule, may_release_job
from runners.queries import SERIES_POINTS_MAX, metric_curves

HISTORY_ORDER = ["epoch", "train_loss", "val_loss", "val_rmse", "val_mae", "val_r2", "val_accuracy"]
JOB_RELATIONS = (
    "created_by",
    "dataset_version__dataset",
    "registered_model",
    "model_version__model",
    "output_model_version__model",
    "output_dataset_version__dataset",
    "experiment",
    "schedule",
    "code_version__project",
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
        success_message=lambda job: f"Submitted {job}: {job.state_detail}.",
        template="runners/job_list.html",
        context=page,
    )


def _progress_context(request: HttpRequest, job: Job) -> dict:
    columns, rows = table_of(job.history, HISTORY_ORDER)
    evaluation = None
    if job.kind == JobKind.EVALUATE and job.state == JobState.SUCCEEDED:
        # The record the job wrote (issue 15); governance keeps the job's id, not a foreign key.
        evaluation = Evaluation.objects.restrict(request.user).filter(job_id=job.pk).first()
    return {
        "evaluation": evaluation,
        "job": job,
        "history_columns": columns,
        "history_rows": rows,
        "metrics": metric_rows(job.metrics),
        "may_change": may_cancel_job(request.user, job),
        "may_release": may_release_job(request.user, job),
    }


def _job_page(request: HttpRequest, job: Job, status: int = 200) -> HttpResponse:
    context = _progress_context(request, job) | {
        "section": "jobs",
        "spec_json": pretty_json(job.spec),
        "params_json": pretty_json(job.params),
        "run_inputs": job.run_inputs.select_related("dataset_version__dataset", "external_dataset"),
        "currency": settings.STEWARD_CURRENCY,
        "series_points_max": SERIES_POINTS_MAX,
        # The curves as they are now, as a table for screen readers and readers without JavaScript.
        "curve_table": step_table(metric_curves(job)) if job.kind != JobKind.INFER else None,
    }
    if job.kind == JobKind.CODE:
        context |= _code_run_context(request, job)
    return render(request, "runners/job_detail.html", context, status=status)


def _code_run_context(request: HttpRequest, job: Job) -> dict[str, Any]:
    """What a code run read and wrote, read only: its input and output dataset versions
    (``JobDataset``), the model versions it was given (``spec["models"]``, {name: id}) and those it
    registered (``source_job_id``). Versions the user may not view are left out."""
    given = (job.spec or {}).get("models") or {}
    ids = [pk for pk in given.values() if isinstance(pk, int) and not isinstance(pk, bool)]
    found = ModelVersion.objects.restrict(request.user).select_related("model").in_bulk(ids)
    datasets = list(job.datasets.select_related("dataset_version__dataset"))
    written = {item.name: item.dataset_version for item in datasets if item.role == JobDatasetRole.OUTPUT}
    # Outputs by the names the run was asked to write: those not registered yet show as such.
    asked = ((job.spec or {}).get("outputs") or {}).get("datasets") or []
    return {
        # By name: jsonb (PostgreSQL) keeps no order of the keys.
        "code_parameters": sorted(((job.spec or {}).get("parameters") or {}).items()),
        "code_inputs": [item for item in datasets if item.role == JobDatasetRole.INPUT],
        "code_outputs": [(name, written.get(name)) for name in [*asked, *sorted(set(written) - set(asked))]],
        "given_models": [(name, found.get(pk)) for name, pk in sorted(given.items())],
        "registered_versions": ModelVersion.objects.restrict(request.user)
        .filter(source_job_id=job.pk)
        .select_related("model")
        .order_by("model__name", "version"),
    }


@login_required
def job_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """A job's inputs and spec, and its live progress (polled while it runs); its log streams
    and its metrics plot by step (static/steward/job_log.js and charts.js poll the API)."""
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
def job_release(request: HttpRequest, pk: int) -> HttpResponse:
    """GET asks to confirm; POST releases a job its team's budget held (model owners)."""
    job = visible_or_404(request, Job.objects.select_related(*JOB_RELATIONS), pk)

    def refused(status: int) -> HttpResponse:
        job.refresh_from_db()
        return _job_page(request, job, status)

    return button_view(
        request,
        lambda: actions.do_release_job(job=job, actor=request.user),
        section="jobs",
        question=f"Release {job}?",
        explanation=f"{job.hold_reason}. Released, it is queued and runs, past the budget.",
        label="Release the job",
        back=job.get_absolute_url(),
        success_message=f"Released {job}; it starts when a worker picks it up.",
        refused=refused,
    )


def _month_param(request: HttpRequest) -> datetime.date:
    """``?month=YYYY-MM``, else this month; a malformed month shows this month with a message
    saying why (``runners.accounting.parse_month``)."""
    asked = request.GET.get("month")
    if not asked:
        return month_start()
    try:
        return parse_month(asked)
    except ValueError as exc:
        messages.error(request, f"month: {exc}; showing this month")
        return month_start()


# The usage page's chart: this many months up to the one shown, the teams that cost most.
USAGE_CHART_MONTHS = 12
USAGE_CHART_TEAMS = 10


def cost_chart(rows: list[dict[str, Any]], months: list[str]) -> dict[str, Any]:
    """Cost per team and month (``usage_rows`` grouped by team and month) as a line chart over
    ``months`` (``YYYY-MM``, oldest first): one series per team, the ``USAGE_CHART_TEAMS`` that
    cost most over them; a month without jobs costs 0."""
    cost: dict[str, dict[str, float]] = {}
    for row in rows:
        cost.setdefault(row["team"], {})[row["month"]] = row["cost"]
    teams = sorted(cost, key=lambda team: (-sum(cost[team].values()), team))[:USAGE_CHART_TEAMS]
    return chart(
        "line",
        x_label="month",
        x=list(range(len(months))),
        x_labels=months,
        series=[Series(team, [cost[team].get(month, 0.0) for month in months]) for team in teams],
        y_label=f"cost ({settings.STEWARD_CURRENCY})",
    )


@login_required
def usage(request: HttpRequest) -> HttpResponse:
    """A month's job cost per team and per model, and each team's budget line; POST sets a
    team's budget (its model owners and platform admins)."""
    month = _month_param(request)
    team_slug = request.GET.get("team") or None

    def page() -> dict[str, Any]:
        scope = team_scope(request.user, VIEW)
        lines = budget_lines(None if scope is ALL_TEAMS else sorted(scope))
        return {
            "section": "usage",
            "month": f"{month:%Y-%m}",
            "team_slug": team_slug or "",
            "per_team": usage_rows(request.user, group_by=["team"], month=month, team_slug=team_slug),
            "per_model": usage_rows(request.user, group_by=["model"], month=month, team_slug=team_slug),
            "storage": storage_rows(request.user, team_slug=team_slug),
            "cost_chart": cost_chart(
                usage_rows(
                    request.user,
                    group_by=["team", "month"],
                    month=month,
                    months=USAGE_CHART_MONTHS,
                    team_slug=team_slug,
                ),
                month_labels(month, USAGE_CHART_MONTHS),
            ),
            "usage_chart_months": USAGE_CHART_MONTHS,
            "usage_chart_teams": USAGE_CHART_TEAMS,
            "budgets": [line for line in lines if not team_slug or line["team"].slug == team_slug],
            "is_this_month": month == month_start(),
            "may_set_budget": bool(team_scope(request.user, MANAGE)),
        }

    form = BudgetForm(request.POST or None, user=request.user)
    return form_view(
        request,
        form,
        lambda data: budgets.do_set_budget(
            team=data["team"],
            monthly_limit=data["monthly_limit"],
            holds_jobs=data["holds_jobs"],
            actor=request.user,
        ),
        success=lambda budget: "usage",
        success_message=lambda budget: f"Budget of {budget.team} set to {budget.monthly_limit} a month.",
        template="runners/usage.html",
        context=page,
    )


def _model_version_job(
    request: HttpRequest, pk: int, kind: str, form_class: Any, title: str, submit: str
) -> HttpResponse:
    """A job of ``kind`` on model version ``pk`` and the dataset version its form names: the
    form's page on GET, ``do_submit_job`` on POST (inference and evaluation alike)."""
    model_version = visible_or_404(request, ModelVersion.objects.select_related("model"), pk)
    form = form_class(request.POST or None, user=request.user)
    return form_view(
        request,
        form,
        lambda data: actions.do_submit_job(
            kind=kind,
            dataset_version=data["dataset_version"],
            model_version=model_version,
            spec=form.spec(),
            actor=request.user,
        ),
        success_message=lambda job: f"Submitted {job}: {job.state_detail}.",
        template="generic/form.html",
        context=lambda: form_page(
            "models", f"{title} {model_version}", submit, model_version.get_absolute_url()
        ),
    )


@login_required
def model_version_infer(request: HttpRequest, pk: int) -> HttpResponse:
    """Predict a dataset version with a model version (an inference job); GET shows the form."""
    return _model_version_job(
        request, pk, JobKind.INFER, InferenceJobForm, "Run inference with", "Run inference"
    )


@login_required
def model_version_evaluate(request: HttpRequest, pk: int) -> HttpResponse:
    """Evaluate a model version on a dataset version (an evaluation job, issue 15), with the
    champion compared when an alias is named; GET shows the form."""
    return _model_version_job(request, pk, JobKind.EVALUATE, EvaluationJobForm, "Evaluate", "Evaluate")


SCHEDULE_RELATIONS = ("team", "dataset", "registered_model", "model_version__model", "last_job", "created_by")


@login_required
def job_schedule_list(request: HttpRequest) -> HttpResponse:
    """Recurring jobs the user may view; POST creates one."""

    def page() -> dict[str, Any]:
        queryset = JobSchedule.objects.restrict(request.user).select_related(*SCHEDULE_RELATIONS)
        return {
            "section": "jobs",
            **filtered_list(request, JobScheduleFilterSet, queryset),
            "filter_fields": ["kind", "team", "is_enabled"],
            "may_create": may_create_in_any_team(request.user),
        }

    form = JobScheduleForm(request.POST or None, user=request.user)
    return form_view(
        request,
        form,
        lambda data: schedules.do_create_job_schedule(actor=request.user, **form.options()),
        success_message=lambda schedule: (
            f"Created {schedule}; it fires on {schedule.cron} ({schedule.cron_timezone})."
        ),
        template="runners/job_schedule_list.html",
        context=page,
    )


@login_required
def job_schedule_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """A schedule's template, its last firing and the jobs it submitted."""
    schedule = visible_or_404(request, JobSchedule.objects.select_related(*SCHEDULE_RELATIONS), pk)
    context = {
        "section": "jobs",
        "schedule": schedule,
        "spec_json": pretty_json(schedule.spec),
        "jobs": schedule.jobs.select_related(*JOB_RELATIONS)[:20],
        "may_change": may_change_job_schedule(request.user, schedule),
    }
    return render(request, "runners/job_schedule_detail.html", context)


# verb: (label, action, success message)
SCHEDULE_BUTTONS = {
    "pause": ("Pause", schedules.do_pause_job_schedule, "Paused {schedule}: it stops firing."),
    "resume": ("Resume", schedules.do_resume_job_schedule, "Resumed {schedule}."),
    "delete": ("Delete", schedules.do_delete_job_schedule, "Deleted {schedule}."),
}


@login_required
def job_schedule_button(request: HttpRequest, pk: int, verb: str) -> HttpResponse:
    """GET asks to confirm; POST pauses, resumes or deletes the schedule."""
    schedule = visible_or_404(request, JobSchedule.objects.select_related(*SCHEDULE_RELATIONS), pk)
    label, action, message = SCHEDULE_BUTTONS[verb]
    return button_view(
        request,
        lambda: action(schedule=schedule, actor=request.user),
        section="jobs",
        question=f"{label} {schedule}?",
        explanation="The jobs it submitted stay." if verb == "delete" else "",
        label=label,
        back=schedule.get_absolute_url(),
        success_message=message.format(schedule=schedule),
        success=lambda _: "job_schedule_list" if verb == "delete" else schedule.get_absolute_url(),
    )


@login_required
def model_serving(request: HttpRequest, pk: int) -> HttpResponse:
    """A model's online serving (issue 17): its aliases' policies, the predict URLs; POST sets a
    policy (``do_set_serving_policy``); a second form creates a prediction token."""
    from runners.serving.actions import do_set_serving_policy

    model = visible_or_404(request, RegisteredModel.objects.select_related("team"), pk)
    if request.method == "POST":
        form = ServingPolicyForm(request.POST, model=model)
    else:
        form = _policy_form(model, request.GET.get("alias"))
    return form_view(
        request,
        form,
        lambda data: do_set_serving_policy(registered_model=model, actor=request.user, **data),
        success=lambda policy: f"{model_serving_url(model)}?{urlencode({'alias': policy.alias})}",
        success_message=lambda policy: f"Serving of {model.name}@{policy.alias} set.",
        render_page=lambda form, status: _serving_page(
            request, model, form, PredictionTokenForm(), None, status
        ),
    )


def model_serving_url(model: RegisteredModel) -> str:
    from django.urls import reverse

    return reverse("model_serving", args=[model.pk])


def _policy_form(model: RegisteredModel, alias: str | None = None) -> ServingPolicyForm:
    """The unbound policy form of ``alias`` (``production`` when not given) filled with its current
    policy: resubmitting it unchanged keeps the canary and the shadow rather than clearing them."""
    from runners.models import ServingPolicy

    alias = (alias or "").strip() or "production"
    policy = ServingPolicy.objects.filter(registered_model=model, alias=alias).first()
    initial: dict[str, Any] = {"alias": alias}
    if policy is not None:
        initial |= {
            "canary_version": policy.canary_version_id,
            "canary_percent": policy.canary_percent,
            "shadow_version": policy.shadow_version_id,
        }
    return ServingPolicyForm(model=model, initial=initial)


def _serving_page(request, model, form, token_form, created, status: int) -> HttpResponse:
    from governance.models import ModelAlias
    from runners.models import ServingPolicy

    response = render(
        request,
        "runners/model_serving.html",
        {
            "section": "models",
            "model": model,
            "form": form,
            "token_form": token_form,
            "aliases": ModelAlias.objects.filter(model=model).select_related("model_version"),
            "policies": ServingPolicy.objects.filter(registered_model=model).select_related(
                "canary_version", "shadow_version", "updated_by"
            ),
            "new_token": created[0] if created else None,
            "new_secret": created[1] if created else None,
            # The actions decide; these only spare a form that would be refused.
            "may_set_policy": can(request.user, CHANGE, model.team_id),
            "may_create_token": can(request.user, MANAGE, model.team_id),
        },
        status=status,
    )
    if created:
        response["Cache-Control"] = "no-store"
    return response


@login_required
def prediction_token_create(request: HttpRequest, pk: int) -> HttpResponse:
    """POST: a token that may only predict with this model; its secret is shown on this answer only."""
    from governance.actions.tokens import do_create_prediction_token

    model = visible_or_404(request, RegisteredModel.objects.select_related("team"), pk)
    token_form = PredictionTokenForm(request.POST or None)

    def create(data: dict[str, Any]):
        days = data.get("expires_in_days")
        expires_at = timezone.now() + datetime.timedelta(days=days) if days else None
        return do_create_prediction_token(
            registered_model=model, name=data["name"], expires_at=expires_at, actor=request.user
        )

    return form_view(
        request,
        token_form,
        create,
        success=lambda created: _serving_page(
            request, model, _policy_form(model), PredictionTokenForm(), created, 200
        ),
        render_page=lambda form, status: _serving_page(
            request, model, _policy_form(model), form, None, status
        ),
    )
