"""Node types and how to find their rows, without importing the apps that own them.

Each node model provides ``objects.restrict(user)`` (governance's RestrictedQuerySet),
``__str__`` and ``get_absolute_url``; lineage uses only that duck-typed surface.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.apps import apps

# Ids are 64-bit database keys; a longer number is an error, not an overflow.
MAX_NODE_ID = 2**63 - 1

NODE_MODELS: dict[str, str] = {
    "dataset_version": "governance.DatasetVersion",
    "model_version": "governance.ModelVersion",
    "job": "runners.Job",
    # A dataset an MLflow run read that matches no Steward dataset version (issue 9).
    "external_dataset": "runners.ExternalDataset",
    # The code a code run ran (issue 17): code version + dataset versions -> job -> outputs.
    "code_version": "runners.CodeVersion",
    # OpenLineage ingest (issue 10): external jobs, their runs, and datasets matching no version.
    "openlineage_job": "runners.OpenLineageJob",
    "openlineage_run": "runners.OpenLineageRun",
    "openlineage_dataset": "runners.OpenLineageDataset",
}


@dataclass(frozen=True)
class NodeRef:
    type: str
    id: int

    @property
    def key(self) -> str:
        return f"{self.type}:{self.id}"

    @classmethod
    def parse(cls, key: str) -> NodeRef:
        """Parse ``"<type>:<id>"``; raises ValueError naming what is wrong."""
        node_type, _, raw_id = key.partition(":")
        if node_type not in NODE_MODELS:
            raise ValueError(f"unknown node type {node_type!r}; one of {', '.join(NODE_MODELS)}")
        if not (raw_id.isascii() and raw_id.isdigit()) or int(raw_id) > MAX_NODE_ID:
            raise ValueError(f"node id must be an integer from 0 to {MAX_NODE_ID}, got {raw_id[:30]!r}")
        return cls(node_type, int(raw_id))

    @classmethod
    def of(cls, obj) -> NodeRef:
        label = f"{obj._meta.app_label}.{obj._meta.object_name}"
        for node_type, model_label in NODE_MODELS.items():
            if model_label == label:
                return cls(node_type, obj.pk)
        raise ValueError(f"{label} is not a lineage node type")


def visible_nodes(user, refs: set[NodeRef]) -> dict[NodeRef, dict]:
    """Describe the nodes among ``refs`` that ``user`` may view: one query per node type."""
    described: dict[NodeRef, dict] = {}
    by_type: dict[str, set[int]] = {}
    for ref in refs:
        by_type.setdefault(ref.type, set()).add(ref.id)
    for node_type, ids in by_type.items():
        model = apps.get_model(NODE_MODELS[node_type])
        # select_related(): labels (``str``) read the non-null relations; one query per type.
        for obj in model.objects.restrict(user).filter(pk__in=ids).select_related():
            ref = NodeRef(node_type, obj.pk)
            described[ref] = {
                "id": ref.key,
                "type": node_type,
                "label": str(obj),
                "url": obj.get_absolute_url(),
            }
    return described
