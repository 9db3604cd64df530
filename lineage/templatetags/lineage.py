"""``{% lineage_panel obj %}``: the lineage panel on any node's page.

Pages of apps that lineage sits beside (governance's dataset version page) include the panel
through this tag instead of importing lineage (issue 8 layering: governance and lineage import
no other app); the template is where the two meet.
"""

from typing import Any

from django import template

from lineage.queries import lineage_of

register = template.Library()


@register.inclusion_tag("includes/lineage.html", takes_context=True)
def lineage_panel(context: template.Context, obj: Any) -> dict[str, Any]:
    """The nodes upstream and downstream of ``obj`` that the page's user may view."""
    return {"lineage": lineage_of(context["request"].user, obj)}
