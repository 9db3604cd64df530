"""Tracking endpoints of Steward's MLflow API (issue 9): experiments, runs, metric history,
inputs and logged models. A run is a tracked run or a code run (issue 17, ``mlflow_runs``); the
endpoints a job token may call say ``for_job_token`` and keep to its scope
(``governance.job_scope``). Thin: parse the client's fields, look the object up among those the
user may view (an invisible one is RESOURCE_DOES_NOT_EXIST), call ``runners.tracking``'s action,
answer MLflow's JSON. Authentication, parsing and the error body are governance's
(``governance.api.mlflow.base``)."""

from __future__ import annotations

import re
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Q
from django.http import HttpRequest

from governance.actions.teams import TEAM_TAG, default_team
from governance.api.mlflow.base import (
    InvalidParameterValue,
    Params,
    ResourceAlreadyExists,
    ResourceDoesNotExist,
    int_param,
    job_scope,
    mlflow_endpoint,
    optional_str,
    param_list,
    require,
)
from governance.names import name_key
from runners import tracking
from runners.api.mlflow.serialize import (
    experiment_json,
    logged_model_json,
    metric_json,
    page_offset,
    page_token,
    run_info_json,
    run_json,
)
from runners.models import Experiment, Job, LifecycleStage, LoggedModel, LoggedModelStatus
from runners.tracking import STATE_TO_STATUS, mlflow_runs

SEARCH_MAX = 1000
HISTORY_MAX = 25_000


# --- lookups -------------------------------------------------------------------------------


def _experiment(request: HttpRequest, experiment_id: Any) -> Experiment:
    raw = str(experiment_id)
    pk = tracking.decimal_pk(raw)
    scope = job_scope(request)
    if scope is not None:
        scope.ensure_experiment(pk, raw)
    experiment = Experiment.objects.restrict(request.user).filter(pk=pk).first() if pk is not None else None
    if experiment is None:
        raise ResourceDoesNotExist(f"No experiment with id={raw[:100]} that you may see.")
    return experiment


def _run(request: HttpRequest, params: Params) -> Job:
    run_id = params.get("run_id") or params.get("run_uuid")
    if not run_id or not isinstance(run_id, str):
        raise InvalidParameterValue("Missing value for required parameter 'run_id'.")
    scope = job_scope(request)
    if scope is not None:
        scope.ensure_run(tracking.run_pk(run_id), run_id)
    job = (
        mlflow_runs()
        .restrict(request.user)
        .select_related("created_by")
        .filter(pk=tracking.run_pk(run_id) or 0)
        .first()
    )
    if job is None:
        raise ResourceDoesNotExist(f"Run with id={run_id[:100]} not found.")
    return job


def _logged_model(request: HttpRequest, model_id: str) -> LoggedModel:
    model = (
        LoggedModel.objects.restrict(request.user)
        .select_related("source_run")
        .filter(pk=model_id, deleted_at__isnull=True)
        .first()
    )
    scope = job_scope(request)
    if scope is not None:
        # Missing or another run's: the same refusal, so a job token learns nothing of others.
        scope.ensure_output(model.source_run_id if model else None, f"logged model {model_id[:100]!r}")
    if model is None:
        raise ResourceDoesNotExist(f"Logged model with id={model_id[:100]} not found.")
    return model


def _tags(params: Params, field: str = "tags") -> dict[str, Any]:
    tags = {}
    for tag in param_list(params, field):
        if not isinstance(tag, dict) or not isinstance(tag.get("key"), str):
            raise InvalidParameterValue(f"Each of '{field}' is an object with a key and a value.")
        tags[tag["key"]] = tag.get("value", "")
    return tags


# --- experiments ---------------------------------------------------------------------------


@mlflow_endpoint("POST")
def create_experiment(request: HttpRequest, params: Params) -> dict:
    try:
        experiment = tracking.do_create_experiment(
            name=require(params, "name"),
            tags=_tags(params),
            artifact_location=optional_str(params, "artifact_location"),
            actor=request.user,
        )
    except tracking.NameTaken as exc:
        raise ResourceAlreadyExists(" ".join(exc.messages)) from None
    return {"experiment_id": str(experiment.pk)}


