"""Applying OpenLineage events: the one way external jobs, runs and datasets change (issue 10).

``do_ingest_events`` is called by the ingest API (single and batch alike). Each event is applied
in its own transaction, so one bad event fails only itself. Rules, from the spec's run cycle:

- a run accumulates: inputs and outputs may arrive on START, COMPLETE or both; none is dropped;
- a terminal state (COMPLETE, ABORT, FAIL) wins over any non-terminal event, whenever it arrives;
  otherwise the event with the later ``eventTime`` sets the state (events without ``eventType``,
  and OTHER, carry facets and datasets but no state);
- a facet sent again replaces the held one unless the held one is newer (``merge_facets``);
- the same event twice changes nothing (the raw event log is unique per team and body hash);
- a ``runId`` already held by another job of the team is flagged on that run and not merged.

Creations and state or facet changes write an audit event in the same transaction; lineage
edges go through ``lineage.actions.do_record_edges``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from django.conf import settings
from django.db import connection, models, transaction
from django.urls import Resolver404, resolve
from django.utils import timezone

from governance.audit import record_audit_event, snapshot
from governance.models import DatasetVersion, Team
from governance.names import name_key
from governance.permissions import ALL_TEAMS, CHANGE, can, team_scope
from lineage.actions import do_record_edges
from lineage.models import Relation
from lineage.nodes import NodeRef
from lineage.openlineage.events import ParsedDataset, ParsedEvent, merge_facets
from runners.openlineage.models import (
    TERMINAL_RUN_STATES,
    DatasetRole,
    OpenLineageDataset,
    OpenLineageDatasetUse,
    OpenLineageEvent,
    OpenLineageJob,
    OpenLineageRun,
    RunState,
)

if TYPE_CHECKING:
    import datetime

    from django.contrib.auth.models import User

Outcome = Literal["applied", "duplicate", "conflict"]
TEAM_HEADER = "X-Steward-Team"


class IngestRefused(Exception):
    """The request may not write lineage at all: ``status`` 400 (no team named where one must
    be, an unknown team) or 403 (a team the user sees but may not write to)."""

    def __init__(self, field: str, message: str, status: int = 400) -> None:
        super().__init__(f"{field}: {message}")
        self.field, self.status = field, status


@dataclass(frozen=True)
class EventResult:
    """What became of one event: ``applied``, ``duplicate`` (already held, nothing changed) or
    ``conflict`` (its runId belongs to another job; flagged, not merged, ``reason`` says which)."""

    outcome: Outcome
    reason: str = ""


def ingest_team(user: User, requested: str = "") -> Team:
    """The team events from ``user`` land in: ``requested`` (a team's name or id, from the
    ``X-Steward-Team`` header or ``?team=``), else the one team ``user`` may write to.

    Writing lineage is the ``change`` action (model owners, data scientists, platform admins).
    Raises IngestRefused: 400 for an unknown or invisible team or when the choice is ambiguous,
    403 for a team the user may only read.
    """
    if requested:
        lookup: dict[str, Any] = (
            {"pk": int(requested)} if requested.isascii() and requested.isdigit() else {"name": requested}
        )
        team = Team.objects.restrict(user).filter(**lookup).first()
        if team is None:
            raise IngestRefused("team", f"no team {requested!r:.100} you can see")
        if not can(user, CHANGE, team.pk):
            raise IngestRefused("team", f"you may not write lineage for team {team.name}", status=403)
        return team
    scope = team_scope(user, CHANGE)
    if scope is ALL_TEAMS:
        teams = list(Team.objects.order_by("name")[:2])
    else:
        teams = list(Team.objects.filter(pk__in=scope).order_by("name")[:2])
    if not teams:
        raise IngestRefused("team", "you may not write lineage for any team", status=403)
    if len(teams) > 1:
        raise IngestRefused(
            "team",
            f"you may write lineage for several teams; name one with the {TEAM_HEADER} header or ?team=",
        )
    return teams[0]


def do_ingest_events(
    events: list[tuple[ParsedEvent, dict[str, Any]]], *, team: Team, actor: User
) -> list[EventResult]:
    """Apply ``(parsed, raw body)`` events in order, each in its own transaction.

    The permission is re-read fresh once per call (not once per event: a batch is one request).
    Raises IngestRefused (403) if ``actor`` may no longer write to ``team``.
    """
    if not can(actor, CHANGE, team.pk, fresh=True):
        raise IngestRefused("team", f"you may not write lineage for team {team.name}", status=403)
    results = []
    for parsed, body in events:
        with transaction.atomic():
            results.append(_apply(parsed, body, team=team, actor=actor))
    return results


def _apply(event: ParsedEvent, body: dict[str, Any], *, team: Team, actor: User) -> EventResult:
    run = None
    if event.kind == "RunEvent":
        run = (
            OpenLineageRun.objects.select_for_update(of=("self",))
            .select_related("job")
            .filter(team=team, run_id=event.run_id)
            .first()
        )
        if run is not None and (run.job.namespace, run.job.name) != (event.job_namespace, event.job_name):
            return _flag_reused(run, event, actor)
    if not _log_event(event, body, team=team, actor=actor):
        return EventResult("duplicate")
    if event.kind == "DatasetEvent":
        assert event.dataset is not None
        _datasets(team, [event.dataset], event.event_time, actor)
        return EventResult("applied")
    job = run.job if run is not None else _job(team, event, actor)
    if event.job_facets:
        _merge_job_facets(job, event, actor)
    if event.kind == "JobEvent":
        _record_uses(team, event, actor, job=job)
        return EventResult("applied")
    new_run = None if run is not None else _new_run(team, job, event, actor)
    if new_run is None:
        if run is None:  # inserted meanwhile by a concurrent request: lock it now
            run = OpenLineageRun.objects.select_for_update(of=("self",)).get(team=team, run_id=event.run_id)
        _advance_run(run, event, actor)
    else:
        run = new_run
    # The job's definition feeds its run, as a code version feeds a code run's job.
    job_edge: list[tuple[NodeRef, NodeRef, str]] = [
        (NodeRef("openlineage_job", job.pk), NodeRef("openlineage_run", run.pk), Relation.INPUT)
    ]
    _record_uses(team, event, actor, run=run, extra_edges=job_edge if new_run is not None else [])
    return EventResult("applied")


def _log_event(event: ParsedEvent, body: dict[str, Any], *, team: Team, actor: User) -> bool:
    """Append the raw event; False when the team already holds this exact body (a duplicate).

    One INSERT ... ON CONFLICT DO NOTHING: the unique (team, body hash) decides, race-free.
    """
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    values = {
        "team_id": team.pk,
        "received_at": timezone.now(),
        "event_time": event.event_time,
        "kind": event.kind,
        "event_type": event.event_type or "",
        "run_id": event.run_id,
        "job_namespace": event.job_namespace,
        "job_name": event.job_name,
        "producer": event.producer,
        "body": JsonText(text),
        "body_sha256": hashlib.sha256(text.encode()).hexdigest(),
        "submitted_by_id": actor.pk,
    }
    return _insert_ignore(OpenLineageEvent, values, ("team_id", "body_sha256")) is not None


def _insert_ignore(
    model: type[models.Model], values: dict[str, Any], conflict: tuple[str, ...]
) -> int | None:
    """INSERT one row unless ``conflict`` columns clash; the new id, or None when it existed.

    ``values`` maps column names to Python values, prepared as the model's fields store them
    (raw SQL gets no help from the ORM: SQLite keeps a UUID as 32 hex digits and a datetime as
    naive UTC text); a ``JsonText`` is bound as jsonb on PostgreSQL, as text on SQLite.
    """
    table = model._meta.db_table
    columns = ", ".join(values)
    marks, params = [], []
    for column, value in values.items():
        if isinstance(value, JsonText):
            marks.append(_json_mark())
            params.append(value)
        else:
            field = model._meta.get_field(column)
            assert isinstance(field, models.Field), column  # a concrete column, not a relation's reverse
            marks.append("%s")
            params.append(field.get_db_prep_value(value, connection))
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} ({columns}) VALUES ({', '.join(marks)}) "  # noqa: S608
            f"ON CONFLICT ({', '.join(conflict)}) DO NOTHING RETURNING id",
            params,
        )
        row = cursor.fetchone()
    return row[0] if row else None


class JsonText(str):
    """A JSON document to bind as jsonb in the raw statements above."""


def _json_mark() -> str:
    """The placeholder of a ``JsonText``: cast to jsonb on PostgreSQL, JSON text as is on SQLite."""
    return "%s::jsonb" if connection.vendor == "postgresql" else "%s"


def _json(value: Any) -> JsonText:
    return JsonText(json.dumps(value, separators=(",", ":")))


def _job(team: Team, event: ParsedEvent, actor: User) -> OpenLineageJob:
    """The team's job ``namespace/name``, created (and audited) on first sight."""
    lookup = {"team": team, "namespace": event.job_namespace, "name": event.job_name}
    job = OpenLineageJob.objects.filter(**lookup).first()
    if job is not None:
        return job
    now = timezone.now()
    new_id = _insert_ignore(
        OpenLineageJob,
        {
            "team_id": team.pk,
            "namespace": event.job_namespace,
            "name": event.job_name,
            "facets": _json({}),
            "facet_times": _json({}),
            "created_at": now,
            "updated_at": now,
        },
        ("team_id", "namespace", "name"),
    )
    job = OpenLineageJob.objects.get(**lookup)
    if new_id is not None:
        record_audit_event(actor=actor, action="openlineage_job.create", obj=job, after=snapshot(job))
    return job


