"""Which audit events are about a model version (issue 12): "everything about this model
version", found by following relations, not by searching text.

The relations cross apps (a version's jobs live in runners, its drift checks and alerts in
monitoring) and governance imports neither, so the one query that follows them is registered by
the top app (``MonitoringConfig.ready`` registers ``monitoring.evidence.model_version_subjects``),
as runners registers source resolvers. Governance applies it to the trail, restricted as usual.
"""

from __future__ import annotations

from collections.abc import Callable

from django.db.models import Q, QuerySet

from governance.models import AuditEvent, ModelVersion

SubjectsOf = Callable[[ModelVersion], Q]
_finder: list[SubjectsOf] = []


def register_model_version_subjects(finder: SubjectsOf) -> None:
    """Find a version's events with ``finder(version) -> Q`` over ``AuditEvent`` (its objects'
    ``object_type``/``object_id`` pairs); registering again replaces it."""
    _finder[:] = [finder]


def own_subjects(version: ModelVersion) -> Q:
    """The events on the version's own row: registration, description, model card and tag
    changes, archive, delete. What is found when no app registered a wider finder."""
    return Q(object_type="modelversion", object_id=str(version.pk))


def events_about_model_version(events: QuerySet[AuditEvent], version: ModelVersion) -> QuerySet[AuditEvent]:
    """``events`` (already restricted to what the viewer may see) narrowed to those about
    ``version``: the registered finder's objects, or only the version's own row without one.
    Each kind of related row costs one query when the finder runs (they are few per version)."""
    finder = _finder[0] if _finder else own_subjects
    return events.filter(finder(version))
