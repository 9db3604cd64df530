"""The evaluation a promotion request starts (issue 15): registered with governance
(``governance.evaluation_starter``) by ``RunnersConfig.ready``."""

from __future__ import annotations

from typing import Any

from governance.models import DatasetVersion, ModelAlias, PromotionRequest
from runners.actions import do_submit_job
from runners.models import JobKind


def start_evaluation(request: PromotionRequest, dataset_version: DatasetVersion, spec: dict[str, Any]) -> int:
    """Submit an evaluation job of the request's candidate on ``dataset_version`` with the gate
    policy's ``spec``, on behalf of the requester (audited ``job.submit`` like any job), against
    the version holding the request's alias (no comparison while none other holds it). Returns the
    job's id; ValidationError / PermissionDenied as ``do_submit_job`` refuses."""
    version = request.model_version
    held = (
        ModelAlias.objects.filter(model_id=version.model_id, name=request.alias)
        .exclude(model_version=version)
        .exists()
    )
    job = do_submit_job(
        kind=JobKind.EVALUATE,
        dataset_version=dataset_version,
        model_version=version,
        spec={**spec, "champion_alias": request.alias if held else None},
        actor=request.requested_by,
    )
    return job.pk
