"""Unrestricted reads of the lineage graph for other apps' system code (issue 8: monitoring used to
query ``LineageEdge`` itself). Callers restrict what they show people; these only follow edges."""

from __future__ import annotations

from django.db.models import QuerySet

from lineage.models import LineageEdge, Relation
from lineage.nodes import NodeRef


def outputs_of_runs_reading(source: NodeRef, *, run_type: str, output_type: str) -> QuerySet:
    """Ids of the ``output_type`` nodes written by ``run_type`` nodes that read ``source``:
    ``source -[input]-> run -[output]-> output``.

    A lazy values queryset of ``target_id``, to use as a subquery (``pk__in=``): the whole walk is
    one SQL statement, with the runs as a nested subquery. Example: the dataset versions inference
    jobs wrote from a model version, ``outputs_of_runs_reading(NodeRef("model_version", 7),
    run_type="job", output_type="dataset_version")``.
    """
    runs = LineageEdge.objects.filter(
        source_type=source.type, source_id=source.id, target_type=run_type, relation=Relation.INPUT
    ).values("target_id")
    return LineageEdge.objects.filter(
        source_type=run_type, source_id__in=runs, target_type=output_type, relation=Relation.OUTPUT
    ).values("target_id")
