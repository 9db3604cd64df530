"""Benchmarks of the tamper-evident audit log on PostgreSQL, against issue 3's goals.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/steward .venv/bin/python benchmarks/bench_audit.py
    ... --events 1000000 --writers 8 --appends 400

Runs against a scratch database (``steward_bench`` on the server of DATABASE_URL), created and
migrated at the start and dropped at the end, so nothing touches the real one.

(a) Append throughput, 8 concurrent writers, each append its own transaction:
    ``record_audit_event`` (event + salt, canonical-JSON check) vs plain INSERTs of the same event
    rows (raw SQL, and ORM ``create``), same run; then again with the sequencer running beside the
    writers. Goal: record_audit_event >= 0.5x the plain INSERTs.
(b) One million events bulk-inserted with INSERT ... SELECT generate_series, sequenced by the
    real sequencer, then ``manage.py audit_verify`` timed (goal <= 10 s), and inclusion proofs
    timed (goal <= 5 ms each): the stored-node proof alone and the API's whole ``event_proof``.
(c) The audit trail page and the API's first page at 1M events through Django's test Client,
    in process: server time (goal <= 100 ms) and queries per request (constant).
No timed assertions: figures and ratios are printed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from scratch_db import drop_database, recreate_database, scratch_url  # benchmarks/ is on sys.path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

BENCH_DB = "steward_bench"
GOAL_APPEND_RATIO = 0.5
GOAL_VERIFY_S = 10.0
GOAL_PROOF_MS = 5.0
GOAL_PAGE_MS = 100.0


def _setup_django(url: str, workdir: Path) -> None:
    os.environ["DATABASE_URL"] = scratch_url(url, BENCH_DB)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ["STEWARD_AUDIT_SIGNING_KEY_FILE"] = str(workdir / "audit_signing_key.pem")
    os.environ["STEWARD_VAR_DIR"] = str(workdir / "var")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def _median_ms(action: Callable[[], object], repeat: int) -> float:
    timings = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        timings.append(time.perf_counter() - started)
    return statistics.median(timings) * 1000


# (a) append throughput ------------------------------------------------------------------------


def _payload(i: int) -> dict:
    return {
        "dataset_id": i,
        "version": i % 7,
        "sha256": f"{i:064x}",
        "row_count": 17379,
        "source": "upload",
    }


def _run_writers(writers: int, appends: int, append: Callable[[int, int], None]) -> float:
    """Appends per second of ``writers`` threads each calling ``append(writer, i)`` ``appends`` times."""
    from django.db import connection

    barrier = threading.Barrier(writers + 1)
    errors: list[BaseException] = []

    def work(writer: int) -> None:
        try:
            connection.ensure_connection()
            barrier.wait()
            for i in range(appends):
                append(writer, i)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(w,)) for w in range(writers)]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise errors[0]
    return writers * appends / elapsed


def _append_variants(user, team) -> dict[str, Callable[[int, int], None]]:
    """The three ways to append an event, each in its own transaction: ``plain`` raw SQL INSERT,
    ``orm`` ``AuditEvent.objects.create``, ``record`` the app's ``record_audit_event``."""
    import json

    from django.db import connection, transaction
    from django.utils import timezone

    from governance.audit import record_audit_event
    from governance.models import AuditEvent

    columns = (
        "timestamp, actor_id, actor_label, on_behalf_of_id, on_behalf_of_label, action, object_type, "
        "object_id, object_repr, team_id, before, after, request_id, task_id"
    )

    def plain_insert(writer: int, i: int) -> None:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO governance_auditevent ({columns}) "  # noqa: S608 - constant columns
                "VALUES (%s, %s, %s, NULL, '', %s, %s, %s, %s, %s, NULL, %s, '', '')",
                [
                    timezone.now(),
                    user.pk,
                    "writer",
                    "dataset_version.register",
                    "datasetversion",
                    str(i),
                    f"bench-{writer} v{i}",
                    team.pk,
                    json.dumps(_payload(i)),
                ],
            )

    def orm_create(writer: int, i: int) -> None:
        with transaction.atomic():
            AuditEvent.objects.create(
                actor=user,
                actor_label="writer",
                action="dataset_version.register",
                object_type="datasetversion",
                object_id=str(i),
                object_repr=f"bench-{writer} v{i}",
                team_id=team.pk,
                after=_payload(i),
            )

    def recorded(writer: int, i: int) -> None:
        with transaction.atomic():
            record_audit_event(
                actor=user,
                action="dataset_version.register",
                object_type="datasetversion",
                object_id=i,
                object_repr=f"bench-{writer} v{i}",
                team_id=team.pk,
                after=_payload(i),
            )

    return {"plain": plain_insert, "orm": orm_create, "record": recorded}


