from django.contrib import admin

from governance.admin import ReadOnlyAdmin
from monitoring.models import Alert, DriftCheck

admin.site.register(DriftCheck, ReadOnlyAdmin)
admin.site.register(Alert, ReadOnlyAdmin)
