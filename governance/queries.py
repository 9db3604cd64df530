"""Read helpers shared by the UI pages and the API (STYLE section 4: ``queries.py``)."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db.models import Count, IntegerField, OuterRef, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce

from governance.models import Dataset, DatasetVersion, ModelVersion, PromotionRequest
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


def labelled_columns(model_version: ModelVersion, target: str | None = None) -> list[str]:
    """The columns labelled data for ``model_version`` must hold: the label (``target``, else the
    target its signature names) then its signature's features, in that order, each once."""
    signature = model_version.signature if isinstance(model_version.signature, dict) else {}
    label = target or signature.get("target")
    named = [label, *(signature.get("features") or [])]
    return list(dict.fromkeys(str(name) for name in named if name))


def newest_labelled_version(
    dataset: Dataset, model_version: ModelVersion, *, target: str | None = None
) -> DatasetVersion:
    """The newest labelled data of ``dataset`` for ``model_version`` (issue 15): its newest version
    (highest number) holding every column of ``labelled_columns(model_version, target)``.

    One rule for whoever needs it: a retraining on drift trains on it, a scheduled evaluation
    evaluates on it, each resolving it when it runs (a newer upload without the label is passed
    over). Raises ValidationError (no field) saying which columns the newest version lacks, or
    that the dataset has no version.
    """
    needed = labelled_columns(model_version, target)
    newest: DatasetVersion | None = None
    for version in DatasetVersion.objects.filter(dataset=dataset).order_by("-version"):
        if set(needed) <= set(version.column_names):
            return version
        newest = newest or version
    if newest is None:
        raise ValidationError(f"dataset {dataset.name} has no version yet")
    lacking = [column for column in needed if column not in newest.column_names]
    raise ValidationError(
        f"no version of dataset {dataset.name} holds the label and features of {model_version} "
        f"(its newest, {newest}, lacks {', '.join(map(repr, lacking))})"
    )
