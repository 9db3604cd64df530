"""Submitting a user's code version as a job (issue 17): the one audited way to queue a code run.

A code run runs an entry point of a ``CodeVersion`` (its ``MLproject`` command, parameters
substituted) in a sandbox (``runners.sandbox``, run by ``runners.execute``), with the dataset
versions it asked for as local files, the model versions it was given (readable through its job
token, for batch inference) and, for data preparation, the dataset names it declares it will
write. Its inputs, outputs and experiment are of the code's team.
"""

from __future__ import annotations

import datetime
import math
import re
import shlex
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from governance.actions.checks import checked_name, ensure_can
from governance.actions.pii import pii_refusal
from governance.actions.teams import TEAM_TAG
from governance.models import DatasetVersion, ModelVersion, Team
from governance.names import name_key
from governance.permissions import CHANGE, VIEW
from runners import windows
from runners.actions import Submission, job_backend, limit_maxima, queue_job
from runners.models import CodeVersion, Experiment, Job, JobBackend, JobDataset, JobDatasetRole, JobKind
from runners.pii_protection import readable_version
from runners.specs import SUBMISSION_FIELDS, SpecError, parse_limits, parse_resources, split_backend
from runners.tracking import do_create_experiment

if TYPE_CHECKING:
    from django.contrib.auth.models import User

# Input and output names: they become file names and environment variable names.
RUN_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
CODE_SPEC_FIELDS = frozenset({"limits", "resources"}) | SUBMISSION_FIELDS
PARAMETER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_.-]*)\}")


def input_variable(name: str) -> str:
    """The environment variable holding input ``name``'s path: ``STEWARD_INPUT_<NAME>``, upper
    case, ``-`` as ``_``."""
    return "STEWARD_INPUT_" + name.upper().replace("-", "_")


def model_variable(name: str) -> str:
    """The environment variable holding given model ``name``'s URI: ``STEWARD_MODEL_<NAME>``,
    upper case, ``-`` as ``_``."""
    return "STEWARD_MODEL_" + name.upper().replace("-", "_")


def model_uri(version: ModelVersion) -> str:
    """The ``models:/<model name>/<version>`` URI the mlflow client loads ``version`` by
    (``version.model`` is read)."""
    return f"models:/{version.model.name}/{version.version}"


def model_parameters(
    declared: dict[str, dict[str, Any]], parameters: dict[str, Any], uris: dict[str, str]
) -> dict[str, str]:
    """The values that replace parameters naming a given model: a ``uri`` or ``string``
    parameter whose value is the name of a given model becomes that model's URI (``uris``:
    {model name: ``models:/...``}). Returns {parameter: URI}."""
    return {
        pname: uris[value]
        for pname, value in parameters.items()
        if declared.get(pname, {}).get("type", "string") in ("uri", "string")
        and isinstance(value, str)
        and value in uris
    }


def _check_names(names: list[str], field: str, variable: Callable[[str], str] = input_variable) -> None:
    bad = [name for name in names if not isinstance(name, str) or not RUN_NAME.fullmatch(name)]
    if bad:
        raise ValidationError(
            {field: f"name(s) {', '.join(map(repr, bad))}: 1 to 64 of A-Z, a-z, 0-9, _ and -"}
        )
    seen: dict[str, str] = {}
    for name in names:
        other = seen.setdefault(variable(name), name)
        if other != name:
            raise ValidationError({field: f"{other!r} and {name!r} name the same variable {variable(name)}"})


def _check_models(models: Any, inputs: dict[str, DatasetVersion]) -> None:
    """The shape and names of ``models`` (before any lookup): names as inputs' names, none also
    an input's (a parameter naming it would be ambiguous)."""
    if not isinstance(models, dict):
        raise ValidationError({"models": "expected a JSON object of name: model version id"})
    _check_names(list(models), "models", model_variable)
    shared = sorted(set(models) & set(inputs))
    if shared:
        raise ValidationError(
            {"models": f"name(s) {', '.join(map(repr, shared))} also name dataset inputs; use distinct names"}
        )


