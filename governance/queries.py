"""Read helpers shared by the UI pages and the API (STYLE section 4: ``queries.py``)."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable

from django.core.exceptions import ValidationError
from django.db.models import Count, IntegerField, OuterRef, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce

from governance.models import Dataset, DatasetVersion, ModelVersion, PromotionRequest, StoredObject, Tier
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


# Other apps' holders of stored objects (runners: tracked runs' files), registered from their
# ``AppConfig.ready`` (governance never imports them): ``holder(team_ids)`` gives
# ``(team id, key, size in bytes)`` rows of the objects the teams hold (team_ids None: all teams).
StorageHolder = Callable[[Collection[int] | None], Iterable[tuple[int, str, int]]]
_STORAGE_HOLDERS: list[StorageHolder] = []


def register_storage_holder(holder: StorageHolder) -> None:
    """Count what ``holder`` reports in ``storage_by_team`` (once per holder function)."""
    if holder not in _STORAGE_HOLDERS:
        _STORAGE_HOLDERS.append(holder)


def storage_by_team(team_ids: Collection[int] | None = None) -> dict[tuple[int, str], tuple[int, int]]:
    """``{(team id, tier): (objects, bytes)}`` of the artifacts the team's live (not erased,
    not deleted) dataset and model versions hold, and those other apps' registered holders
    report (``register_storage_holder``), each stored object once per team; bytes are
    the stored size when hot (the record's, or the row's in direct mode) and the compressed size
    when cold. ``team_ids``: only those teams (None: all). Three queries and one per registered
    holder: the teams' keys, the records of those keys. (``/metrics`` and the storage cost
    roll-up read it.)"""
    keys: dict[int, set[str]] = {}
    sizes: dict[str, int] = {}
    dataset_files = DatasetVersion.objects.filter(erased_at__isnull=True)
    model_files = ModelVersion.objects.exclude(status=ModelVersion.Status.DELETED)
    if team_ids is not None:
        dataset_files = dataset_files.filter(dataset__team_id__in=team_ids)
        model_files = model_files.filter(model__team_id__in=team_ids)
    rows_of: list[Iterable[tuple[int, str, int]]] = [
        dataset_files.values_list("dataset__team_id", "file", "size_bytes").iterator(),
        model_files.values_list("model__team_id", "artifact", "size_bytes").iterator(),
        *(holder(team_ids) for holder in _STORAGE_HOLDERS),
    ]
    for rows in rows_of:
        for team, key, size in rows:
            keys.setdefault(team, set()).add(key)
            sizes[key] = size
    live = StoredObject.objects.filter(shredded_at__isnull=True)
    if team_ids is not None:
        # Only the asked teams' records (the usage roll-up of one team read the whole store).
        live = live.filter(key__in=sizes.keys())
    records = {
        key: (tier, size, cold_size)
        for key, tier, size, cold_size in live.values_list("key", "tier", "size_bytes", "cold_size_bytes")
    }
    totals: dict[tuple[int, str], tuple[int, int]] = {}
    for team, team_keys in keys.items():
        for key in team_keys:
            tier, size, cold_size = records.get(key, (Tier.HOT, sizes[key], None))
            stored = cold_size if tier == Tier.COLD and cold_size is not None else size
            count, total = totals.get((team, str(tier)), (0, 0))
            totals[(team, str(tier))] = (count + 1, total + stored)
    return totals