@mlflow_endpoint("GET", for_job_token=True)
def get_experiment(request: HttpRequest, params: Params) -> dict:
    return {"experiment": experiment_json(_experiment(request, require(params, "experiment_id")))}


@mlflow_endpoint("GET", for_job_token=True)
def get_experiment_by_name(request: HttpRequest, params: Params) -> dict:
    name = require(params, "experiment_name")
    experiments = Experiment.objects.restrict(request.user)
    scope = job_scope(request)
    if scope is not None:
        experiments = experiments.filter(pk=scope.experiment_id or 0)
        if not experiments.filter(name_key=name_key(name)).exists():
            raise scope.refuse(f"experiment {name[:100]!r} is not its run's")
    found = list(experiments.filter(name_key=name_key(name))[:10])
    if len(found) > 1:
        # The same name in several of the user's teams: the default team's wins, else say why.
        try:
            team = default_team(request.user)
        except (ValidationError, PermissionDenied):  # no single default team: see the message below
            team = None
        found = [e for e in found if team is not None and e.team_id == team.pk] or found
        if len(found) > 1:
            raise InvalidParameterValue(
                f"Several of your teams have an experiment named {name!r}; use its id, or create "
                f"experiments with the tag {TEAM_TAG} in one team only."
            )
    if not found:
        raise ResourceDoesNotExist(f"Could not find experiment with name '{name}'.")
    return {"experiment": experiment_json(found[0])}


def _view_type_filter(view_type: str) -> Q:
    if view_type in ("", "ACTIVE_ONLY", "1"):
        return Q(lifecycle_stage=LifecycleStage.ACTIVE)
    if view_type in ("DELETED_ONLY", "2"):
        return Q(lifecycle_stage=LifecycleStage.DELETED)
    if view_type in ("ALL", "3"):
        return Q()
    raise InvalidParameterValue(f"Invalid view_type {view_type!r}: ACTIVE_ONLY, DELETED_ONLY or ALL.")


EXPERIMENT_FILTER = re.compile(
    r"^\s*(?:attribute\.|attributes\.)?name\s+(=|!=|LIKE|ILIKE)\s+'((?:[^'\\]|\\.)*)'\s*$", re.IGNORECASE
)


@mlflow_endpoint("POST", "GET", writes=False, for_job_token=True)
def search_experiments(request: HttpRequest, params: Params) -> dict:
    experiments = Experiment.objects.restrict(request.user).filter(
        _view_type_filter(str(params.get("view_type") or ""))
    )
    scope = job_scope(request)
    if scope is not None:
        experiments = experiments.filter(pk=scope.experiment_id or 0)  # its own experiment only
    text = optional_str(params, "filter")
    if text:
        # The filter the client's set_experiment/search by name sends; anything else is refused,
        # not ignored.
        match = EXPERIMENT_FILTER.match(text)
        if match is None:
            raise InvalidParameterValue(
                f"Unsupported experiment filter {text[:200]!r}: only name comparisons."
            )
        op, value = match.group(1).upper(), match.group(2)
        experiments = _string_filter(experiments, "name", op, value)
    max_results = int_param(params, "max_results", 1000)
    if not 1 <= max_results <= 50_000:
        raise InvalidParameterValue("max_results must be between 1 and 50000.")
    offset = page_offset(optional_str(params, "page_token"))
    page = list(experiments.order_by("-created_at", "-id")[offset : offset + max_results + 1])
    answer: dict[str, Any] = {"experiments": [experiment_json(e) for e in page[:max_results]]}
    if len(page) > max_results:
        answer["next_page_token"] = page_token(offset + max_results)
    return answer


def _like_regex(pattern: str) -> str:
    return "^" + "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern) + "$"


def _string_filter(queryset, field: str, op: str, value: str):
    if op == "=":
        return queryset.filter(**{field: value})
    if op == "!=":
        return queryset.exclude(**{field: value})
    lookup = "regex" if op == "LIKE" else "iregex"
    return queryset.filter(**{f"{field}__{lookup}": _like_regex(value)})