def _merge_job_facets(job: OpenLineageJob, event: ParsedEvent, actor: User) -> None:
    job = OpenLineageJob.objects.select_for_update().get(pk=job.pk)
    before = sorted(job.facets)
    if merge_facets(job.facets, job.facet_times, event.job_facets, event.event_time):
        job.updated_at = timezone.now()
        job.save(update_fields=["facets", "facet_times", "updated_at"])
        record_audit_event(
            actor=actor,
            action="openlineage_job.facets",
            obj=job,
            before={"facets": before},
            after={"facets": sorted(job.facets)},
        )


def _new_run(team: Team, job: OpenLineageJob, event: ParsedEvent, actor: User) -> OpenLineageRun | None:
    """Insert the run with this first event already applied (one statement, one audit event);
    None when another request inserted it first (the caller then locks and advances that row)."""
    now = timezone.now()
    assert event.run_id is not None  # a RunEvent's, checked by parse_event
    run = OpenLineageRun(team=team, job=job, run_id=event.run_id, created_at=now, updated_at=now)
    _apply_to_run(run, event)
    new_id = _insert_ignore(
        OpenLineageRun,
        {
            "team_id": team.pk,
            "job_id": job.pk,
            "run_id": run.run_id,
            "state": run.state,
            "state_at": run.state_at,
            "started_at": run.started_at,
            "ended_at": run.ended_at,
            "facets": _json(run.facets),
            "facet_times": _json(run.facet_times),
            "reused_by": _json([]),
            "created_at": now,
            "updated_at": now,
        },
        ("team_id", "run_id"),
    )
    if new_id is None:
        return None
    run.pk = new_id
    run._state.adding = False
    record_audit_event(actor=actor, action="openlineage_run.create", obj=run, after=snapshot(run))
    return run


