"""Django admin, read-only: every change goes through actions (and their audit events).

Django's own User and Group admins are replaced by read-only ones too: through them a superuser
could set ``is_superuser``/``is_active`` or reset someone's password with no audit event, past the
last-admin rule, the ban on changing one's own roles and four-eyes approval.
"""

from django.apps import apps
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group
from django.http import HttpRequest

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


class ReadOnlyMixin:
    """Refuses add, change and delete (403), which also hides the bulk delete action and
    UserAdmin's password form; viewing stays."""

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


class ReadOnlyAdmin(ReadOnlyMixin, admin.ModelAdmin):
    """A model's admin pages for looking only."""


class ReadOnlyUserAdmin(ReadOnlyMixin, UserAdmin):
    """Users, for looking only: the People pages and the API change them, through actions."""


class ReadOnlyGroupAdmin(ReadOnlyMixin, GroupAdmin):
    """Django groups, for looking only: Steward's roles are memberships and platform role grants."""


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ["timestamp", "actor_label", "action", "object_type", "object_repr"]
    list_filter = ["action", "object_type"]
    search_fields = ["object_repr", "actor_label"]


for model in (Team, Membership, PlatformRoleGrant, Dataset, DatasetVersion, RegisteredModel, ModelVersion):
    admin.site.register(model, ReadOnlyAdmin)

for model, model_admin in ((get_user_model(), ReadOnlyUserAdmin), (Group, ReadOnlyGroupAdmin)):
    if admin.site.is_registered(model):
        admin.site.unregister(model)
    admin.site.register(model, model_admin)


# Other apps' admins, registered before this module runs (INSTALLED_APPS order), would let a
# superuser change unaudited what keeps the audit log honest: the sequencer's beat schedule, the
# task results, the login lockouts (lifted with ``manage.py axes_reset`` instead).
for label in ("django_celery_beat", "django_celery_results", "axes"):
    for model in apps.get_app_config(label).get_models():
        if admin.site.is_registered(model):
            model_admin = type(admin.site.get_model_admin(model))
            admin.site.unregister(model)
            admin.site.register(
                model, type(f"ReadOnly{model_admin.__name__}", (ReadOnlyMixin, model_admin), {})
            )
