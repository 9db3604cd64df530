"""A layered, left-to-right drawing of a lineage graph, computed on the server (no Django).

Sugiyama's scheme, kept small: each node's column is its longest path from a source (data flows
left to right), rows inside a column are ordered by the barycentre of their neighbours (a few
sweeps each way, Sugiyama, Tagawa and Toda 1981), edges are cubic curves. The page draws the
result as SVG (``templates/includes/lineage_graph.html``): it needs no JavaScript library, works
offline and is the same for every browser and for the tests that read it.
"""

from __future__ import annotations

import zlib
from collections import deque

NODE_WIDTH = 190
NODE_HEIGHT = 40
GAP_X = 70
GAP_Y = 18
MARGIN = 10
LABEL_CHARS = 26
# Beyond this many nodes a drawing stops being readable; the nearest are drawn, the rest counted.
MAX_DRAWN = 300
SWEEPS = 4

# Shape and colour per node type; a type added later (OpenLineage jobs, ...) gets a shape by
# what its name says and a colour from its name, so every type is drawn.
SHAPES = {
    "dataset_version": "data",
    "external_dataset": "data",
    "job": "run",
    "model_version": "model",
    "code_version": "code",
    "model_alias": "tag",
    "monitor": "watch",
    "alert": "alarm",
    "evaluation": "watch",
}
COLOURS = {
    "dataset_version": "#2b6cb0",
    "external_dataset": "#718096",
    "job": "#b7791f",
    "model_version": "#2f855a",
    "code_version": "#6b46c1",
    "model_alias": "#0f766e",
    "monitor": "#9c4221",
    "alert": "#c53030",
    "evaluation": "#805ad5",
}
_PALETTE = ("#4a5568", "#805ad5", "#d53f8c", "#319795", "#dd6b20", "#3182ce")


def shape_of(node_type: str) -> str:
    """The shape family of ``node_type``: data, run, model, code, tag, watch or alarm."""
    if node_type in SHAPES:
        return SHAPES[node_type]
    if "dataset" in node_type:
        return "data"
    if "job" in node_type or "run" in node_type:
        return "run"
    return "code"


def colour_of(node_type: str) -> str:
    """A stable colour for ``node_type`` (CSS hex)."""
    return COLOURS.get(node_type) or _PALETTE[zlib.crc32(node_type.encode()) % len(_PALETTE)]


def _outline(shape: str, x: float, y: float, w: float, h: float) -> dict:
    """SVG attributes of a node's outline: a ``rect`` (with corner radius) or a ``polygon``."""
    if shape == "model":  # hexagon: a trained artifact
        d = 12
        points = [
            (x + d, y),
            (x + w - d, y),
            (x + w, y + h / 2),
            (x + w - d, y + h),
            (x + d, y + h),
            (x, y + h / 2),
        ]
        return {"polygon": " ".join(f"{px:g},{py:g}" for px, py in points)}
    if shape == "tag":  # a label pointing left at its version
        d = 14
        points = [(x + d, y), (x + w, y), (x + w, y + h), (x + d, y + h), (x, y + h / 2)]
        return {"polygon": " ".join(f"{px:g},{py:g}" for px, py in points)}
    radius = {"data": 14, "run": 2, "alarm": 20, "watch": 8}.get(shape, 6)
    return {"rect": True, "rx": radius}


