"""Django admin, read-only: every change goes through actions (and their audit events)."""

from django.contrib import admin

from governance.models import (
    AuditEvent,
    Dataset,
    DatasetVersion,
    Membership,
    ModelVersion,
    PlatformRoleGrant,
    RegisteredModel,
    Team,
)


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ["timestamp", "actor_label", "action", "object_type", "object_repr"]
    list_filter = ["action", "object_type"]
    search_fields = ["object_repr", "actor_label"]


for model in (Team, Membership, PlatformRoleGrant, Dataset, DatasetVersion, RegisteredModel, ModelVersion):
    admin.site.register(model, ReadOnlyAdmin)