def _rate_with_sequencer_beside(
    writers: int, appends: int, append: Callable[[int, int], None]
) -> tuple[float, list[int]]:
    """Appends per second while the sequencer runs in a loop in another thread; and the number of
    events each of its runs sequenced."""
    from django.db import connection

    from governance.audit.sequencer import sequence_audit_events

    stop = threading.Event()
    runs: list[int] = []

    def sequencer() -> None:
        try:
            while not stop.is_set():
                runs.append(sequence_audit_events().sequenced)
        finally:
            connection.close()

    sequence_audit_events(max_events=10_000_000)
    beside = threading.Thread(target=sequencer)
    beside.start()
    rate = _run_writers(writers, appends, append)
    stop.set()
    beside.join()
    return rate, runs


def bench_append(writers: int, appends: int) -> None:
    import logging

    from django.contrib.auth import get_user_model

    from governance.models import Team

    # The baselines' rows carry no tag, so the sequencer refuses them, as it should, with an
    # error line each: keep those out of the figures.
    logging.getLogger("governance.audit.sequencer").setLevel(logging.CRITICAL)
    user = get_user_model().objects.create_user("writer")
    team = Team.objects.create(name="Bench", name_key="bench", slug="bench")
    variants = _append_variants(user, team)

    print(
        f"(a) append throughput, {writers} writers (threads) x {appends} appends, one transaction each;"
        " median of 3 interleaved rounds"
    )
    _run_writers(writers, max(appends // 10, 10), variants["record"])  # warm-up: connections, caches
    # Interleaved rounds, so load from other processes on the machine hits every variant alike.
    rounds: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(3):
        for name, append in variants.items():
            rounds[name].append(_run_writers(writers, appends, append))
    plain, orm, record = (statistics.median(rounds[name]) for name in ("plain", "orm", "record"))
    record_with_sequencer, runs = _rate_with_sequencer_beside(writers, appends, variants["record"])
    print(f"  plain INSERT (raw SQL)                 {plain:9,.0f} appends/s")
    print(f"  plain INSERT (ORM create)              {orm:9,.0f} appends/s")
    print(f"  record_audit_event                     {record:9,.0f} appends/s")
    print(
        f"  record_audit_event + sequencer running {record_with_sequencer:9,.0f} appends/s"
        f"   ({len(runs)} sequencer runs, {sum(runs):,} events sequenced meanwhile)"
    )
    print(
        f"  ratio record_audit_event / raw INSERT:  {record / plain:.2f}x  (goal >= {GOAL_APPEND_RATIO}x)\n"
        f"  ratio record_audit_event / ORM create:  {record / orm:.2f}x\n"
        f"  ratio with the sequencer / raw INSERT:  {record_with_sequencer / plain:.2f}x"
    )


# (b) one million events -----------------------------------------------------------------------

GENERATE_EVENTS = """
INSERT INTO governance_auditevent
    (timestamp, actor_id, actor_label, on_behalf_of_id, on_behalf_of_label, action, object_type,
     object_id, object_repr, team_id, before, after, request_id, task_id)
SELECT timestamptz '2026-01-01 00:00:00+00' + g * interval '1 second'
           + mod(g, 997) * interval '1 microsecond',
       (%(user_ids)s::bigint[])[1 + mod(g, %(users)s)],
       'user' || mod(g, %(users)s),
       NULL, '',
       (ARRAY['dataset_version.register', 'model_version.register', 'job.submit', 'job.succeed',
              'drift_check.complete', 'alert.open', 'membership.grant'])[1 + mod(g, 7)],
       (ARRAY['datasetversion', 'modelversion', 'job', 'job', 'driftcheck', 'alert',
              'membership'])[1 + mod(g, 7)],
       (g / 3)::text,
       'object ' || (g / 3) || ' v' || mod(g, 11),
       (%(team_ids)s::bigint[])[1 + mod(g, %(teams)s)],
       CASE WHEN mod(g, 5) = 0 THEN jsonb_build_object('state', 'queued') END,
       jsonb_build_object('dataset_id', g, 'version', mod(g, 7), 'sha256', md5(g::text) || md5((g + 1)::text),
                          'row_count', 17379, 'source', 'upload'),
       md5(g::text), ''
FROM generate_series(%(start)s, %(stop)s) AS g
"""


def _salt_and_tag_events_after(last_id: int) -> None:
    """What ``record_audit_event`` writes beside each event: a salt and the event's tag (without
    which the sequencer refuses it) for the events generated after ``last_id``, computed as
    ``audit.keys.tag_stored_event`` does, in bulk, and COPYed in."""
    import secrets

    from django.db import connection

    from governance.audit.keys import event_tag
    from governance.audit.leaf import event_rows, row_leaf_hash
    from governance.models import AuditEvent

    low, high = last_id + 1, AuditEvent.objects.latest("id").id + 1
    for start in range(low, high, 100_000):
        # Read a block, then COPY it: the connection cannot run a query while a COPY is open.
        tagged = []
        for row in event_rows(start, min(start + 100_000, high), sequenced=False):
            salt = secrets.token_bytes(32)
            digest = row_leaf_hash(row, salt)
            tagged.append((row[2], salt.hex(), event_tag(digest)))
        with (
            connection.cursor() as cursor,
            cursor.cursor.copy("COPY governance_auditpersonaldata (event_id, salt, tag) FROM STDIN") as copy,
        ):
            for values in tagged:
                copy.write_row(values)


def _empty_the_log() -> None:
    """(a)'s baseline rows carry no tag and were refused, as they should be: start (b) from an
    empty log (this scratch database only) so that audit_verify times an intact one."""
    from django.db import connection, transaction

    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT set_config('steward.audit_maintenance', 'on', true)")
        cursor.execute(
            "TRUNCATE governance_auditrejection, governance_auditleaf, governance_auditpersonaldata, "
            "governance_audittreenode, governance_auditcheckpoint, governance_auditevent"
        )


def _generate_events(events: int, users: list, teams: list, last_before: int) -> None:
    """Bulk-insert ``events`` events by 250,000 with INSERT ... SELECT generate_series, then their
    salts and tags; vacuum."""
    from django.db import connection

    started = time.perf_counter()
    with connection.cursor() as cursor:
        for start in range(1, events + 1, 250_000):
            stop = min(start + 250_000 - 1, events)
            cursor.execute(
                GENERATE_EVENTS,
                {
                    "user_ids": [user.pk for user in users],
                    "users": len(users),
                    "team_ids": [team.pk for team in teams],
                    "teams": len(teams),
                    "start": start,
                    "stop": stop,
                },
            )
    _salt_and_tag_events_after(last_before)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE governance_auditevent")
        cursor.execute("VACUUM ANALYZE governance_auditpersonaldata")
    print(
        f"  bulk insert (INSERT ... SELECT generate_series, salts + tags COPYed) "
        f"{time.perf_counter() - started:8.1f} s"
    )


def _sequence_everything(last_before: int) -> int:
    """Run the real sequencer until nothing is left; then time a run with nothing to do. Returns
    the number of events in the log. Raises ``RuntimeError`` if it refused a generated event."""
    from django.db import connection

    from governance.audit.sequencer import sequence_audit_events
    from governance.models import AuditEvent, AuditRejection

    started, runs = time.perf_counter(), 0
    while sequence_audit_events(max_events=50_000, batch_size=10_000).sequenced:
        runs += 1
    sequenced_s = time.perf_counter() - started
    total = AuditEvent.objects.count()
    refused = AuditRejection.objects.filter(event_id__gt=last_before).count()
    if refused:
        raise RuntimeError(f"the sequencer refused {refused} generated events: their tags are wrong")
    print(
        f"  sequencer: {total:,} events in {runs} runs    {sequenced_s:8.1f} s"
        f"   ({total / sequenced_s:,.0f} events/s, leaves + nodes + a signed checkpoint per run)"
    )
    with connection.cursor() as cursor:
        for table in ("auditleaf", "audittreenode", "auditcheckpoint"):
            cursor.execute(f"VACUUM ANALYZE governance_{table}")
    idle_ms = _median_ms(sequence_audit_events, 5)
    print(
        f"  sequencer run with nothing to do        {idle_ms:8.1f} ms  (the anti-join over {total:,} events)"
    )
    return total


def _audit_verify_s(*options: str) -> float:
    """Seconds ``manage.py audit_verify`` takes as an operator runs it: a fresh process (Django
    start-up included), in the scratch database. Raises ``RuntimeError`` if it fails."""
    started = time.perf_counter()
    result = subprocess.run(  # noqa: S603 - our interpreter, our manage.py
        [sys.executable, str(ROOT / "manage.py"), "audit_verify", *options],
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"audit_verify failed: {result.stderr or result.stdout}")
    return elapsed


def _time_audit_verify(total: int) -> float:
    """Best of three ``audit_verify`` runs (printed with one on a single worker)."""
    timings = [_audit_verify_s() for _ in range(3)]
    one_worker = _audit_verify_s("--workers", "1")
    best = min(timings)
    print(
        f"  manage.py audit_verify                  {best:8.2f} s   (best of 3, median "
        f"{statistics.median(timings):.2f} s; {min(os.cpu_count() or 1, 8)} workers on {os.cpu_count()} CPUs;"
        f" goal <= {GOAL_VERIFY_S:.0f} s)"
    )
    print(
        f"  manage.py audit_verify --workers 1      {one_worker:8.2f} s   "
        f"({total / one_worker:,.0f} events/s on one core)"
    )
    return best


def _time_proofs(proofs: int) -> tuple[float, float]:
    """Median milliseconds of ``proofs`` random inclusion proofs: from the stored nodes alone,
    and the API's whole ``event_proof``."""
    import random

    from governance.audit.proofs import event_proof, latest_checkpoint, stored_inclusion_proof
    from governance.models import AuditEvent

    rng = random.Random(6962)
    latest = latest_checkpoint()
    indexes = [rng.randrange(latest.tree_size) for _ in range(proofs)]
    stored_ms = statistics.median(
        _median_ms(lambda i=i: stored_inclusion_proof(i, latest.tree_size), 1) for i in indexes
    )
    ids = list(AuditEvent.objects.filter(leaf__leaf_index__in=indexes).values_list("id", flat=True))

    def whole_proof(pk: int) -> None:
        event = AuditEvent.objects.select_related("leaf", "personal_data").get(pk=pk)
        event_proof(event)

    whole_ms = statistics.median(_median_ms(lambda pk=pk: whole_proof(pk), 1) for pk in ids)
    print(
        f"  inclusion proof, stored nodes (1 query) {stored_ms:8.3f} ms  (median of {proofs}; "
        f"goal <= {GOAL_PROOF_MS:.0f} ms)"
    )
    print(
        f"  inclusion proof, event_proof (3 queries) {whole_ms:7.3f} ms"
        "  (event + leaf + salt, checkpoint, nodes)"
    )
    return stored_ms, whole_ms


def bench_million(events: int, proofs: int) -> dict:
    from django.contrib.auth import get_user_model

    from governance.models import AuditEvent, PlatformRoleGrant, Team

    _empty_the_log()
    users = [get_user_model().objects.create_user(f"user{i}") for i in range(20)]
    teams = [Team.objects.create(name=f"Team {i}", name_key=f"team {i}", slug=f"team-{i}") for i in range(10)]
    existing = AuditEvent.objects.count()
    last_before = AuditEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0
    print(f"\n(b) {events:,} events (plus {existing:,} written by the set-up) on PostgreSQL")
    _generate_events(events, users, teams, last_before)
    total = _sequence_everything(last_before)
    best = _time_audit_verify(total)
    stored_ms, whole_ms = _time_proofs(proofs)
    officer = get_user_model().objects.create_user("carl")
    PlatformRoleGrant.objects.create(user=officer, role="compliance_officer")
    return {
        "verify_s": best,
        "stored_ms": stored_ms,
        "whole_ms": whole_ms,
        "officer": officer,
        "member": users[3],
        "teams": teams,
    }


# (c) pages at one million events --------------------------------------------------------------


def bench_pages(context: dict, repeat: int) -> None:
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext, setup_test_environment

    from governance.models import Membership

    setup_test_environment()  # responses then carry their template context (the page cursors)
    Membership.objects.create(user=context["member"], team=context["teams"][3], role="viewer")
    print(
        "\n(c) first pages at 1M events, Django test Client in process (median of "
        f"{repeat}; goal <= {GOAL_PAGE_MS:.0f} ms, constant queries)"
    )
    rows = []
    for who, user in (("compliance officer", context["officer"]), ("team viewer", context["member"])):
        client = Client()
        client.force_login(user)
        first = client.get("/audit/")
        older = first.context["page"].older
        api_first = client.get("/api/audit-events/").json()
        middle = client.get("/audit/", {"before": older})
        for _ in range(50):  # walk deep into the log for a deep page
            if middle.context["page"].older is None:
                break
            older = middle.context["page"].older
            middle = client.get("/audit/", {"before": older})
        cases = [
            ("audit trail page, first", "/audit/", {}),
            ("audit trail page, 51st page", "/audit/", {"before": older}),
            ("audit trail page, action=job.", "/audit/", {"action": "job."}),
            ("audit trail page, team filter", "/audit/", {"team": context["teams"][3].pk}),
            ("API /api/audit-events/, first", "/api/audit-events/", {}),
            ("API /api/audit-events/, next", api_first["next"], {}),
        ]
        for label, url, params in cases:
            with CaptureQueriesContext(connection) as queries:
                response = client.get(url, params)
            assert response.status_code == 200, (url, response.status_code)
            # Count now: the next request's request_started signal empties the query log.
            count = len(queries)
            ms = _median_ms(lambda c=client, u=url, p=params: c.get(u, p), repeat)
            rows.append((who, label, ms, count))
    for who, label, ms, count in rows:
        print(f"  {who:18} {label:32} {ms:8.1f} ms  {count} queries")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--appends", type=int, default=400, help="appends per writer and phase")
    parser.add_argument("--proofs", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    parser.add_argument("--only", choices=["append", "million"], help="run (a) only, or (b) and (c) only")
    args = parser.parse_args()
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        sys.exit("set DATABASE_URL to a PostgreSQL server (the scratch database is created beside it)")
    recreate_database(url, BENCH_DB)
    try:
        with tempfile.TemporaryDirectory() as workdir:
            _setup_django(url, Path(workdir))
            import django

            print(
                f"Audit log benchmark on PostgreSQL, database {BENCH_DB}, Django {django.get_version()}, "
                f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at the start"
            )
            if args.only != "million":
                bench_append(args.writers, args.appends)
            if args.only != "append":
                context = bench_million(args.events, args.proofs)
                bench_pages(context, args.repeat)
        print(f"load average {os.getloadavg()[0]:.2f} at the end (other processes share these CPUs)")
    finally:
        if not args.keep:
            drop_database(url, BENCH_DB)


if __name__ == "__main__":
    main()