@mlflow_endpoint("POST")
def update_experiment(request: HttpRequest, params: Params) -> dict:
    experiment = _experiment(request, require(params, "experiment_id"))
    try:
        tracking.do_rename_experiment(
            experiment=experiment, new_name=require(params, "new_name"), actor=request.user
        )
    except tracking.NameTaken as exc:
        raise ResourceAlreadyExists(" ".join(exc.messages)) from None
    return {}


@mlflow_endpoint("POST")
def delete_experiment(request: HttpRequest, params: Params) -> dict:
    experiment = _experiment(request, require(params, "experiment_id"))
    tracking.do_set_experiment_lifecycle(experiment=experiment, deleted=True, actor=request.user)
    return {}


@mlflow_endpoint("POST")
def restore_experiment(request: HttpRequest, params: Params) -> dict:
    experiment = _experiment(request, require(params, "experiment_id"))
    tracking.do_set_experiment_lifecycle(experiment=experiment, deleted=False, actor=request.user)
    return {}


@mlflow_endpoint("POST")
def set_experiment_tag(request: HttpRequest, params: Params) -> dict:
    experiment = _experiment(request, require(params, "experiment_id"))
    tracking.do_set_experiment_tag(
        experiment=experiment,
        key=require(params, "key"),
        value=optional_str(params, "value"),
        actor=request.user,
    )
    return {}


@mlflow_endpoint("POST")
def delete_experiment_tag(request: HttpRequest, params: Params) -> dict:
    experiment = _experiment(request, require(params, "experiment_id"))
    tracking.do_set_experiment_tag(
        experiment=experiment, key=require(params, "key"), value=None, actor=request.user
    )
    return {}


# --- runs ----------------------------------------------------------------------------------


def _optional_int(params: Params, name: str) -> int | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    return int_param(params, name, 0)


@mlflow_endpoint("POST")
def create_run(request: HttpRequest, params: Params) -> dict:
    experiment = _experiment(request, require(params, "experiment_id"))
    job = tracking.do_start_run(
        experiment=experiment,
        run_name=optional_str(params, "run_name"),
        start_time_ms=_optional_int(params, "start_time"),
        tags=_tags(params),
        actor=request.user,
    )
    return {"run": run_json(job)}


@mlflow_endpoint("GET", for_job_token=True)
def get_run(request: HttpRequest, params: Params) -> dict:
    return {"run": run_json(_run(request, params))}


@mlflow_endpoint("POST", for_job_token=True)
def update_run(request: HttpRequest, params: Params) -> dict:
    job = tracking.do_update_run(
        job=_run(request, params),
        status=optional_str(params, "status") or None,
        end_time_ms=_optional_int(params, "end_time"),
        run_name=optional_str(params, "run_name") or None,
        actor=request.user,
    )
    return {"run_info": run_info_json(job)}


@mlflow_endpoint("POST")
def delete_run(request: HttpRequest, params: Params) -> dict:
    tracking.do_set_run_lifecycle(job=_run(request, params), deleted=True, actor=request.user)
    return {}


@mlflow_endpoint("POST")
def restore_run(request: HttpRequest, params: Params) -> dict:
    tracking.do_set_run_lifecycle(job=_run(request, params), deleted=False, actor=request.user)
    return {}


@mlflow_endpoint("POST", for_job_token=True)
def log_metric(request: HttpRequest, params: Params) -> dict:
    metric = {k: params.get(k) for k in ("key", "value", "timestamp", "step")}
    tracking.do_log_batch(job=_run(request, params), metrics=[metric], actor=request.user)
    return {}


@mlflow_endpoint("POST", for_job_token=True)
def log_param(request: HttpRequest, params: Params) -> dict:
    param = {"key": require(params, "key"), "value": params.get("value")}
    tracking.do_log_batch(job=_run(request, params), params=[param], actor=request.user)
    return {}


