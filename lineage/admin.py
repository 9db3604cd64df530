"""Django admin, read-only: edges are written by the actions that make their nodes."""

from django.contrib import admin
from django.http import HttpRequest

from lineage.models import LineageEdge


@admin.register(LineageEdge)
class LineageEdgeAdmin(admin.ModelAdmin):
    """Edges for looking only (the same refusals as ``governance.admin.ReadOnlyMixin``, which
    lineage may not import)."""

    list_display = ["source_type", "source_id", "relation", "target_type", "target_id", "created_at"]

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