def _check_given_models(models: dict[str, ModelVersion], team_id: int, actor: User) -> None:
    """Each given model version is one ``actor`` may view, live, and of the code's team.
    Raises ValidationError on ``models`` naming the entry."""
    visible = {
        found.pk: found
        for found in ModelVersion.objects.restrict(actor, VIEW)
        .filter(pk__in=[v.pk for v in models.values()])
        .select_related("model")
    }
    for name, version in sorted(models.items()):
        fresh = visible.get(version.pk)
        if fresh is None:
            raise ValidationError({"models": f"{name}: no model version {version.pk}"})
        if fresh.status == ModelVersion.Status.DELETED or fresh.model.deleted_at is not None:
            raise ValidationError({"models": f"{name}: {fresh} is deleted"})
        if fresh.model.team_id != team_id:
            # Like dataset inputs: what a run reads stays in the code's team.
            raise ValidationError({"models": f"{name}: {fresh} belongs to another team than the code"})


def _number(value: Any, kind: type, pname: str) -> int | float:
    if isinstance(value, bool):
        raise ValidationError({"parameters": f"{pname}: expected {kind.__name__}, got {value!r}"})
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise ValidationError({"parameters": f"{pname}: expected {kind.__name__}, got {value!r}"}) from None
    if kind is int and isinstance(value, float) and value != number:
        raise ValidationError({"parameters": f"{pname}: expected an int, got {value!r}"})
    if isinstance(number, float) and not math.isfinite(number):
        raise ValidationError({"parameters": f"{pname}: expected a finite number, got {value!r}"})
    return number


def _check_paths(declared: dict[str, dict[str, Any]], values: dict[str, Any], inputs: dict[str, Any]) -> None:
    """A ``path`` parameter names one of the run's inputs (the worker gives its file) or a file
    of the code's own folder (relative, no ``..``): an absolute path or one leaving the folder is
    nothing the run can read in its sandbox, so it is refused now rather than failing the run.
    Raises ValidationError naming the parameter."""
    for pname, declaration in declared.items():
        if declaration.get("type") != "path" or values.get(pname) in inputs:
            continue
        value = str(values.get(pname, ""))
        parts = value.replace("\\", "/").split("/")
        if not value or value.startswith("/") or ".." in parts:
            named = ", ".join(sorted(inputs)) or "none given"
            raise ValidationError(
                {
                    "parameters": f"{pname}: a path parameter names one of the run's inputs ({named}) "
                    f"or a file inside the code's folder, got {value[:200]!r}"
                }
            )


def checked_parameters(declared: dict[str, dict[str, Any]], given: Any) -> dict[str, Any]:
    """The entry point's parameters with ``given`` values (``MLproject`` types: ``float``,
    ``int``, ``string``, ``path``, ``uri``) and defaults for the rest. Raises ValidationError
    naming an undeclared parameter, a missing one without default, or a value of the wrong type."""
    if not isinstance(given, dict):
        raise ValidationError({"parameters": "expected a JSON object of name: value"})
    undeclared = sorted(set(given) - set(declared))
    if undeclared:
        known = ", ".join(sorted(declared)) or "none"
        raise ValidationError(
            {
                "parameters": f"undeclared parameter(s) {', '.join(undeclared)}; "
                f"the entry point declares {known}"
            }
        )
    missing = sorted(n for n, p in declared.items() if n not in given and p.get("default") is None)
    if missing:
        raise ValidationError({"parameters": f"missing parameter(s) {', '.join(missing)} (no default)"})
    values: dict[str, Any] = {}
    for pname, declaration in declared.items():
        value = given.get(pname, declaration.get("default"))
        ptype = declaration.get("type", "string")
        if ptype == "float":
            values[pname] = _number(value, float, pname)
        elif ptype == "int":
            values[pname] = _number(value, int, pname)
        elif isinstance(value, str | int | float) and not isinstance(value, bool):
            text = str(value)
            if "\x00" in text or len(text) > 4096:
                raise ValidationError({"parameters": f"{pname}: at most 4096 characters, no NUL"})
            values[pname] = text
        else:
            raise ValidationError({"parameters": f"{pname}: expected a {ptype} as text, got {value!r}"})
    return values


