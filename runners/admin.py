from django.contrib import admin

from governance.admin import ReadOnlyAdmin
from runners.models import Job


@admin.register(Job)
class JobAdmin(ReadOnlyAdmin):
    list_display = ["id", "kind", "state", "progress", "created_by", "created_at"]
    list_filter = ["kind", "state"]
