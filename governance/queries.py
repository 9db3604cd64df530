"""Read helpers shared by the UI pages and the API (STYLE section 4: ``queries.py``)."""

from __future__ import annotations

from django.db.models import Count, Max, QuerySet


def by_name_with_versions(queryset: QuerySet) -> QuerySet:
    """Datasets or registered models ordered by name, each annotated with ``latest_version`` (the
    highest version number, None before the first) and ``version_count``.

    Meta.ordering is dropped from GROUP BY queries, so the order is explicit for stable pages.
    """
    return queryset.annotate(
        version_count=Count("versions"), latest_version=Max("versions__version")
    ).order_by("name")