def command_line(command: str, parameters: dict[str, Any], paths: dict[str, str]) -> str:
    """The entry point's ``command`` with each ``{name}`` of a parameter replaced by its value,
    shell-quoted (MLflow Projects' substitution); ``paths``: values to substitute instead (a
    ``path`` parameter naming an input becomes that input's file). Other braces are left alone."""

    def value(match: re.Match[str]) -> str:
        pname = match.group(1)
        if pname not in parameters:
            return match.group(0)
        return shlex.quote(str(paths.get(pname, parameters[pname])))

    return PARAMETER.sub(value, command)


def _experiment(team_id: int, name: str, actor: User) -> Experiment:
    found = Experiment.objects.filter(team_id=team_id, name_key=name_key(name)).first()
    if found is not None:
        if found.lifecycle_stage != "active":
            raise ValidationError(
                {"experiment_name": f"experiment {name!r} is deleted; restore it or name another"}
            )
        return found
    team = Team.objects.get(pk=team_id)
    return do_create_experiment(name=name, tags={TEAM_TAG: team.slug}, actor=actor)


def check_code_spec(spec: Any, team_id: int, now: datetime.datetime) -> Submission:
    """Validate a code run's ``spec`` extras (``limits``, ``resources``, ``backend``,
    ``start_window`` / ``not_before``). Raises ValidationError on ``spec`` naming the field."""
    try:
        asked_backend, spec = split_backend(spec if spec is not None else {})
        if not isinstance(spec, dict):
            raise SpecError("spec: expected a JSON object")
        unknown = sorted(set(spec) - CODE_SPEC_FIELDS)
        if unknown:
            allowed = ", ".join(sorted(CODE_SPEC_FIELDS | {"backend"}))
            raise SpecError(f"spec: unknown field(s) {', '.join(unknown)}; allowed: {allowed}")
        limits = parse_limits(spec.get("limits"), limit_maxima(Team.objects.get(pk=team_id)))
        resources = parse_resources(
            spec.get("resources"), settings.STEWARD_RESOURCE_CLASSES, settings.STEWARD_DEFAULT_RESOURCE_CLASS
        )
        backend = job_backend(asked_backend, resources["class"])
        if backend != JobBackend.LOCAL:
            # The sandbox, the inputs as files and the API proxy are the worker's (issue 17).
            raise SpecError(f"backend: code runs run on the local backend only, not {backend!r}")
        window, not_before = windows.start_time(spec, now)
    except SpecError as exc:
        raise ValidationError({"spec": str(exc)}) from exc
    stored = {"limits": limits, "resources": resources} if spec.get("limits") else {"resources": resources}
    return Submission(team_id=team_id, spec=stored | window, not_before=not_before, backend=backend)


