"""Read helpers shared by the UI pages and the API (STYLE section 4: ``queries.py``)."""

from __future__ import annotations

from django.db.models import Count, IntegerField, OuterRef, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce

from governance.models import PromotionRequest
from governance.permissions import APPROVE


def by_name_with_versions(queryset: QuerySet) -> QuerySet:
    """Datasets or registered models ordered by name, each annotated with ``latest_version`` (the
    highest version number, None before the first) and ``version_count``.

    Both are correlated subqueries, not a GROUP BY over a join of every version: the database
    works them out only for the rows of the page (from the (parent, version) unique index),
    whatever the number of versions in the registry.
    """
    relation = queryset.model._meta.get_field("versions")
    versions = relation.related_model._default_manager.filter(**{relation.field.name: OuterRef("pk")})
    counted = versions.order_by().values(relation.field.name).annotate(n=Count("pk")).values("n")
    return queryset.annotate(
        version_count=Coalesce(Subquery(counted, output_field=IntegerField()), Value(0)),
        latest_version=Subquery(versions.order_by("-version").values("version")[:1]),
    ).order_by("name")


def promotions_awaiting_decision(user) -> QuerySet:
    """Pending promotion requests ``user`` may decide: approvers of the request's team, never
    their own request (the queryset form of ``permissions.promotion_decision_refusal``)."""
    pending = PromotionRequest.objects.restrict(user).filter(state=PromotionRequest.State.PENDING)
    return pending.filter(pk__in=PromotionRequest.objects.restrict(user, APPROVE)).exclude(requested_by=user)
