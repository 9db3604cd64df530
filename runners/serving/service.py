"""What a predict request reads and computes (issue 17): the model by name among the caller's,
the version an alias points at with its serving policy (one query, per request, so a moved alias
is served at once), and the predictions of a version.

Steward's own flavor is predicted IN this process (loaded once per process and version; torch is
imported here on first use, never at the web process's start). An MLflow model, whose loading
runs code, is predicted by its model server (``runners.serving.supervisor``), never here.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db.models import OuterRef, Subquery
from django.http import Http404

from governance.models import ModelAlias, ModelVersion, RegisteredModel
from governance.names import name_key
from governance.permissions import VIEW
from runners.models import ServingPolicy
from runners.serving import predictors, supervisor
from runners.serving.rows import Column, Rows, columns_of

if TYPE_CHECKING:
    from django.contrib.auth.models import User

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


def find_model(user: User, name: str, team_slug: str | None) -> RegisteredModel:
    """The live model called ``name`` (by its name key) among those ``user`` may view; ``team_slug``
    picks among several teams' models of that name. Http404 when none; ValidationError (400)
    naming the teams when several and no team was given."""
    found = list(
        RegisteredModel.objects.restrict(user, VIEW)
        .filter(name_key=name_key(name), deleted_at__isnull=True)
        .select_related("team")
        .order_by("team__slug")
    )
    if team_slug is not None:
        found = [model for model in found if model.team.slug == team_slug]
    if not found:
        raise Http404(f"no model named {name!r}")
    if len(found) > 1:
        teams = ", ".join(model.team.slug for model in found)
        raise ValidationError(
            {"team": f"several teams have a model named {name!r} ({teams}); add ?team=<slug>"}
        )
    return found[0]


def route_by_alias(model: RegisteredModel, alias: str) -> Route:
    """The version ``alias`` points at now, with its serving policy, in one query. Http404 when
    the model has no such alias."""
    policy = ServingPolicy.objects.filter(registered_model=model, alias=OuterRef("name"))
    found = (
        ModelAlias.objects.filter(model=model, name=alias)
        .select_related("model_version")
        .annotate(
            canary_id=Subquery(policy.values("canary_version_id")[:1]),
            canary_percent=Subquery(policy.values("canary_percent")[:1]),
            shadow_id=Subquery(policy.values("shadow_version_id")[:1]),
        )
        .first()
    )
    if found is None:
        raise Http404(f"model {model.name} has no alias {alias!r}")
    return Route(
        found.model_version,
        alias,
        found.canary_id,
        found.canary_percent or 0,
        found.shadow_id,
    )


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
    )


def served_by(version: ModelVersion) -> str:
    """``in_process`` for Steward's own flavor, ``model_server`` for the flavors whose loading runs code."""
    return IN_PROCESS if version.flavor == predictors.STEWARD_TABULAR else MODEL_SERVER


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
    return values, (time.perf_counter() - started) * 1000.0
