"""What a predict request reads and computes (issue 17): the model by name among the caller's,
the version an alias points at with its serving policy (one query, per request, so a moved alias
is served at once), and the predictions of a version.

Steward's own flavor is predicted IN this process (loaded once per process and version; torch is
imported here on first use, never at the web process's start). An MLflow model, whose loading
runs code, is predicted by its model server (``runners.serving.supervisor``), never here.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection
from django.http import Http404

from governance.models import ModelAlias, ModelVersion, RegisteredModel, Team
from governance.names import name_key
from governance.permissions import VIEW, AllTeams, team_scope
from runners import sandbox
from runners.models import ServingPolicy
from runners.serving import predictors, supervisor
from runners.serving.rows import Column, Rows, columns_of

if TYPE_CHECKING:
    from django.contrib.auth.models import User

logger = logging.getLogger(__name__)

IN_PROCESS = "in_process"
MODEL_SERVER = "model_server"
# Loaded in-process predictors kept per process (least recently used dropped first).
_CACHE_SIZE = 8


@dataclass(frozen=True)
class Route:
    """Where a request goes: the ``version`` that answers (``alias`` "" when asked by number) and
    the policy's canary and shadow (ids; None without a policy)."""

    version: ModelVersion
    alias: str
    canary_version_id: int | None = None
    canary_percent: int = 0
    shadow_version_id: int | None = None


def _lookup_sql() -> str:
    """One query: the live models with a name key, their team's slug, the version an alias of
    theirs points at and that alias's serving policy (LEFT JOINs: none of either is NULLs)."""
    model, team = RegisteredModel._meta.db_table, Team._meta.db_table
    alias, policy = ModelAlias._meta.db_table, ServingPolicy._meta.db_table
    version = ModelVersion._meta.db_table
    # Only Django's own table names are interpolated; the values are parameters.
    return (
        f"SELECT m.id, m.team_id, m.name, t.slug, a.model_version_id, v.sha256, p.canary_version_id, "  # noqa: S608
        f"p.canary_percent, p.shadow_version_id FROM {model} m JOIN {team} t ON t.id = m.team_id "
        f"LEFT JOIN {alias} a ON a.model_id = m.id AND a.name = %s "
        f"LEFT JOIN {version} v ON v.id = a.model_version_id "
        f"LEFT JOIN {policy} p ON p.registered_model_id = m.id AND p.alias = a.name "
        "WHERE m.name_key = %s AND m.deleted_at IS NULL ORDER BY t.slug"
    )


def resolve(
    user: User, name: str, team_slug: str | None, alias: str | None
) -> tuple[RegisteredModel, Route | None]:
    """The live model called ``name`` (by its name key) among those ``user`` may view
    (``governance.permissions.team_scope``), and, given ``alias``, the version it points at NOW
    with its serving policy: one query per request (issue 17: a moved alias is served at once),
    written in SQL because compiling the ORM's form of it cost more than the prediction.

    ``team_slug`` picks among several teams' models of that name. The model is a light instance
    (pk, team_id, name). Raises Http404 when no visible model has the name or it has no such
    alias; ValidationError (400) naming the teams when several match and no team was given.
    """
    if "\x00" in name or "\x00" in (alias or ""):  # no name holds one; PostgreSQL refuses it
        raise Http404(f"no model named {name!r}")
    with connection.cursor() as cursor:
        cursor.execute(_lookup_sql(), [alias or "", name_key(name)])
        found = cursor.fetchall()
    scope = team_scope(user, VIEW)
    found = [row for row in found if isinstance(scope, AllTeams) or row[1] in scope]
    if team_slug is not None:
        found = [row for row in found if row[3] == team_slug]
    if not found:
        raise Http404(f"no model named {name!r}")
    if len(found) > 1:
        teams = ", ".join(row[3] for row in found)
        raise ValidationError(
            {"team": f"several teams have a model named {name!r} ({teams}); add ?team=<slug>"}
        )
    model_id, team_id, model_name, _slug, version_id, sha256, canary_id, canary_percent, shadow_id = found[0]
    model = RegisteredModel(pk=model_id, team_id=team_id, name=model_name)
    if alias is None:
        return model, None
    if version_id is None:
        raise Http404(f"model {model_name} has no alias {alias!r}")
    return model, Route(version_by_id(version_id, sha256), alias, canary_id, canary_percent or 0, shadow_id)


class _VersionCache:
    """Model versions by id and sha256, read once per process: what serving reads of one (its
    number, artifact, flavor, signature) never changes after registration; the sha256 (read by
    the request's one query) guards against an id that names other content (a restored
    database)."""

    def __init__(self, size: int = 256) -> None:
        self.lock = threading.Lock()
        self.size = size
        self.found: OrderedDict[int, ModelVersion] = OrderedDict()

    def get(self, pk: int, sha256: str) -> ModelVersion:
        with self.lock:
            version = self.found.get(pk)
        if version is None or version.sha256 != sha256:
            version = ModelVersion.objects.select_related("model").get(pk=pk)
            with self.lock:
                self.found[pk] = version
                while len(self.found) > self.size:
                    self.found.popitem(last=False)
        return version


_versions = _VersionCache()


def version_by_id(pk: int, sha256: str | None = None) -> ModelVersion:
    """Model version ``pk`` (with its model): given its ``sha256``, from this process's cache
    after the first read; without, read now (a canary or shadow: one query when used)."""
    if sha256 is None:
        return ModelVersion.objects.select_related("model").get(pk=pk)
    return _versions.get(pk, sha256)