@mlflow_endpoint("POST", for_job_token=True)
def set_tag(request: HttpRequest, params: Params) -> dict:
    tag = {"key": require(params, "key"), "value": params.get("value")}
    tracking.do_log_batch(job=_run(request, params), tags=[tag], actor=request.user)
    return {}


@mlflow_endpoint("POST", for_job_token=True)
def delete_tag(request: HttpRequest, params: Params) -> dict:
    tracking.do_delete_run_tag(job=_run(request, params), key=require(params, "key"), actor=request.user)
    return {}


@mlflow_endpoint("POST", for_job_token=True)
def log_batch(request: HttpRequest, params: Params) -> dict:
    tracking.do_log_batch(
        job=_run(request, params),
        metrics=param_list(params, "metrics"),
        params=param_list(params, "params"),
        tags=param_list(params, "tags"),
        actor=request.user,
    )
    return {}


@mlflow_endpoint("POST", for_job_token=True)
def log_inputs(request: HttpRequest, params: Params) -> dict:
    tracking.do_log_inputs(
        job=_run(request, params), datasets=param_list(params, "datasets"), actor=request.user
    )
    return {}


@mlflow_endpoint("POST", for_job_token=True)
def log_outputs(request: HttpRequest, params: Params) -> dict:
    # A logged model's run is recorded when the model is created (source_run_id); the outputs
    # call only confirms it, so it checks the models belong to the run and changes nothing.
    job = _run(request, params)
    for output in param_list(params, "models"):
        model_id = output.get("model_id") if isinstance(output, dict) else None
        if not isinstance(model_id, str) or _logged_model(request, model_id).source_run_id != job.pk:
            raise InvalidParameterValue(
                f"Model output {str(model_id)[:100]!r} is not a logged model of this run."
            )
    return {}


@mlflow_endpoint("POST", for_job_token=True)
def log_model(request: HttpRequest, params: Params) -> dict:
    # MLflow 2's run-level model record (an "mlflow.log-model.history" tag): kept as that tag.
    job = _run(request, params)
    model_json = optional_str(params, "model_json")
    history = job.tags.get("mlflow.log-model.history", "")
    value = f"[{model_json}]" if not history else history[:-1] + f", {model_json}]"
    tracking.do_log_batch(
        job=job, tags=[{"key": "mlflow.log-model.history", "value": value}], actor=request.user
    )
    return {}


@mlflow_endpoint("GET", for_job_token=True)
def get_metric_history(request: HttpRequest, params: Params) -> dict:
    job = _run(request, params)
    key = require(params, "metric_key")
    max_results = int_param(params, "max_results", HISTORY_MAX)
    if not 1 <= max_results <= HISTORY_MAX:
        raise InvalidParameterValue(f"max_results must be between 1 and {HISTORY_MAX}.")
    offset = page_offset(optional_str(params, "page_token"))
    points = list(
        job.metric_history.filter(key=key).order_by("step", "timestamp_ms", "id")[
            offset : offset + max_results + 1
        ]
    )
    answer: dict[str, Any] = {"metrics": [metric_json(p) for p in points[:max_results]]}
    if len(points) > max_results:
        answer["next_page_token"] = page_token(offset + max_results)
    return answer


RUN_CLAUSE = re.compile(
    r"""\s*(?P<kind>attributes?|tags?|params?|metrics?)\.(?P<key>`[^`]+`|[\w.\-]+)\s*
    (?P<op>=|!=|<=|>=|<|>|LIKE|ILIKE)\s*
    (?P<value>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|-?\d+(?:\.\d*)?(?:[eE]-?\d+)?)\s*(?:AND\s+|$)""",
    re.IGNORECASE | re.VERBOSE,
)
RUN_ATTRIBUTES = ("run_name", "run_id", "status")


def _run_filter(text: str) -> list[tuple[str, str, str, str]]:
    """``[(kind, key, op, value)]`` of a filter of clauses joined by AND (MLflow's search syntax,
    the subset Steward evaluates); anything else is INVALID_PARAMETER_VALUE."""
    clauses, position = [], 0
    while position < len(text):
        match = RUN_CLAUSE.match(text, position)
        if match is None:
            raise InvalidParameterValue(f"Unsupported run filter at {text[position : position + 60]!r}.")
        value = match["value"]
        clauses.append(
            (match["kind"].lower().rstrip("s"), match["key"].strip("`"), match["op"].upper(), value)
        )
        position = match.end()
    return clauses


