"""Where an ``mlflow-artifacts:/`` path lives and who may touch it (issue 9).

One definition, used by the artifact proxy (``runners.api.mlflow.artifacts``) and by the source
resolvers that register versions from runs (``runs:/``, ``models:/m-...``, ``mlflow-artifacts:/``):

* ``experiments/<experiment id>/<run id>/artifacts/<path>``: a tracked run's artifacts;
* ``experiments/<experiment id>/models/<logged model id>/artifacts/<path>``: a logged model's;
* ``steward/model-versions/<model version pk>/<path>``: a registered version's stored files
  (read-only, served through ``governance.artifacts.open_version_file``).

The first two are recorded file by file in the artifact store (``runners.run_artifacts``).
An object the user may not view is ObjectDoesNotExist (404, not 403: no existence oracle); a path
with ``..``, ``.``, empty segments, a backslash or a NUL is a ValidationError (400).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ObjectDoesNotExist, ValidationError

from governance.actions.checks import ensure_can
from governance.models import ModelVersion
from governance.permissions import CHANGE
from runners.models import Job, LoggedModel, LoggedModelStatus
from runners.run_artifacts import artifact_prefix, joined
from runners.tracking import decimal_pk, mlflow_runs, run_artifact_location, run_pk

if TYPE_CHECKING:
    from django.contrib.auth.models import User

    from governance.job_scope import JobScope

NOT_FOUND = "no artifact {path!r} that you may see"


@dataclass(frozen=True)
class ArtifactPlace:
    """A resolved artifact path: the owning ``run`` or ``logged_model`` (files under the path
    ``prefix``), or a registered ``version`` (read-only); ``relative`` is the path inside it
    ("" = its root)."""

    relative: str
    team_id: int
    prefix: str = ""
    run: Job | None = None
    logged_model: LoggedModel | None = None
    version: ModelVersion | None = None

    @property
    def path(self) -> str:
        """Its full path in ``runners.run_artifacts`` (not for versions)."""
        assert self.prefix
        return joined(self.prefix, self.relative)

    @property
    def source_job_id(self) -> int | None:
        if self.run is not None:
            return self.run.pk
        if self.logged_model is not None:
            return self.logged_model.source_run_id
        return None


def checked_path(raw: Any) -> list[str]:
    """The segments of an artifact path, refusing traversal: ValidationError on ``path``."""
    if not isinstance(raw, str):
        raise ValidationError({"path": "an artifact path is a string"})
    path = raw.strip("/")
    if "\\" in path or "\x00" in path:
        raise ValidationError(
            {"path": f"{raw[:200]!r}: backslashes and NUL are not allowed in artifact paths"}
        )
    parts = path.split("/") if path else []
    if any(part in ("", ".", "..") for part in parts):
        raise ValidationError({"path": f"{raw[:200]!r}: artifact paths may not contain '..', '.' or '//'"})
    return parts


def locate(
    raw_path: str, user: User, *, writes: bool = False, job_scope: JobScope | None = None
) -> ArtifactPlace:
    """Resolve an artifact path for ``user``; ``writes`` asks for CHANGE on the team (and refuses
    registered versions, which are immutable). With ``job_scope`` (a job token, issue 17) only
    its run's, its logged models' and its model versions' files, and those of the model versions
    its job was given (read-only), are reachable. Raises
    ValidationError for a malformed path, ObjectDoesNotExist for an unknown or invisible owner,
    PermissionDenied for a write without CHANGE or outside the job's scope."""
    parts = checked_path(raw_path)
    missing = ObjectDoesNotExist(NOT_FOUND.format(path=raw_path[:200]))
    if len(parts) >= 3 and parts[:2] == ["steward", "model-versions"]:
        if writes:
            raise ValidationError({"path": "a registered model version's files are immutable"})
        version_pk = decimal_pk(parts[2])
        if version_pk is None:
            raise missing
        version = ModelVersion.objects.restrict(user).select_related("model").filter(pk=version_pk).first()
        if job_scope is not None:
            job_scope.ensure_readable(
                version.pk if version else None,
                version.source_job_id if version else None,
                f"model version {parts[2]!r}",
            )
        if version is None or version.status == ModelVersion.Status.DELETED:
            raise missing
        return ArtifactPlace(relative="/".join(parts[3:]), team_id=version.model.team_id, version=version)
    experiment_id = decimal_pk(parts[1]) if len(parts) >= 4 and parts[0] == "experiments" else None
    if job_scope is not None:
        job_scope.ensure_experiment(experiment_id, parts[1] if len(parts) > 1 else raw_path[:100])
    if experiment_id is not None:
        if parts[2] == "models" and len(parts) >= 5 and parts[4] == "artifacts":
            model = (
                LoggedModel.objects.restrict(user)
                .select_related("experiment")
                .filter(pk=parts[3], experiment_id=experiment_id, deleted_at__isnull=True)
                .first()
            )
            if job_scope is not None:
                job_scope.ensure_output(model.source_run_id if model else None, f"logged model {parts[3]!r}")
            if model is None:
                raise missing
            if writes and model.status == LoggedModelStatus.READY:
                raise ValidationError(
                    {"path": f"logged model {model.pk} is finalized: its artifacts are read-only"}
                )
            place = ArtifactPlace(
                relative="/".join(parts[5:]),
                team_id=model.experiment.team_id,
                prefix=artifact_prefix(model.artifact_location),
                logged_model=model,
            )
        elif parts[3] == "artifacts":
            if job_scope is not None:
                job_scope.ensure_run(run_pk(parts[2]), parts[2])
            run = (
                mlflow_runs()
                .restrict(user)
                .filter(pk=run_pk(parts[2]) or 0, experiment_id=experiment_id)
                .first()
            )
            if run is None:
                raise missing
            place = ArtifactPlace(
                relative="/".join(parts[4:]),
                team_id=run.team_id,
                prefix=artifact_prefix(run_artifact_location(run)),
                run=run,
            )
        else:
            raise missing
        if writes:
            ensure_can(user, CHANGE, place.team_id)
        return place
    raise missing