def _apply_to_run(run: OpenLineageRun, event: ParsedEvent) -> bool:
    """Apply one event's state, times and facets to ``run`` in memory; whether anything changed."""
    changed = merge_facets(run.facets, run.facet_times, event.run_facets, event.event_time)
    new_state = event.event_type if event.event_type in RunState.values and event.event_type else None
    if (
        new_state is not None
        and _wins(run, new_state, event.event_time)
        and (run.state, run.state_at) != (new_state, event.event_time)
    ):
        run.state, run.state_at, changed = new_state, event.event_time, True
    if event.event_type == RunState.START and (run.started_at is None or event.event_time < run.started_at):
        run.started_at, changed = event.event_time, True
    if new_state in TERMINAL_RUN_STATES and run.state == new_state and run.ended_at != event.event_time:
        run.ended_at, changed = event.event_time, True
    return changed


def _advance_run(run: OpenLineageRun, event: ParsedEvent, actor: User) -> None:
    """Apply one event to ``run`` (locked) and save it, auditing a change of its recorded fields."""
    before = snapshot(run)
    if not _apply_to_run(run, event):
        return
    run.updated_at = timezone.now()
    run.save(
        update_fields=["state", "state_at", "started_at", "ended_at", "facets", "facet_times", "updated_at"]
    )
    after = snapshot(run)
    if after != before:
        record_audit_event(actor=actor, action="openlineage_run.update", obj=run, before=before, after=after)


def _wins(run: OpenLineageRun, new_state: str, at: datetime.datetime) -> bool:
    """Whether an event of ``new_state`` at ``at`` replaces ``run``'s state: terminal beats
    non-terminal whatever the order; between two of a kind, the later event time wins."""
    if not run.state or run.state_at is None:
        return True
    held_terminal, new_terminal = run.state in TERMINAL_RUN_STATES, new_state in TERMINAL_RUN_STATES
    if held_terminal != new_terminal:
        return new_terminal
    return at >= run.state_at


