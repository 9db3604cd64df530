"""What a job-scoped API token may do (issue 17): the one definition both doors use.

A code run's code gets a token of scope ``job`` (``governance.actions.tokens.do_issue_job_token``)
acting for the run's submitter. It may use the MLflow API of its own run only:

* its run (id == the job id): get, update, log metrics/params/tags/inputs/outputs/models,
  artifacts up and down; ``runs/search`` answers that run only;
* its experiment: get by id or by name; ``experiments/search`` answers that experiment only;
* the logged models whose source run is its job: create, get, finalize, tag, delete, artifacts;
* the registry: create a registered model in the job's team, create a model version whose source
  is its run's output, and read, describe or tag the versions it registered
  (``model-versions/search`` answers those only);
* the model versions the job was GIVEN as inputs (``models`` of the code run): read only, their
  description (``model-versions/get``), download URI and stored files through the artifact proxy,
  and their registered model (``registered-models/get``, showing only the versions it may read,
  no aliases: the client checks the model before a download URI), which is what
  ``mlflow.pyfunc.load_model("models:/<name>/<version>")`` and
  ``mlflow.artifacts.download_artifacts`` call; never tagged, described, aliased or deleted.

Everything else is 403 PERMISSION_DENIED naming this rule: other runs and experiments, creating
experiments or runs, deleting or restoring runs, reading registered models, reading versions it
did not register and was not given, writing to given ones, aliases and stages (people promote,
code does not), and every DRF endpoint. A job token whose run is not running is dead (401), like
a revoked or expired one.

Governance imports no other app, so runners registers how a job's scope is read
(``register_job_scope_loader`` in ``RunnersConfig.ready``), as it registers source resolvers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from django.core.exceptions import PermissionDenied
from django.db.models import Q

RULE = "a job token may only use the MLflow API of its own run (job #{job_id})"


def refusal(job_id: int | None) -> str:
    """The rule's sentence for the token of job ``job_id``."""
    return RULE.format(job_id=job_id)


@dataclass(frozen=True)
class JobScope:
    """What the token of code run ``job_id`` may reach: the run, its ``team_id`` (where it may
    register models), its ``experiment_id`` (None: the run is no MLflow run) and its ``state``
    (a job state's value; the token lives while it is ``running``); ``model_versions``: the pks
    of the model versions the job was given as inputs, which it may read."""

    job_id: int
    team_id: int
    experiment_id: int | None
    state: str
    model_versions: frozenset[int] = frozenset()

    @property
    def is_live(self) -> bool:
        return self.state == "running"

    def refuse(self, what: str) -> PermissionDenied:
        """The PermissionDenied (403) for ``what``, naming the rule; the caller raises it."""
        return PermissionDenied(f"{refusal(self.job_id)}; {what}")

    def ensure_run(self, run_pk: int | None, shown: object = None) -> None:
        """The run (job) id ``run_pk`` is the token's own; ``shown`` is what the client sent.
        Checked on the id, before any lookup, so a refusal says nothing of other runs."""
        if run_pk != self.job_id:
            raise self.refuse(f"run {str(shown if shown is not None else run_pk)[:100]!r} is another run")

    def ensure_experiment(self, experiment_pk: int | None, shown: object = None) -> None:
        """The experiment ``experiment_pk`` is the run's own."""
        if experiment_pk is None or experiment_pk != self.experiment_id:
            raise self.refuse(
                f"experiment {str(shown if shown is not None else experiment_pk)[:100]!r} is not its run's"
            )

    def ensure_team(self, team_id: int | None, what: str) -> None:
        """``what`` (a registered model) belongs to the job's team."""
        if team_id != self.team_id:
            raise self.refuse(f"{what} is not in the job's team")

    def ensure_output(self, source_job_id: int | None, what: str) -> None:
        """``what`` (a logged model, a model version, a registration source) came from the run."""
        if source_job_id != self.job_id:
            raise self.refuse(f"{what} is not an output of its run")

    def readable_versions(self) -> Q:
        """The model versions (a filter on ``ModelVersion``) it may read: those its run registered
        and those the job was given; the same rule as ``ensure_readable``."""
        return Q(source_job_id=self.job_id) | Q(pk__in=sorted(self.model_versions))

    def ensure_readable(self, version_pk: int | None, source_job_id: int | None, what: str) -> None:
        """``what`` (model version ``version_pk``, None when not found) may be read: its run
        registered it, or the job was given it as an input (issue 17). A missing version is refused
        the same way as one outside the scope, so a refusal says nothing of what exists."""
        if source_job_id is not None and source_job_id == self.job_id:
            return
        if version_pk is not None and version_pk in self.model_versions:
            return
        raise self.refuse(f"{what} is neither an output of its run nor a model version the job was given")


JobScopeLoader = Callable[[int], JobScope | None]
_loader: list[JobScopeLoader] = []


def register_job_scope_loader(loader: JobScopeLoader) -> None:
    """Read job scopes with ``loader(job_id) -> JobScope | None`` (None: no such code run);
    registering again replaces it."""
    _loader[:] = [loader]


def load_job_scope(job_id: int | None) -> JobScope | None:
    """The scope of code run ``job_id``; None when it does not exist (or no loader is registered,
    so a job token authenticates nowhere)."""
    if job_id is None or not _loader:
        return None
    return _loader[0](job_id)