def layout(root: str, nodes: list[dict], edges: list[dict], *, max_drawn: int = MAX_DRAWN) -> dict:
    """Positions for a drawing of ``nodes`` (``{id, type, label, url, distance}``, as
    ``lineage.queries.walk`` returns them) joined by ``edges`` (``{source, target, relation}``).

    Returns ``{"root", "legend": [{type, colour, shape}], "width", "height", "hidden", "nodes":
    [{id, type, label, short, url, distance, x, y, w, h, right, cx, cy, shape, colour, outline,
    path, is_root}], "edges": [{source, target, relation, d, index}]}`` in SVG user units
    (pixels). ``path`` lists the indices of the edges on a shortest path from the node to
    ``root`` (for highlighting). Past ``max_drawn`` nodes, the nearest to the root are drawn
    and ``hidden`` counts the others.
    """
    ordered = sorted(nodes, key=lambda node: node["distance"])
    drawn = {node["id"]: node for node in ordered[:max_drawn]}
    hidden = len(ordered) - len(drawn)
    kept = [e for e in edges if e["source"] in drawn and e["target"] in drawn and e["source"] != e["target"]]
    column = _columns(list(drawn), kept)
    layers: dict[int, list[str]] = {}
    for key in sorted(drawn, key=lambda k: (drawn[k]["type"], drawn[k]["label"], k)):
        layers.setdefault(column[key], []).append(key)
    _order(layers, kept)
    tallest = max((len(keys) for keys in layers.values()), default=1)
    height = MARGIN * 2 + tallest * NODE_HEIGHT + (tallest - 1) * GAP_Y
    placed: dict[str, dict] = {}
    for index, col in enumerate(sorted(layers)):
        keys = layers[col]
        top = (height - (len(keys) * NODE_HEIGHT + (len(keys) - 1) * GAP_Y)) / 2
        for row, key in enumerate(keys):
            node = drawn[key]
            x, y = MARGIN + index * (NODE_WIDTH + GAP_X), top + row * (NODE_HEIGHT + GAP_Y)
            shape = shape_of(node["type"])
            label = node["label"]
            placed[key] = {
                **node,
                "short": label if len(label) <= LABEL_CHARS else label[: LABEL_CHARS - 1] + "\u2026",
                "x": x,
                "y": y,
                "w": NODE_WIDTH,
                "h": NODE_HEIGHT,
                "right": x + NODE_WIDTH,
                "cx": x + NODE_WIDTH / 2,
                "cy": y + NODE_HEIGHT / 2,
                "shape": shape,
                "colour": colour_of(node["type"]),
                "outline": _outline(shape, x, y, NODE_WIDTH, NODE_HEIGHT),
                "is_root": key == root,
            }
    drawn_edges = []
    for index, edge in enumerate(kept):
        a, b = placed[edge["source"]], placed[edge["target"]]
        x1, y1, x2, y2 = a["x"] + a["w"], a["cy"], b["x"], b["cy"]
        bend = max(abs(x2 - x1) / 2, 30)
        d = f"M{x1:g},{y1:g} C{x1 + bend:g},{y1:g} {x2 - bend:g},{y2:g} {x2:g},{y2:g}"
        drawn_edges.append({**edge, "d": d, "index": index})
    paths = _paths_to_root(root, list(placed), kept)
    for key, node in placed.items():
        node["path"] = " ".join(str(i) for i in paths.get(key, []))
    width = MARGIN * 2 + len(layers) * NODE_WIDTH + max(len(layers) - 1, 0) * GAP_X
    types = sorted({node["type"] for node in placed.values()})
    return {
        "root": root,
        "legend": [{"type": t, "colour": colour_of(t), "shape": shape_of(t)} for t in types],
        "width": width,
        "height": height,
        "hidden": hidden,
        "nodes": sorted(placed.values(), key=lambda node: node["distance"]),
        "edges": drawn_edges,
    }


def _columns(keys: list[str], edges: list[dict]) -> dict[str, int]:
    """Longest path from a source (Kahn's order); nodes on a cycle keep the column they had."""
    indegree = dict.fromkeys(keys, 0)
    outgoing: dict[str, list[str]] = {key: [] for key in keys}
    for edge in edges:
        outgoing[edge["source"]].append(edge["target"])
        indegree[edge["target"]] += 1
    column = dict.fromkeys(keys, 0)
    queue = deque(key for key in keys if indegree[key] == 0)
    while queue:
        key = queue.popleft()
        for target in outgoing[key]:
            column[target] = max(column[target], column[key] + 1)
            indegree[target] -= 1
            if indegree[target] == 0:
                queue.append(target)
    return column


def _order(layers: dict[int, list[str]], edges: list[dict]) -> None:
    """Reorder each layer in place by the mean row of its neighbours in the previous layer,
    sweeping right then left ``SWEEPS`` times (fewer crossings)."""
    neighbours: dict[str, list[str]] = {}
    for edge in edges:
        neighbours.setdefault(edge["source"], []).append(edge["target"])
        neighbours.setdefault(edge["target"], []).append(edge["source"])
    cols = sorted(layers)
    for sweep in range(SWEEPS):
        sequence = cols[1:] if sweep % 2 == 0 else list(reversed(cols[:-1]))
        for col in sequence:
            row = {key: i for c in cols if c != col for i, key in enumerate(layers[c])}
            current = layers[col]

            def centre(key: str, at: int, row: dict[str, int] = row) -> float:
                seen = [row[n] for n in neighbours.get(key, []) if n in row]
                return sum(seen) / len(seen) if seen else at

            layers[col] = sorted(current, key=lambda key: centre(key, current.index(key)))


def _paths_to_root(root: str, keys: list[str], edges: list[dict]) -> dict[str, list[int]]:
    """For each node, the indices of ``edges`` on one shortest undirected path to ``root``."""
    touching: dict[str, list[tuple[str, int]]] = {key: [] for key in keys}
    for index, edge in enumerate(edges):
        touching[edge["source"]].append((edge["target"], index))
        touching[edge["target"]].append((edge["source"], index))
    if root not in touching:
        return {}
    via: dict[str, tuple[str, int] | None] = {root: None}
    queue = deque([root])
    while queue:
        key = queue.popleft()
        for other, index in touching[key]:
            if other not in via:
                via[other] = (key, index)
                queue.append(other)
    paths: dict[str, list[int]] = {}
    for key in via:
        steps, at = [], key
        while (step := via[at]) is not None:
            steps.append(step[1])
            at = step[0]
        paths[key] = steps
    return paths
