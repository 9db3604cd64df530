"""Node types and how to find their rows, without importing the apps that own them.

Each node model provides ``objects.restrict(user)`` (governance's RestrictedQuerySet), its
label as ``lineage_label_columns`` + ``lineage_label(*values)`` (its ``__str__`` too) and its page
as ``lineage_url_name`` (+ ``lineage_url_column``, default the primary key); lineage uses only
that duck-typed surface.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import NamedTuple

from django.apps import apps
from django.db import connection
from django.urls import reverse

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
    # An evaluation (issue 15): model version + dataset version -> evaluation.
    "evaluation": "governance.Evaluation",
}


class NodeRef(NamedTuple):
    """A lineage node: its type (a ``NODE_MODELS`` key) and its row's id. A named tuple, not a
    dataclass: walks hash thousands of them (tuples hash and compare in C)."""

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
    """Describe the nodes among ``refs`` that ``user`` may view: ``{ref: {id, type, label,
    url}}``, one query per node type.

    Reads the label's columns only (each node model's ``lineage_label_columns``, formatted by
    its ``lineage_label``, which its ``__str__`` uses too) and builds the URL from its
    ``lineage_url_name`` with the row's ``lineage_url_column`` (default: the primary key): an
    impact report labels hundreds of nodes, and a model instance with its related rows cost
    ~0.1 ms each (``benchmarks/bench_lineage_impact.py``).
    """
    described: dict[NodeRef, dict] = {}
    by_type: dict[str, set[int]] = {}
    for ref in refs:
        by_type.setdefault(ref.type, set()).add(ref.id)
    for node_type, ids in by_type.items():
        model = apps.get_model(NODE_MODELS[node_type])
        url_of = _url_maker(model.lineage_url_name)
        columns = ("pk", getattr(model, "lineage_url_column", "pk"), *model.lineage_label_columns)
        rows = with_ids(model.objects.restrict(user), ids).order_by().values_list(*columns)
        for pk, url_arg, *label_values in rows:
            key = f"{node_type}:{pk}"
            described[NodeRef(node_type, pk)] = {
                "id": key,
                "type": node_type,
                "label": model.lineage_label(*label_values),
                "url": url_of(url_arg),
            }
    return described


def with_ids(queryset, ids: set[int] | list[int], field: str = "pk"):
    """``queryset`` limited to rows whose ``field`` (the primary key or a foreign key) is one
    of ``ids``. On PostgreSQL one array parameter,
    ``id = ANY(%s)``: one parameter per id costs ~10 ms per thousand ids in quoting and
    parsing, and ``IN (SELECT unnest(...))`` is planned as a hash join over every row of the
    user's teams (measured, ``benchmarks/bench_lineage_impact.py``); ``= ANY`` is an index scan."""
    if connection.vendor == "postgresql" and len(ids) > 50:
        meta = queryset.model._meta
        column = meta.pk.column if field == "pk" else meta.get_field(field).column
        where = f'"{meta.db_table}"."{column}" = ANY(%s::bigint[])'
        # The array as its text form: psycopg's list adapter costs ~1 ms per thousand ids.
        array = "{" + ",".join(str(int(i)) for i in ids) + "}"
        return queryset.extra(where=[where], params=[array])  # noqa: S610 (our names; ids bound)
    return queryset.filter(**{f"{field}__in": ids})


# An id no row has, reversed once per URL name and then replaced: reverse() per node costs
# ~30 us, which hundreds of nodes an impact report labels add up to.
_URL_SENTINEL = "9182736450918273645"


@lru_cache(maxsize=64)
def _url_maker(url_name: str) -> Callable[[int], str]:
    """``pk -> reverse(url_name, args=[pk])`` for a URL whose only argument is an integer id."""
    prefix, found, suffix = reverse(url_name, args=[_URL_SENTINEL]).rpartition(_URL_SENTINEL)
    if not found:
        raise ValueError(f"URL {url_name!r} does not contain its id argument")
    return lambda pk: f"{prefix}{pk}{suffix}"