def _run_matches(job: Job, clauses: list[tuple[str, str, str, str]]) -> bool:
    for kind, key, op, raw in clauses:
        if kind == "metric":
            current = job.metrics.get(key)
            if not isinstance(current, int | float) or raw[0] in "'\"":
                return False
            wanted: Any = float(raw)
        else:
            wanted = raw[1:-1] if raw[0] in "'\"" else raw
            if kind == "attribute":
                if key not in RUN_ATTRIBUTES:
                    raise InvalidParameterValue(
                        f"Unsupported run attribute {key!r}: {', '.join(RUN_ATTRIBUTES)}."
                    )
                current = {
                    "run_name": job.run_name,
                    "run_id": job.mlflow_run_id,
                    "status": STATE_TO_STATUS[job.state],
                }[key]
            else:
                current = (job.params if kind == "param" else job.tags).get(key)
            if current is None:
                return op == "!="
        if op in ("LIKE", "ILIKE"):
            flags = re.IGNORECASE if op == "ILIKE" else 0
            if not re.match(_like_regex(str(wanted)), str(current), flags):
                return False
        elif not {
            "=": current == wanted,
            "!=": current != wanted,
            "<": current < wanted,
            "<=": current <= wanted,
            ">": current > wanted,
            ">=": current >= wanted,
        }[op]:
            return False
    return True


@mlflow_endpoint("POST", writes=False, for_job_token=True)
def search_runs(request: HttpRequest, params: Params) -> dict:
    ids = [str(i) for i in param_list(params, "experiment_ids")]
    experiments = [_experiment(request, i).pk for i in ids]
    view_type = str(params.get("run_view_type") or "ACTIVE_ONLY")
    jobs = mlflow_runs().restrict(request.user).filter(experiment_id__in=experiments)
    scope = job_scope(request)
    if scope is not None:
        jobs = jobs.filter(pk=scope.job_id)  # its own run only
    if view_type in ("ACTIVE_ONLY", "1"):
        jobs = jobs.filter(deleted_at__isnull=True)
    elif view_type in ("DELETED_ONLY", "2"):
        jobs = jobs.filter(deleted_at__isnull=False)
    elif view_type not in ("ALL", "3"):
        raise InvalidParameterValue(f"Invalid run_view_type {view_type!r}.")
    if param_list(params, "order_by"):
        raise InvalidParameterValue("order_by is not supported for runs; runs come newest first.")
    max_results = int_param(params, "max_results", 1000)
    if not 1 <= max_results <= 50_000:
        raise InvalidParameterValue("max_results must be between 1 and 50000.")
    clauses = _run_filter(optional_str(params, "filter"))
    offset = page_offset(optional_str(params, "page_token"))
    matching = [
        job
        for job in jobs.select_related("created_by").order_by("-started_at", "-id")
        if _run_matches(job, clauses)
    ]
    page = matching[offset : offset + max_results]
    answer: dict[str, Any] = {"runs": [run_json(job) for job in page]}
    if len(matching) > offset + max_results:
        answer["next_page_token"] = page_token(offset + max_results)
    return answer


# --- logged models (MLflow 3) --------------------------------------------------------------


def _params_dict(params: Params, field: str = "params") -> dict[str, Any]:
    return _tags(params, field)


@mlflow_endpoint("POST", for_job_token=True)
def create_logged_model(request: HttpRequest, params: Params) -> dict:
    experiment = _experiment(request, require(params, "experiment_id"))
    run_id = optional_str(params, "source_run_id")
    scope = job_scope(request)
    if scope is not None and not run_id:
        raise scope.refuse("a logged model it creates names its run as source_run_id")
    source_run = _run(request, {"run_id": run_id}) if run_id else None
    model = tracking.do_create_logged_model(
        experiment=experiment,
        name=optional_str(params, "name"),
        source_run=source_run,
        model_type=optional_str(params, "model_type"),
        params=_params_dict(params),
        tags=_tags(params),
        actor=request.user,
    )
    return {"model": logged_model_json(model)}


