"""Small lineage graphs built from real rows: tiny dataset versions joined by recorded edges."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from governance.actions.datasets import do_create_dataset, do_register_dataset_version
from governance.models import DatasetVersion
from lineage.actions import do_record_edges
from lineage.nodes import NodeRef


@pytest.fixture
def tiny_versions(tmp_path):
    """``make(team, n, actor)``: ``n`` real dataset versions of a 3-row CSV in a new dataset of
    ``team``, as NodeRefs (registered through the action, so RBAC and labels are real)."""
    counter = iter(range(10_000))

    def make(team, n: int, actor) -> list[NodeRef]:
        dataset = do_create_dataset(team=team, name=f"tiny-{next(counter)}", actor=actor)
        refs = []
        for i in range(n):
            path = Path(tmp_path) / f"{dataset.name}-{i}.csv"
            path.write_text(f"a,b\n{i},1\n{i},2\n{i},3\n")
            version = do_register_dataset_version(
                dataset=dataset,
                file_path=path,
                filename=path.name,
                source=DatasetVersion.Source.PATH,
                actor=actor,
            )
            refs.append(NodeRef.of(version))
        return refs

    return make


def chain(refs: list[NodeRef]) -> None:
    """Record ``refs[0] -> refs[1] -> ...`` (relation output: each derived from the previous)."""
    do_record_edges((a, b, "output") for a, b in itertools.pairwise(refs))
