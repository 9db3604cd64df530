from django.contrib import admin

from governance.admin import ReadOnlyAdmin
from monitoring.models import (
    Alert,
    AlertEvent,
    Channel,
    DriftCheck,
    EscalationPolicy,
    Monitor,
    Notification,
    ReferenceProfile,
)

# Read-only: every change goes through monitoring.actions, which audits it.
for model in (
    DriftCheck,
    Alert,
    AlertEvent,
    Monitor,
    Channel,
    EscalationPolicy,
    Notification,
    ReferenceProfile,
):
    admin.site.register(model, ReadOnlyAdmin)