def _flag_reused(run: OpenLineageRun, event: ParsedEvent, actor: User) -> EventResult:
    """Record that another job sent ``run``'s runId (once per job) and merge nothing."""
    claimant = {"namespace": event.job_namespace, "name": event.job_name}
    reason = (
        f"{event.run_id} already belongs to job {run.job.namespace}/{run.job.name}; "
        f"the event from job {event.job_namespace}/{event.job_name} was flagged and not merged"
    )
    if not any({k: e.get(k) for k in claimant} == claimant for e in run.reused_by):
        run.reused_by = [*run.reused_by, {**claimant, "eventTime": event.event_time.isoformat()}]
        run.save(update_fields=["reused_by"])
        record_audit_event(
            actor=actor, action="openlineage_run.flag_reused", obj=run, after={"reused_by": run.reused_by}
        )
    return EventResult("conflict", reason)


def _datasets(
    team: Team, datasets: list[ParsedDataset], at: datetime.datetime, actor: User
) -> dict[tuple[str, str], OpenLineageDataset]:
    """The team's external datasets for ``datasets``, created or given the sent facets."""
    keys = {(d.namespace, d.name) for d in datasets}
    found = _held_datasets(team, keys)
    for namespace, name in keys - found.keys():
        now = timezone.now()
        values = {
            "team_id": team.pk,
            "namespace": namespace,
            "name": name,
            "created_at": now,
            "updated_at": now,
        }
        values |= {"facets": _json({}), "facet_times": _json({})}
        if _insert_ignore(OpenLineageDataset, values, ("team_id", "namespace", "name")) is not None:
            dataset = OpenLineageDataset.objects.get(team=team, namespace=namespace, name=name)
            record_audit_event(
                actor=actor, action="openlineage_dataset.create", obj=dataset, after=snapshot(dataset)
            )
    if keys - found.keys():
        found = _held_datasets(team, keys)
    # Sorted, so two events locking the same datasets lock them in one order (no deadlock).
    for sent in sorted(datasets, key=lambda d: (d.namespace, d.name)):
        if sent.facets:
            _merge_dataset_facets(found[(sent.namespace, sent.name)], sent.facets, at, actor)
    return found


def _held_datasets(team: Team, keys: set[tuple[str, str]]) -> dict[tuple[str, str], OpenLineageDataset]:
    names = {name for _ns, name in keys}
    rows = OpenLineageDataset.objects.filter(team=team, name__in=names)
    return {(d.namespace, d.name): d for d in rows if (d.namespace, d.name) in keys}


def _merge_dataset_facets(
    dataset: OpenLineageDataset, facets: dict, at: datetime.datetime, actor: User
) -> None:
    # Cheap test first, then lock: most events resend the facets the dataset already holds.
    probe_facets, probe_times = dict(dataset.facets), dict(dataset.facet_times)
    if not merge_facets(probe_facets, probe_times, facets, at):
        return
    dataset = OpenLineageDataset.objects.select_for_update().get(pk=dataset.pk)
    before = sorted(dataset.facets)
    if merge_facets(dataset.facets, dataset.facet_times, facets, at):
        dataset.updated_at = timezone.now()
        dataset.save(update_fields=["facets", "facet_times", "updated_at"])
        record_audit_event(
            actor=actor,
            action="openlineage_dataset.facets",
            obj=dataset,
            before={"facets": before},
            after={"facets": sorted(dataset.facets)},
        )


