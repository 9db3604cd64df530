"""Lineage pages: the explorer (``/lineage/``) and the graph fragment "+" redraws (htmx)."""

from __future__ import annotations

from urllib.parse import urlencode

from django.apps import apps
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse

from lineage.forms import GraphQueryForm
from lineage.layout import layout
from lineage.nodes import NODE_MODELS, NodeRef
from lineage.queries import Direction, walk

# The "+" of a node adds its neighbours one hop each way.
EXPAND_DEPTH = 1
RECENT_PER_TYPE = 8


def expanded_graph(
    user,
    root: NodeRef,
    direction: Direction,
    depth: int,
    expand: list[NodeRef],
    types: set[str] | None = None,
) -> dict:
    """``walk``'s graph around ``root`` joined with each visible node of ``expand`` and its
    neighbours (``EXPAND_DEPTH`` hops both ways); nodes keep their distance from ``root`` where
    the walk reached them, else the expanded node's distance + its hops. Raises LookupError if
    ``root`` is not visible; an invisible expanded node adds nothing."""
    graph = walk(user, root, direction, depth, types=types)
    nodes = {node["id"]: node for node in graph["nodes"]}
    edges = {(e["source"], e["target"], e["relation"]): e for e in graph["edges"]}
    for ref in expand:
        if ref.key not in nodes:
            continue
        try:
            more = walk(user, ref, "both", EXPAND_DEPTH, types=types)
        except LookupError:
            continue
        base = nodes[ref.key]["distance"]
        for node in more["nodes"]:
            nodes.setdefault(node["id"], dict(node, distance=base + node["distance"]))
        for edge in more["edges"]:
            edges[(edge["source"], edge["target"], edge["relation"])] = edge
    ordered = sorted(nodes.values(), key=lambda node: node["distance"])
    return {"root": root.key, "nodes": ordered, "edges": list(edges.values())}


def _graph_context(request: HttpRequest, form: GraphQueryForm) -> dict:
    query = form.cleaned_data
    expand = form.expanded()
    graph = expanded_graph(
        request.user, query["node"], query["direction"], query["depth"], expand, set(query["types"]) or None
    )
    params = {"node": query["node"].key, "direction": query["direction"], "depth": query["depth"]}
    graph_url = (
        reverse("lineage_graph") + "?" + urlencode(params) + "".join(f"&types={t}" for t in query["types"])
    )
    return {
        "graph": graph,
        "drawing": layout(graph["root"], graph["nodes"], graph["edges"]),
        "graph_url": graph_url,
        "expanded": [ref.key for ref in expand],
    }


@login_required
def lineage_explorer(request: HttpRequest) -> HttpResponse:
    """Pick a node (by key, or from the newest of each type the user may view) and see its graph."""
    context: dict = {"section": "lineage", "recent": _recent_nodes(request.user)}
    status = 200
    if "node" in request.GET:
        form = GraphQueryForm(request.GET)
        if form.is_valid():
            try:
                context.update(_graph_context(request, form))
            except LookupError as exc:
                form.add_error("node", str(exc))
                status = 404
        if form.errors and status == 200:
            status = 400
    else:
        form = GraphQueryForm(initial={"direction": "both", "depth": 3})
    context["form"] = form
    return render(request, "lineage/explorer.html", context, status=status)


@login_required
def lineage_graph(request: HttpRequest) -> HttpResponse:
    """The graph include alone, for htmx to swap in when "+" expands a node."""
    form = GraphQueryForm(request.GET)
    if not form.is_valid():
        return HttpResponse(form.errors.as_text(), status=400, content_type="text/plain")
    try:
        context = _graph_context(request, form)
    except LookupError as exc:
        return HttpResponse(str(exc), status=404, content_type="text/plain")
    if form.errors:  # an unparsable expand key
        return HttpResponse(form.errors.as_text(), status=400, content_type="text/plain")
    return render(request, "includes/lineage_graph.html", context)


def _recent_nodes(user) -> list[dict]:
    """The newest ``RECENT_PER_TYPE`` visible rows of each node type, as pickable nodes."""
    recent = []
    for node_type, label in NODE_MODELS.items():
        model = apps.get_model(label)
        for obj in model.objects.restrict(user).select_related().order_by("-pk")[:RECENT_PER_TYPE]:
            ref = NodeRef(node_type, obj.pk)
            recent.append({"id": ref.key, "type": node_type, "label": str(obj)})
    return recent