def do_submit_code_run(
    *,
    code_version: CodeVersion,
    entry_point: str,
    parameters: dict[str, Any] | None = None,
    inputs: dict[str, DatasetVersion] | None = None,
    models: dict[str, ModelVersion] | None = None,
    outputs: dict[str, Any] | None = None,
    experiment_name: str | None = None,
    spec: Any = None,
    actor: User,
    now: datetime.datetime | None = None,
) -> Job:
    """Queue a run of ``code_version``'s ``entry_point`` (issue 17) in the code's team.

    ``parameters``: values for the entry point's declared parameters (``checked_parameters``);
    ``inputs``: {name: dataset version} given to the code as files (names ``[A-Za-z0-9_-]{1,64}``;
    versions the actor may view, of the code's team); ``models``: {name: model version} the run may
    read through its job token (same name rule, distinct from the inputs' names; live versions the
    actor may view, of the code's team): a ``uri`` or ``string`` parameter whose value is such a
    name becomes ``models:/<model>/<version>``, also in ``$STEWARD_MODEL_<NAME>``;
    ``outputs``: ``{"datasets": [names]}``, the
    dataset versions a data preparation run writes (registered in the team when it succeeds);
    ``experiment_name``: the team's MLflow experiment the run logs to (created if absent; the code
    project's name by default); ``spec``: limits, resources, backend (local only), start window.
    The job's ``spec`` keeps {entry_point, parameters, inputs: {name: id}, models: {name: id},
    outputs, limits, resources, window}. An input its team's PII policy masks, hashes or drops is
    given as its protected copy (``runners.pii_protection``); one the policy refuses
    (``governance.actions.pii.pii_refusal``) is a ValidationError on ``inputs``. Raises ValidationError naming
    the field; PermissionDenied
    without CHANGE on the team.
    """
    parameters = parameters if parameters is not None else {}
    inputs = inputs or {}
    outputs = outputs if outputs is not None else {}
    team_id = code_version.project.team_id
    entry_points = code_version.entry_points or {}
    if entry_point not in entry_points:
        raise ValidationError(
            {
                "entry_point": f"no entry point {entry_point!r}; "
                f"{code_version} has {', '.join(sorted(entry_points))}"
            }
        )
    values = checked_parameters(entry_points[entry_point].get("parameters") or {}, parameters)
    if not isinstance(inputs, dict):
        raise ValidationError({"inputs": "expected a JSON object of name: dataset version id"})
    _check_names(list(inputs), "inputs")
    models = models if models is not None else {}
    _check_models(models, inputs)
    _check_paths(entry_points[entry_point].get("parameters") or {}, values, inputs)
    if not isinstance(outputs, dict) or set(outputs) - {"datasets"}:
        raise ValidationError({"outputs": 'expected {"datasets": [names]}'})
    output_names = outputs.get("datasets") or []
    if not isinstance(output_names, list):
        raise ValidationError({"outputs": '"datasets": a list of dataset names'})
    _check_names(output_names, "outputs")
    for name in output_names:
        checked_name(name, noun="dataset name", field="outputs")
    if len({name_key(n) for n in output_names}) != len(output_names):
        raise ValidationError({"outputs": "a dataset name appears twice"})
    experiment = (experiment_name if experiment_name is not None else code_version.project.name).strip()
    if not experiment:
        raise ValidationError({"experiment_name": "an experiment name, or leave it out"})
    submission = check_code_spec(spec, team_id, now or timezone.now())
    with transaction.atomic():
        ensure_can(actor, CHANGE, team_id)
        visible = set(
            DatasetVersion.objects.restrict(actor, VIEW)
            .filter(pk__in=[v.pk for v in inputs.values()])
            .values_list("pk", flat=True)
        )
        readable: dict[str, DatasetVersion] = {}
        for name, version in inputs.items():
            if version.pk not in visible:
                raise ValidationError({"inputs": f"{name}: no dataset version {version.pk}"})
            if version.dataset.team_id != team_id:
                # A run's inputs and outputs stay in one team, like a training job's.
                raise ValidationError({"inputs": f"{name}: {version} belongs to another team than the code"})
            # User code reads its inputs like a training job: the team's PII policy holds.
            version = readable[name] = readable_version(version, actor=actor, field="inputs")
            if why := pii_refusal(version):
                raise ValidationError({"inputs": f"{name}: {why}"})
        inputs = readable
        _check_given_models(models, team_id, actor)
        run_spec = {
            "entry_point": entry_point,
            "parameters": values,
            "inputs": {name: version.pk for name, version in sorted(inputs.items())},
            "models": {name: version.pk for name, version in sorted(models.items())},
            "outputs": {"datasets": list(output_names)},
            **submission.spec,
        }
        job = queue_job(
            Submission(submission.team_id, run_spec, submission.not_before, submission.backend),
            kind=JobKind.CODE,
            actor=actor,
            code_version=code_version,
            entry_point=entry_point,
            experiment=_experiment(team_id, experiment, actor),
            run_name=f"{code_version.project.name} {entry_point}"[:250],
        )
        JobDataset.objects.bulk_create(
            JobDataset(job=job, role=JobDatasetRole.INPUT, name=name, dataset_version=version)
            for name, version in sorted(inputs.items())
        )
    return job