def route_by_number(model: RegisteredModel, number: int) -> Route:
    """Version ``number`` of ``model`` (not deleted). Http404 when there is none."""
    if not 1 <= number < 2**31:  # past the column's range: no such version, on every database
        raise Http404(f"model {model.name} has no version {number}")
    version = (
        ModelVersion.objects.filter(model=model, version=number)
        .exclude(status=ModelVersion.Status.DELETED)
        .first()
    )
    if version is None:
        raise Http404(f"model {model.name} has no version {number}")
    return Route(version, "")


def input_columns(version: ModelVersion) -> list[Column] | None:
    """The columns a request must send to ``version`` (``rows.columns_of``)."""
    return columns_of(version.signature, version.flavor_details)


def ensure_predictable(version: ModelVersion) -> None:
    """ValidationError naming the flavor when ``version`` cannot predict (``predictors.refusal``)."""
    why = predictors.refusal(version.flavor)
    if why:
        raise ValidationError({"model_version": f"{version}: {why}"})


class _InProcessCache:
    """Loaded in-house predictors of this process, by version id and sha256."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.loaded: OrderedDict[tuple[int, str], predictors.Predictor] = OrderedDict()

    def get(self, version: ModelVersion) -> predictors.Predictor:
        key = (version.pk, version.sha256)
        with self.lock:
            found = self.loaded.get(key)
            if found is not None:
                self.loaded.move_to_end(key)
                return found
            if not self.loaded:
                import torch

                # One thread per web worker: the web processes share the host's cores (issue 17).
                torch.set_num_threads(1)
            # Loaded under the lock: two threads asking for a new version load it once.
            loaded = predictors.load(
                version.path, flavor=version.flavor, sha256=version.sha256, name=str(version)
            )
            self.loaded[key] = loaded
            while len(self.loaded) > _CACHE_SIZE:
                self.loaded.popitem(last=False)
            return loaded


_cache = _InProcessCache()


def server_spec(version: ModelVersion) -> supervisor.ServerSpec:
    """The model server of ``version`` on this host, from the settings."""
    return supervisor.ServerSpec(
        folder=settings.STEWARD_MODEL_SERVER_DIR,
        key=f"mv{version.pk}-{version.sha256[:12]}",
        model={
            "path": str(version.path),
            "flavor": version.flavor,
            "sha256": version.sha256,
            "name": str(version),
        },
        idle_s=settings.STEWARD_MODEL_SERVER_IDLE_S,
        threads=settings.STEWARD_MODEL_SERVER_THREADS,
        start_timeout_s=settings.STEWARD_MODEL_SERVER_START_TIMEOUT_S,
        sandbox=server_sandbox(),
        sandbox_uid=settings.STEWARD_SANDBOX_UID,
    )


def server_sandbox() -> str:
    """``STEWARD_SANDBOX`` made concrete for model servers (bwrap where usable). Raises
    supervisor.ServerError for ``bwrap`` on a host where it cannot run."""
    try:
        return sandbox.resolve_mode(settings.STEWARD_SANDBOX)
    except sandbox.SandboxError as exc:
        raise supervisor.ServerError(f"no model server can start: {exc}") from exc


def served_by(version: ModelVersion) -> str:
    """``in_process`` for Steward's own flavor, ``model_server`` for the flavors whose loading runs code."""
    return IN_PROCESS if version.flavor == predictors.STEWARD_TABULAR else MODEL_SERVER


def confidences(version: ModelVersion, rows: Rows) -> list[float | None] | None:
    """The probability of the class predicted for each row (issue 11: monitors estimate a
    classifier's accuracy from it while labels are late), or None: a regression, a model that
    gives no probabilities, or a flavor served by a model server (its protocol answers the
    predictions only). Never fails: a logged row simply carries none."""
    if served_by(version) != IN_PROCESS or version.signature.get("task") != "classification":
        return None
    try:
        import pandas as pd

        found = _cache.get(version).predict_class_proba(pd.DataFrame.from_records(rows.records))
    except Exception:
        logger.warning("no confidences from %s", version, exc_info=True)
        return None
    if found is None or not len(found.columns):
        return None
    return [float(value) for value in found.to_numpy(dtype="float64").max(axis=1)]


def score(version: ModelVersion, rows: Rows) -> tuple[list[Any], float]:
    """(JSON predictions of ``rows``, milliseconds taken) by ``version``. Raises
    ValidationError when the version refuses the rows or does not load;
    supervisor.ServerError when its model server fails for another reason."""
    started = time.perf_counter()
    try:
        if served_by(version) == IN_PROCESS:
            values = [predictors.json_value(v) for v in _cache.get(version).predict_records(rows.records)]
        else:
            values = supervisor.predict(server_spec(version), rows.records, rows.columns)
    except predictors.PredictorError as exc:
        raise ValidationError({"rows": str(exc)}) from exc
    except supervisor.ServerError as exc:
        if exc.is_user_error:
            raise ValidationError({"rows": str(exc)}) from exc
        raise
    # NaN or an infinity (json_value makes them None): inputs far outside what the model saw
    # overflow it. Refused, not answered or logged as a number nobody can use.
    unusable = [str(row) for row, value in enumerate(values) if value is None]
    if unusable:
        raise ValidationError(
            {
                "rows": f"row(s) {', '.join(unusable[:10])}: the prediction is not a finite number "
                "(an input far outside the values the model was trained on?)"
            }
        )
    return values, (time.perf_counter() - started) * 1000.0
