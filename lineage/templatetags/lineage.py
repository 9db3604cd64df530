"""``{% lineage_panel obj %}`` and ``{% lineage_graph graph %}``: lineage on any node's page.

Pages of apps that lineage sits beside (governance's dataset version page) include the panel
through this tag instead of importing lineage (issue 8 layering: governance and lineage import
no other app); the template is where the two meet.
"""

from typing import Any
from urllib.parse import urlencode

from django import template
from django.urls import reverse

from lineage.layout import layout
from lineage.queries import PANEL_DEPTH, lineage_of

register = template.Library()


@register.inclusion_tag("includes/lineage.html", takes_context=True)
def lineage_panel(context: template.Context, obj: Any) -> dict[str, Any]:
    """The nodes upstream and downstream of ``obj`` that the page's user may view, listed and drawn."""
    return {"lineage": lineage_of(context["request"].user, obj)}


@register.inclusion_tag("includes/lineage_graph.html")
def lineage_graph(graph: dict, direction: str = "both", depth: int = PANEL_DEPTH) -> dict[str, Any]:
    """The drawing of ``graph`` (``walk``'s shape); "+" on a node redraws it around the same root
    with ``direction`` and ``depth``."""
    query = urlencode({"node": graph["root"], "direction": direction, "depth": depth})
    return {
        "drawing": layout(graph["root"], graph["nodes"], graph["edges"]),
        "graph_url": f"{reverse('lineage_graph')}?{query}",
        "expanded": [],
    }
