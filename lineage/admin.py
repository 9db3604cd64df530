"""Django admin, read-only: edges are written by the actions that make their nodes."""

from django.contrib import admin
from django.http import HttpRequest

from lineage.models import LineageEdge, OpenLineageEmitFailure


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


@admin.register(OpenLineageEmitFailure)
class OpenLineageEmitFailureAdmin(admin.ModelAdmin):
    """OpenLineage events of Steward's runs that were not delivered (issue 10): for looking, and
    deleting once dealt with; they are written only by ``lineage.openlineage.emit``."""

    list_display = ["failed_at", "event_type", "job_name", "run_id", "error"]
    list_filter = ["event_type"]
    search_fields = ["job_name", "run_id"]

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
