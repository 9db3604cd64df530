from django.contrib import admin

from governance.admin import ReadOnlyAdmin
from lineage.models import LineageEdge

admin.site.register(LineageEdge, ReadOnlyAdmin)