@mlflow_endpoint("GET", for_job_token=True)
def get_logged_model(request: HttpRequest, params: Params) -> dict:
    return {"model": logged_model_json(_logged_model(request, params["model_id"]))}


@mlflow_endpoint("PATCH", for_job_token=True)
def finalize_logged_model(request: HttpRequest, params: Params) -> dict:
    status = params.get("status")
    if isinstance(status, int):
        # The proto's enum number: 1 pending, 2 ready, 3 upload failed.
        status = {
            1: LoggedModelStatus.PENDING,
            2: LoggedModelStatus.READY,
            3: LoggedModelStatus.UPLOAD_FAILED,
        }.get(status)
    model = tracking.do_finalize_logged_model(
        model=_logged_model(request, params["model_id"]), status=str(status), actor=request.user
    )
    return {"model": logged_model_json(model)}


@mlflow_endpoint("DELETE", for_job_token=True)
def delete_logged_model(request: HttpRequest, params: Params) -> dict:
    tracking.do_delete_logged_model(model=_logged_model(request, params["model_id"]), actor=request.user)
    return {}


@mlflow_endpoint("PATCH", for_job_token=True)
def set_logged_model_tags(request: HttpRequest, params: Params) -> dict:
    tracking.do_update_logged_model(
        model=_logged_model(request, params["model_id"]), set_tags=_tags(params), actor=request.user
    )
    return {}


@mlflow_endpoint("DELETE", for_job_token=True)
def delete_logged_model_tag(request: HttpRequest, params: Params) -> dict:
    tracking.do_update_logged_model(
        model=_logged_model(request, params["model_id"]), delete_tag=params["tag_key"], actor=request.user
    )
    return {}


@mlflow_endpoint("POST", for_job_token=True)
def log_logged_model_params(request: HttpRequest, params: Params) -> dict:
    tracking.do_update_logged_model(
        model=_logged_model(request, params["model_id"]), params=_params_dict(params), actor=request.user
    )
    return {}


LOGGED_MODEL_FILTER = re.compile(
    r"\s*(?P<key>name|source_run_id|status)\s*=\s*'(?P<value>(?:[^'\\]|\\.)*)'\s*(?:AND\s+|$)", re.IGNORECASE
)


@mlflow_endpoint("POST", writes=False, for_job_token=True)
def search_logged_models(request: HttpRequest, params: Params) -> dict:
    ids = [str(i) for i in param_list(params, "experiment_ids")]
    models = LoggedModel.objects.restrict(request.user).filter(
        experiment_id__in=[_experiment(request, i).pk for i in ids], deleted_at__isnull=True
    )
    scope = job_scope(request)
    if scope is not None:
        models = models.filter(source_run_id=scope.job_id)  # its own logged models only
    text, position = optional_str(params, "filter"), 0
    while position < len(text):
        match = LOGGED_MODEL_FILTER.match(text, position)
        if match is None:
            raise InvalidParameterValue(
                f"Unsupported logged model filter at {text[position : position + 60]!r}."
            )
        key, value = match["key"].lower(), match["value"]
        models = models.filter(
            **({"source_run_id": tracking.run_pk(value) or 0} if key == "source_run_id" else {key: value})
        )
        position = match.end()
    max_results = int_param(params, "max_results", 100)
    if not 1 <= max_results <= SEARCH_MAX:
        raise InvalidParameterValue(f"max_results must be between 1 and {SEARCH_MAX}.")
    offset = page_offset(optional_str(params, "page_token"))
    page = list(
        models.select_related("source_run").order_by("-created_at", "id")[offset : offset + max_results + 1]
    )
    answer: dict[str, Any] = {"models": [logged_model_json(m) for m in page[:max_results]]}
    if len(page) > max_results:
        answer["next_page_token"] = page_token(offset + max_results)
    return answer
