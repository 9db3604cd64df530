"""The registry endpoints of the MLflow REST API (``mlflow/protos/model_registry.proto``), served
through Steward's registry actions: the same RBAC, audit events and four-eyes rule as Steward's own
API (issue 9).

Mapping: an MLflow registered model is a ``RegisteredModel`` (its team is the ``steward.team`` tag
at creation, else the user's default team, ``governance.actions.teams.default_team``; the tag is
shown on every model, never stored); a model version is a ``ModelVersion``: ``version`` a string,
``current_stage`` "None" (ready) or "Archived", ``status`` "READY", ``run_id`` the Steward run (job)
id. Names resolve among the models the user may view (``lookup_model``). Stages are replaced by
aliases: ``transition-stage`` to "Archived" archives, to "None" unarchives, to "Staging" or
"Production" is refused naming the alias to use. ``delete`` of a model deletes its versions with it,
as MLflow does (each version's deletion audited). A model the user may not view answers
RESOURCE_DOES_NOT_EXIST, exactly as one that does not exist.

A job token (issue 17, ``governance.job_scope``) may create a registered model in its job's team,
register versions from its run's output, read, describe and tag the versions it registered, and
read (get, download URI, their model) the versions its job was given; the other endpoints refuse
it.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import OuterRef, Q, QuerySet, Subquery
from django.http import HttpRequest

from governance.actions.aliases import do_delete_alias, do_set_alias
from governance.actions.model_versions import (
    do_archive_model_version,
    do_delete_model_version,
    do_delete_model_version_tag,
    do_register_model_version_from_source,
    do_set_model_version_tag,
    do_unarchive_model_version,
    do_update_model_version,
)
from governance.actions.registered_models import (
    NameTaken,
    do_create_registered_model,
    do_delete_registered_model,
    do_delete_registered_model_tag,
    do_rename_registered_model,
    do_set_registered_model_tag,
    do_update_registered_model,
)
from governance.actions.teams import TEAM_TAG, default_team
from governance.api.mlflow.base import (
    InvalidParameterValue,
    Params,
    ResourceAlreadyExists,
    ResourceDoesNotExist,
    actor,
    int_param,
    job_scope,
    mlflow_endpoint,
    ms,
    optional_str,
    param_list,
    require,
)
from governance.api.mlflow.search import (
    Clause,
    apply_tag_clause,
    page,
    parse_filter,
    parse_order_by,
    string_q,
)
from governance.models import ModelAlias, ModelVersion, RegisteredModel, Team
from governance.names import name_key

MODELS_MAX_RESULTS = 1000
MODELS_DEFAULT_RESULTS = 100
# MLflow's proto default and server threshold for version searches (the client sends 1,000).
VERSIONS_MAX_RESULTS = 200_000
STAGE_OF_STATUS: dict[str, str] = {
    ModelVersion.Status.READY: "None",
    ModelVersion.Status.ARCHIVED: "Archived",
}
STATUS_OF_STAGE: dict[str, str] = {
    "none": ModelVersion.Status.READY,
    "archived": ModelVersion.Status.ARCHIVED,
}
# The columns' range (PositiveIntegerField, PositiveBigIntegerField): beyond it nothing can match.
VERSION_NUMBER_MAX = 2**31 - 1
RUN_ID_MAX = 2**63 - 1
ARTIFACT_URI = "mlflow-artifacts:/steward/model-versions/{pk}"


# Lookups: among what the user may view, deleted rows excluded.


def visible_models(user) -> QuerySet[RegisteredModel]:
    return RegisteredModel.objects.restrict(user).filter(deleted_at__isnull=True)


def visible_versions(user) -> QuerySet[ModelVersion]:
    return (
        ModelVersion.objects.restrict(user)
        .filter(model__deleted_at__isnull=True)
        .exclude(status=ModelVersion.Status.DELETED)
    )


def lookup_model(user, name: str, *, team_id: int | None = None) -> RegisteredModel:
    """The live model named ``name`` (under the name rule's NFKC case folding) that ``user`` may
    view (in team ``team_id`` only, when given: a job token's). When several teams ``user`` sees
    hold the name, the one of ``user``'s default team wins; without one, InvalidParameterValue
    names the teams. ResourceDoesNotExist otherwise, whether the model is missing or in a team
    ``user`` does not see."""
    models = visible_models(user) if team_id is None else visible_models(user).filter(team_id=team_id)
    found = list(models.filter(name_key=name_key(name)).select_related("team"))
    if len(found) == 1:
        return found[0]
    if not found:
        raise ResourceDoesNotExist(f"Registered Model with name={name} not found")
    try:
        team = default_team(user)
    except (ValidationError, PermissionDenied):  # no single default team
        team = None
    for model in found:
        if team is not None and model.team_id == team.pk:
            return model
    teams = ", ".join(sorted(model.team.slug for model in found))
    raise InvalidParameterValue(
        f"Several teams you can see have a model named {name!r} ({teams}) and none is your default "
        "team: MLflow names a model by name alone, so use Steward's API (by id) for these."
    )


def lookup_version(user, name: str, version: Any, *, team_id: int | None = None) -> ModelVersion:
    """Version ``version`` (a number, as text or int) of model ``name``, not deleted."""
    model = lookup_model(user, name, team_id=team_id)
    number = _version_number(version)
    found = (
        ModelVersion.objects.filter(model=model, version=number)
        .exclude(status=ModelVersion.Status.DELETED)
        .first()
    )
    if found is None:
        raise ResourceDoesNotExist(f"Model Version (name={name}, version={version}) not found")
    found.model = model
    return found


def request_version(request: HttpRequest, params: Params, *, reads: bool = False) -> ModelVersion:
    """The version the request's ``name`` and ``version`` name; for a job token, only one its run
    registered, or (``reads``: the endpoint changes nothing) one the job was given as an input
    (another, or a missing one, is the same PermissionDenied: no existence oracle)."""
    name, number = require(params, "name"), require(params, "version")
    scope = job_scope(request)
    if scope is None:
        return lookup_version(actor(request), name, number)
    try:
        version: ModelVersion | None = lookup_version(actor(request), name, number, team_id=scope.team_id)
    except ResourceDoesNotExist:
        version = None
    what = f"version {number[:20]} of {name[:100]!r}"
    source_job_id = version.source_job_id if version else None
    if reads:
        scope.ensure_readable(version.pk if version else None, source_job_id, what)
    else:
        scope.ensure_output(source_job_id, what)
    assert version is not None
    return version


def _ascii_digits(text: str) -> bool:
    # str.isdigit() is true for "²" and Arabic-Indic digits; ids are written in ASCII only.
    return text.isascii() and text.isdigit()


def _version_number(version: Any) -> int:
    text = str(version)
    if not _ascii_digits(text.removeprefix("-")):
        raise InvalidParameterValue(f"Parameter 'version' must be an integer, got {version!r}.")
    # The length first: int() refuses strings of more than 4,300 digits.
    if len(text) > 12 or not 1 <= int(text) <= VERSION_NUMBER_MAX:
        raise InvalidParameterValue(f"Parameter 'version' must be between 1 and {VERSION_NUMBER_MAX}.")
    return int(text)


# Answers in MLflow's JSON shapes.


def _tags(tags: dict[str, str]) -> list[dict[str, str]]:
    return [{"key": key, "value": value} for key, value in tags.items()]


def model_version_json(version: ModelVersion, *, aliases: list[str] | None = None) -> dict[str, Any]:
    """``version`` as MLflow's ``ModelVersion`` message (``version.model`` must be loaded)."""
    data: dict[str, Any] = {
        "name": version.model.name,
        "version": str(version.version),
        "creation_timestamp": ms(version.created_at),
        "last_updated_timestamp": ms(version.updated_at),
        "current_stage": STAGE_OF_STATUS.get(version.status, "None"),
        "description": version.description,
        "source": version.source,
        "run_id": str(version.source_job_id) if version.source_job_id else "",
        "run_link": "",
        "status": "READY",
        "tags": _tags(version.tags),
    }
    if aliases is not None:
        data["aliases"] = aliases
    return data


# The columns MLflow's messages show: the heavy JSON ones (metrics, signature, training spec,
# flavor details) stay in the database, which halves a search's time (benchmarks/bench_registry.py).
VERSION_MESSAGE_FIELDS = (
    "id",
    "model_id",
    "version",
    "created_at",
    "updated_at",
    "status",
    "description",
    "source",
    "source_job_id",
    "tags",
)


def registered_models_json(models: list[RegisteredModel], *, created: bool = False) -> list[dict[str, Any]]:
    """MLflow's ``RegisteredModel`` messages for ``models``: two queries whatever their number (the
    latest ready and archived version of each, and their aliases); none for models ``created`` by
    this request, which have neither yet."""
    ids = [] if created else [model.pk for model in models]
    latest: dict[int, dict[str, ModelVersion]] = defaultdict(dict)
    # Only each model's latest version per status, picked by the database (the unique
    # (model, version) index answers the subquery), not every version of every model.
    newest = ModelVersion.objects.filter(model_id=OuterRef("model_id"), status=OuterRef("status")).order_by(
        "-version"
    )
    live = (
        ModelVersion.objects.filter(model_id__in=ids, status__in=list(STAGE_OF_STATUS))
        .filter(version=Subquery(newest.values("version")[:1]))
        .only(*VERSION_MESSAGE_FIELDS)
    )
    for version in live if ids else ():
        latest[version.model_id][version.status] = version
    aliases: dict[int, list[tuple[str, int]]] = defaultdict(list)
    for model_id, alias, number in (
        ModelAlias.objects.filter(model_id__in=ids)
        .order_by("name")
        .values_list("model_id", "name", "model_version__version")
        if ids
        else ()
    ):
        aliases[model_id].append((alias, number))
    answer = []
    by_id = {model.pk: model for model in models}
    for model in models:
        versions = sorted(latest[model.pk].values(), key=lambda version: version.version)
        for version in versions:
            version.model = by_id[version.model_id]
        answer.append(
            {
                "name": model.name,
                "creation_timestamp": ms(model.created_at),
                "last_updated_timestamp": ms(model.updated_at),
                "description": model.description,
                "tags": _tags({**model.tags, TEAM_TAG: model.team.slug}),
                "aliases": [{"alias": alias, "version": str(number)} for alias, number in aliases[model.pk]],
                "latest_versions": [model_version_json(version) for version in versions],
            }
        )
    return answer


def registered_model_json(model: RegisteredModel) -> dict[str, Any]:
    return registered_models_json([model])[0]


def _version_aliases(version: ModelVersion) -> list[str]:
    return list(version.aliases.order_by("name").values_list("name", flat=True))


def _tags_param(params: Params) -> dict[str, str]:
    tags: dict[str, str] = {}
    for tag in param_list(params, "tags"):
        if not isinstance(tag, dict) or not isinstance(tag.get("key"), str):
            raise InvalidParameterValue("Each tag is an object with a string 'key' and a 'value'.")
        tags[tag["key"]] = tag.get("value") or ""
    return tags


def _refuse_team_tag(key: str) -> None:
    if key == TEAM_TAG:
        raise InvalidParameterValue(
            f"The tag {TEAM_TAG} names the model's team; it is chosen at creation and cannot be changed."
        )


# Registered models.


@mlflow_endpoint("POST", for_job_token=True)
def create_registered_model(request: HttpRequest, params: Params) -> dict:
    name = require(params, "name")
    tags = _tags_param(params)
    scope = job_scope(request)
    if scope is None:
        team = default_team(actor(request), team_slug=tags.pop(TEAM_TAG, None))
    else:
        # A job token registers into its job's team, whatever the user's default.
        team = Team.objects.get(pk=scope.team_id)
        slug = tags.pop(TEAM_TAG, team.slug)
        if slug != team.slug:
            raise scope.refuse(f"team {slug[:100]!r} is not the job's team")
    try:
        model = do_create_registered_model(
            team=team,
            name=name,
            owner=actor(request),
            description=optional_str(params, "description"),
            tags=tags,
            actor=actor(request),
        )
    except NameTaken:
        # MLflow's code for a taken name, racing losers included: the client's register_model
        # tolerates only this one.
        raise ResourceAlreadyExists(f"Registered Model (name={name}) already exists.") from None
    return {"registered_model": registered_models_json([model], created=True)[0]}


@mlflow_endpoint("GET", for_job_token=True)
def get_registered_model(request: HttpRequest, params: Params) -> dict:
    name = require(params, "name")
    scope = job_scope(request)
    if scope is None:
        return {"registered_model": registered_model_json(lookup_model(actor(request), name))}
    # A job token: a model of its team holding a version it may read (the client asks for the
    # model before a version's download URI), shown with those versions only and no aliases.
    try:
        model: RegisteredModel | None = lookup_model(actor(request), name, team_id=scope.team_id)
    except ResourceDoesNotExist:
        model = None
    readable = set(
        ModelVersion.objects.filter(model=model)
        .exclude(status=ModelVersion.Status.DELETED)
        .filter(scope.readable_versions())
        .values_list("version", flat=True)
        if model is not None
        else ()
    )
    if model is None or not readable:
        raise scope.refuse(f"model {name[:100]!r} holds no version its run registered or the job was given")
    answer = registered_model_json(model)
    answer["latest_versions"] = [v for v in answer["latest_versions"] if int(v["version"]) in readable]
    answer["aliases"] = []
    return {"registered_model": answer}


@mlflow_endpoint("POST")
def rename_registered_model(request: HttpRequest, params: Params) -> dict:
    model = lookup_model(actor(request), require(params, "name"))
    new_name = require(params, "new_name")
    try:
        model = do_rename_registered_model(model=model, new_name=new_name, actor=actor(request))
    except NameTaken:
        raise ResourceAlreadyExists(f"Registered Model (name={new_name}) already exists.") from None
    return {"registered_model": registered_model_json(model)}


@mlflow_endpoint("PATCH")
def update_registered_model(request: HttpRequest, params: Params) -> dict:
    model = lookup_model(actor(request), require(params, "name"))
    model = do_update_registered_model(
        model=model, description=optional_str(params, "description"), actor=actor(request)
    )
    return {"registered_model": registered_model_json(model)}


@mlflow_endpoint("DELETE")
def delete_registered_model(request: HttpRequest, params: Params) -> dict:
    model = lookup_model(actor(request), require(params, "name"))
    # MLflow deletes a model with its versions; the call itself is the explicit request.
    do_delete_registered_model(model=model, with_versions=True, actor=actor(request))
    return {}


MODEL_ATTRIBUTES = {"name": {"=", "!=", "LIKE", "ILIKE"}}
MODEL_ORDER_FIELDS = {
    "name": "name",
    "last_updated_timestamp": "updated_at",
    "timestamp": "updated_at",
    "creation_timestamp": "created_at",
}


def _filter_models(queryset: QuerySet, clauses: list[Clause]) -> QuerySet:
    for index, clause in enumerate(clauses):
        if clause.kind == "attribute":
            queryset = queryset.filter(string_q("name", clause.comparator, clause.value))
        elif clause.key == TEAM_TAG:
            queryset = queryset.filter(string_q("team__slug", clause.comparator, clause.value))
        else:
            queryset = apply_tag_clause(queryset, index, clause)
    return queryset


def _max_results(params: Params, *, default: int, maximum: int) -> int:
    value = int_param(params, "max_results", default)
    if value < 1 or value > maximum:
        raise InvalidParameterValue(
            f"Invalid value {value} for parameter 'max_results': between 1 and {maximum}."
        )
    return value


@mlflow_endpoint("GET")
def search_registered_models(request: HttpRequest, params: Params) -> dict:
    clauses = parse_filter(optional_str(params, "filter"), attributes=MODEL_ATTRIBUTES)
    max_results = _max_results(params, default=MODELS_DEFAULT_RESULTS, maximum=MODELS_MAX_RESULTS)
    order = parse_order_by(
        param_list(params, "order_by"),
        fields=MODEL_ORDER_FIELDS,
        default=[("name", False)],
        ties=[("name", False), ("id", False)],
    )
    queryset = _filter_models(visible_models(actor(request)).select_related("team"), clauses)
    models, token = page(queryset, order, max_results, optional_str(params, "page_token"))
    answer: dict[str, Any] = {"registered_models": registered_models_json(models)}
    if token:
        answer["next_page_token"] = token
    return answer


# A read, whichever method: the client tries POST first, then GET (call_endpoints).
@mlflow_endpoint("GET", "POST", writes=False)
def get_latest_versions(request: HttpRequest, params: Params) -> dict:
    model = lookup_model(actor(request), require(params, "name"))
    stages = [str(stage).lower() for stage in param_list(params, "stages")] or list(STATUS_OF_STAGE)
    versions = []
    for stage in stages:
        status = STATUS_OF_STAGE.get(stage)
        if status is None:
            continue  # Staging and Production hold nothing: Steward uses aliases instead
        version = ModelVersion.objects.filter(model=model, status=status).order_by("-version").first()
        if version is not None:
            version.model = model
            versions.append(model_version_json(version))
    return {"model_versions": versions}


@mlflow_endpoint("POST")
def set_registered_model_tag(request: HttpRequest, params: Params) -> dict:
    model = lookup_model(actor(request), require(params, "name"))
    key = require(params, "key")
    _refuse_team_tag(key)
    do_set_registered_model_tag(
        model=model, key=key, value=optional_str(params, "value"), actor=actor(request)
    )
    return {}


@mlflow_endpoint("DELETE")
def delete_registered_model_tag(request: HttpRequest, params: Params) -> dict:
    model = lookup_model(actor(request), require(params, "name"))
    key = require(params, "key")
    _refuse_team_tag(key)
    do_delete_registered_model_tag(model=model, key=key, actor=actor(request))
    return {}


# Aliases.


@mlflow_endpoint("POST")
def set_registered_model_alias(request: HttpRequest, params: Params) -> dict:
    version = lookup_version(actor(request), require(params, "name"), require(params, "version"))
    do_set_alias(model=version.model, alias=require(params, "alias"), version=version, actor=actor(request))
    return {}


@mlflow_endpoint("DELETE")
def delete_registered_model_alias(request: HttpRequest, params: Params) -> dict:
    model = lookup_model(actor(request), require(params, "name"))
    do_delete_alias(model=model, alias=require(params, "alias"), actor=actor(request))
    return {}


@mlflow_endpoint("GET")
def get_model_version_by_alias(request: HttpRequest, params: Params) -> dict:
    model = lookup_model(actor(request), require(params, "name"))
    alias = require(params, "alias")
    found = ModelAlias.objects.filter(model=model, name=alias).select_related("model_version").first()
    if found is None:
        # MLflow's answer for a missing alias (both its stores): 400, not 404.
        raise InvalidParameterValue(f"Registered model alias {alias} not found.")
    version = found.model_version
    version.model = model
    return {"model_version": model_version_json(version, aliases=_version_aliases(version))}


# Model versions.


@mlflow_endpoint("POST", for_job_token=True)
def create_model_version(request: HttpRequest, params: Params) -> dict:
    scope = job_scope(request)
    model = lookup_model(actor(request), require(params, "name"), team_id=scope.team_id if scope else None)
    source = optional_str(params, "source")
    model_id = optional_str(params, "model_id")
    if not source and model_id:
        source = f"models:/{model_id}"
    if not source:
        raise InvalidParameterValue("Missing value for required parameter 'source'.")
    version = do_register_model_version_from_source(
        model=model,
        source=source,
        description=optional_str(params, "description"),
        tags=_tags_param(params),
        actor=actor(request),
        job_scope=scope,
    )
    version.model = model
    return {"model_version": model_version_json(version, aliases=[])}


@mlflow_endpoint("GET", for_job_token=True)
def get_model_version(request: HttpRequest, params: Params) -> dict:
    version = request_version(request, params, reads=True)
    return {"model_version": model_version_json(version, aliases=_version_aliases(version))}


@mlflow_endpoint("PATCH", for_job_token=True)
def update_model_version(request: HttpRequest, params: Params) -> dict:
    version = request_version(request, params)
    model = version.model
    version = do_update_model_version(
        version=version, description=optional_str(params, "description"), actor=actor(request)
    )
    version.model = model
    return {"model_version": model_version_json(version, aliases=_version_aliases(version))}


@mlflow_endpoint("DELETE")
def delete_model_version(request: HttpRequest, params: Params) -> dict:
    version = lookup_version(actor(request), require(params, "name"), require(params, "version"))
    do_delete_model_version(version=version, actor=actor(request))
    return {}


@mlflow_endpoint("POST")
def transition_model_version_stage(request: HttpRequest, params: Params) -> dict:
    version = lookup_version(actor(request), require(params, "name"), require(params, "version"))
    stage = require(params, "stage").lower()
    model = version.model
    if stage == "archived":
        version = do_archive_model_version(version=version, actor=actor(request))
    elif stage == "none":
        version = do_unarchive_model_version(version=version, actor=actor(request))
    else:
        raise InvalidParameterValue(
            f"Stage {params['stage']!r}: Steward replaces stages with aliases; set the alias "
            f"'{stage}' instead (set_registered_model_alias). 'Archived' archives a version, 'None' "
            "unarchives it."
        )
    version.model = model
    return {"model_version": model_version_json(version, aliases=_version_aliases(version))}


@mlflow_endpoint("GET", for_job_token=True)
def get_model_version_download_uri(request: HttpRequest, params: Params) -> dict:
    version = request_version(request, params, reads=True)
    return {"artifact_uri": ARTIFACT_URI.format(pk=version.pk)}


@mlflow_endpoint("POST", for_job_token=True)
def set_model_version_tag(request: HttpRequest, params: Params) -> dict:
    version = request_version(request, params)
    do_set_model_version_tag(
        version=version, key=require(params, "key"), value=optional_str(params, "value"), actor=actor(request)
    )
    return {}


@mlflow_endpoint("DELETE", for_job_token=True)
def delete_model_version_tag(request: HttpRequest, params: Params) -> dict:
    version = request_version(request, params)
    do_delete_model_version_tag(version=version, key=require(params, "key"), actor=actor(request))
    return {}


VERSION_ATTRIBUTES = {
    "name": {"=", "!=", "LIKE", "ILIKE"},
    "version_number": {"=", "!=", "<", "<=", ">", ">="},
    "run_id": {"=", "!=", "IN"},
    "source_path": {"=", "!=", "LIKE", "ILIKE"},
}
VERSION_ORDER_FIELDS = {
    "name": "model__name",
    "version_number": "version",
    "creation_timestamp": "created_at",
    "last_updated_timestamp": "updated_at",
    "timestamp": "updated_at",
}
NUMERIC_LOOKUPS = {"=": "exact", "<": "lt", "<=": "lte", ">": "gt", ">=": "gte"}


def _run_ids(values: list[str]) -> list[int]:
    # Steward's run ids are integers; another id names no Steward run, so matches nothing.
    return [
        int(value)
        for value in values
        if _ascii_digits(value) and len(value) <= 19 and int(value) <= RUN_ID_MAX
    ]


def _filter_versions(queryset: QuerySet, clauses: list[Clause]) -> QuerySet:
    for index, clause in enumerate(clauses):
        value = clause.value
        if clause.kind == "tag":
            queryset = apply_tag_clause(queryset, index, clause)
        elif clause.key == "name":
            queryset = queryset.filter(string_q("model__name", clause.comparator, value))
        elif clause.key == "source_path":
            queryset = queryset.filter(string_q("source", clause.comparator, value))
        elif clause.key == "version_number":
            number = _version_number(value) if isinstance(value, str) else value
            if abs(number) > VERSION_NUMBER_MAX:
                raise InvalidParameterValue(f"version_number {number} is out of range.")
            if clause.comparator == "!=":
                queryset = queryset.exclude(version=number)
            else:
                queryset = queryset.filter(**{f"version__{NUMERIC_LOOKUPS[clause.comparator]}": number})
        else:  # run_id
            ids = _run_ids(value if isinstance(value, list) else [str(value)])
            if clause.comparator == "!=":
                queryset = queryset.filter(Q(source_job_id__isnull=True) | ~Q(source_job_id__in=ids))
            else:
                queryset = queryset.filter(source_job_id__in=ids)
    return queryset


@mlflow_endpoint("GET", for_job_token=True)
def search_model_versions(request: HttpRequest, params: Params) -> dict:
    clauses = parse_filter(optional_str(params, "filter"), attributes=VERSION_ATTRIBUTES)
    max_results = _max_results(params, default=VERSIONS_MAX_RESULTS, maximum=VERSIONS_MAX_RESULTS)
    order = parse_order_by(
        param_list(params, "order_by"),
        fields=VERSION_ORDER_FIELDS,
        default=[("updated_at", True), ("model__name", False), ("version", True)],
        ties=[("model__name", False), ("version", True), ("id", False)],
    )
    visible = visible_versions(actor(request))
    scope = job_scope(request)
    if scope is not None:
        visible = visible.filter(source_job_id=scope.job_id)  # a job token: its own versions only
    queryset = _filter_versions(
        visible.select_related("model").only(*VERSION_MESSAGE_FIELDS, "model__name"), clauses
    )
    versions, token = page(queryset, order, max_results, optional_str(params, "page_token"))
    # MLflow's search does not fill in aliases either (the notes' §1.2).
    answer: dict[str, Any] = {"model_versions": [model_version_json(version) for version in versions]}
    if token:
        answer["next_page_token"] = token
    return answer