def _record_uses(
    team: Team,
    event: ParsedEvent,
    actor: User,
    *,
    run: OpenLineageRun | None = None,
    job: OpenLineageJob | None = None,
    extra_edges: list[tuple[NodeRef, NodeRef, str]] | None = None,
) -> None:
    """Link the event's inputs and outputs to ``run`` (or static ``job``), matched to Steward
    dataset versions where they name one, and record the new lineage edges (plus ``extra_edges``)."""
    edges = list(extra_edges or [])
    # One row per (role, dataset): a dataset named twice in one event is one use, facets merged.
    sent: dict[tuple[str, str, str], ParsedDataset] = {}
    facets: dict[tuple[str, str, str], dict[str, Any]] = {}
    for role, datasets in ((DatasetRole.INPUT, event.inputs), (DatasetRole.OUTPUT, event.outputs)):
        for d in datasets:
            key = (str(role), d.namespace, d.name)
            sent[key] = d
            facets[key] = {**facets.get(key, {}), **d.facets, **d.input_facets, **d.output_facets}
    if sent:
        versions = {(d.namespace, d.name): _steward_version(actor, d) for d in sent.values()}
        external = [d for d in sent.values() if versions[(d.namespace, d.name)] is None]
        held = _datasets(team, external, event.event_time, actor) if external else {}
        owner = NodeRef("openlineage_run", run.pk) if run is not None else NodeRef("openlineage_job", job.pk)  # type: ignore[union-attr]
        owner_column = "run_id" if run is not None else "job_id"
        uses = OpenLineageDatasetUse.objects.filter(**{owner_column: owner.id}).values_list(
            "role", "namespace", "name", "facets"
        )
        before = {(role, ns, name): old for role, ns, name, old in uses}
        if connection.vendor == "postgresql":
            # A use seen before gains the new facets in the upsert itself (jsonb's ||).
            merge = "u.facets || EXCLUDED.facets WHERE EXCLUDED.facets <> '{}'::jsonb"
        else:
            # SQLite has no ||: merge here. It lets one writer in at a time, and a writer whose
            # read went stale is refused (busy), so no facet is lost either way.
            facets = {key: {**before.get(key, {}), **new} for key, new in facets.items()}
            merge = "EXCLUDED.facets"
        nodes: dict[tuple[str, str, str], NodeRef] = {}
        rows: list[Any] = []
        for key, dataset in sent.items():
            version = versions[(dataset.namespace, dataset.name)]
            external_id = None if version is not None else held[(dataset.namespace, dataset.name)].pk
            nodes[key] = (
                NodeRef("dataset_version", version.pk)
                if version is not None
                else NodeRef("openlineage_dataset", external_id)  # type: ignore[arg-type]
            )
            rows += [team.pk, owner.id, key[0], key[1], key[2], external_id, version.pk if version else None]
            rows.append(_json(facets[key]))
        table = OpenLineageDatasetUse._meta.db_table
        values = ", ".join([f"(%s, %s, %s, %s, %s, %s, %s, {_json_mark()})"] * len(sent))
        # One upsert for all: a use seen before keeps its row, and the dataset it resolved to
        # then, and gains the new facets; only a new use gets an edge (the run's dataset list and
        # its graph name the same datasets).
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {table} AS u (team_id, {owner_column}, role, namespace, name, dataset_id, "  # noqa: S608
                f"dataset_version_id, facets) VALUES {values} "
                f"ON CONFLICT ({owner_column}, role, namespace, name) DO UPDATE SET facets = {merge}",
                rows,
            )
        for key, node in nodes.items():
            if key in before:
                continue
            edges.append(
                (node, owner, Relation.INPUT)
                if key[0] == DatasetRole.INPUT
                else (owner, node, Relation.OUTPUT)
            )
    do_record_edges(edges)


def _steward_version(actor: User, dataset: ParsedDataset) -> DatasetVersion | None:
    """The Steward dataset version ``dataset`` names, if ``actor`` may see it.

    Names tried: the dataset's own ``namespace``/``name`` and each ``symlinks`` identifier.
    A name matches as ``<dataset>@v<n>`` under a ``steward`` namespace (Steward's emitted naming,
    ``steward://<host>``), as a Steward URL of the version's page, or as a ``file`` path of the
    version's stored file. Queries only for names of those shapes.
    """
    identifiers = [(dataset.namespace, dataset.name)]
    symlinks = dataset.facets.get("symlinks")
    if isinstance(symlinks, dict) and isinstance(symlinks.get("identifiers"), list):
        identifiers += [
            (str(i.get("namespace", "")), str(i.get("name", "")))
            for i in symlinks["identifiers"]
            if isinstance(i, dict)
        ]
    for namespace, name in identifiers:
        query = _version_query(namespace, name)
        if query is not None:
            version = DatasetVersion.objects.restrict(actor).filter(**query).first()
            if version is not None:
                return version
    return None


def _version_query(namespace: str, name: str) -> dict[str, Any] | None:
    if namespace.lower().startswith("steward"):
        dataset_name, at, number = name.rpartition("@v")
        if at and number.isascii() and number.isdigit() and dataset_name:
            return {"dataset__name_key": name_key(dataset_name), "version": int(number)}
    for candidate in (name, f"{namespace.rstrip('/')}/{name.lstrip('/')}"):
        path = urlsplit(candidate).path
        if candidate.lower().startswith(("http://", "https://")) and path.startswith("/"):
            try:
                match = resolve(path)
            except Resolver404:
                continue
            if match.url_name == "dataset_version_detail":
                return {"pk": match.kwargs["pk"]}
    if namespace.lower().startswith("file"):
        root = str(settings.ARTIFACT_ROOT).rstrip("/") + "/"
        if name.startswith(root):
            return {"file": name[len(root) :]}
    return None
