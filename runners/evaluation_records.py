"""An evaluation record and its lineage edges in one transaction (issue 15): the one way the
evaluation job and the MLflow door (self-reported evaluations) record one. The record's rules are
``governance.actions.evaluations.do_record_evaluation``; the edges are lineage's, recorded here
because governance imports no other app."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from governance.actions.evaluations import do_record_evaluation
from governance.models import Evaluation
from lineage.actions import do_record_edges
from lineage.models import Relation
from lineage.nodes import NodeRef


def record_evaluation(**arguments: Any) -> Evaluation:
    """``do_record_evaluation(**arguments)`` (its arguments, checks and errors), plus the edges
    model version, dataset version and champion -[input]-> evaluation and job -[output]->
    evaluation, committed together: a refused record leaves no edge."""
    with transaction.atomic():
        evaluation = do_record_evaluation(**arguments)
        node = NodeRef.of(evaluation)
        sources = [evaluation.model_version_id, evaluation.dataset_version_id, evaluation.champion_version_id]
        kinds = ["model_version", "dataset_version", "model_version"]
        edges = [
            (NodeRef(kind, pk), node, Relation.INPUT)
            for kind, pk in zip(kinds, sources, strict=True)
            if pk is not None
        ]
        if evaluation.job_id is not None:
            edges.append((NodeRef("job", evaluation.job_id), node, Relation.OUTPUT))
        do_record_edges(edges)
    return evaluation
