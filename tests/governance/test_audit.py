"""The audit log: one event per change, in the change's transaction, append-only, attributed."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from django.core.exceptions import PermissionDenied
from django.db import connection, transaction

from governance import audit
from governance.actions.datasets import do_create_dataset, do_register_dataset_version
from governance.actions.model_versions import do_register_model_version
from governance.actions.registered_models import do_create_registered_model
from governance.actions.teams import do_create_team, do_grant_platform_role, do_set_membership
from governance.actions.users import do_create_user
from governance.models import AuditEvent, DatasetVersion, ModelVersion, PlatformRole, TeamRole
from monitoring.actions.alerts import do_acknowledge_alert, do_resolve_alert
from monitoring.actions.checks import do_finish_drift_check, do_request_drift_check
from monitoring.execute import execute_drift_check
from monitoring.models import Alert
from runners.actions import claim_job, do_cancel_job, do_fail_job, do_submit_job
from runners.models import Job
from tests.conftest import run_job


def _new_events(since: int | None) -> list[tuple[str, str]]:
    return list(
        AuditEvent.objects.filter(id__gt=since or 0).order_by("id").values_list("action", "actor_label")
    )


def _last_event_id() -> int | None:
    return AuditEvent.objects.order_by("-id").values_list("id", flat=True).first()


class _Fixtures:
    """Fixtures by attribute, created on first use so each case builds only what it needs."""

    def __init__(self, request, tmp_path):
        self._request = request
        self.small_csv = tmp_path / "small.csv"
        self.small_csv.write_bytes(b"hr,cnt\n0,16\n1,40\n")

    def __getattr__(self, name):
        return self._request.getfixturevalue(name)

    def queued_job(self) -> Job:
        return do_submit_job(
            kind="train",
            dataset_version=self.dataset_version,
            registered_model=self.registered_model,
            spec=self.training_spec,
            actor=self.scientist,
        )

    def requested_check(self):
        return do_request_drift_check(
            model_version=self.registered_version,
            current_dataset_version=self.current_dataset_version,
            actor=self.scientist,
        )

    def alert(self) -> Alert:
        return Alert.objects.get(drift_check=self.drifted_check)


def _prepared(prepare: Callable, act: Callable) -> Callable:
    """A case: ``prepare(f)`` builds what the action needs (before counting), ``act`` runs it."""

    def case(f: _Fixtures) -> Callable[[], object]:
        prepared = prepare(f)
        return lambda: act(f, prepared)

    return case


def _ready(act: Callable) -> Callable:
    return _prepared(lambda f: None, lambda f, _: act(f))


# Each case: the action, and the events it must write, as (action, actor label).
CASES: dict[str, tuple[Callable, list[tuple[str, str]]]] = {
    "create user": (
        _ready(lambda f: do_create_user(username="nina", email="nina@example.com", actor=f.admin)),
        [("user.create", "admin")],
    ),
    "create team": (
        _ready(lambda f: do_create_team(name="Risk", actor=f.admin)),
        [("team.create", "admin")],
    ),
    "grant membership": (
        _ready(
            lambda f: do_set_membership(user=f.outsider, team=f.team, role=TeamRole.VIEWER, actor=f.owner)
        ),
        [("membership.grant", "olivia")],
    ),
    "change a role": (
        _ready(
            lambda f: do_set_membership(user=f.scientist, team=f.team, role=TeamRole.APPROVER, actor=f.admin)
        ),
        [("membership.grant", "admin")],
    ),
    "grant platform role": (
        _ready(
            lambda f: do_grant_platform_role(
                user=f.owner, role=PlatformRole.COMPLIANCE_OFFICER, actor=f.admin
            )
        ),
        [("platform_role.grant", "admin")],
    ),
    "grant a platform role twice": (
        _ready(
            lambda f: [
                do_grant_platform_role(user=f.owner, role=PlatformRole.ADMIN, actor=f.admin) for _ in range(2)
            ]
        ),
        [("platform_role.grant", "admin")],
    ),
    "create dataset": (
        _ready(lambda f: do_create_dataset(team=f.team, name="trips", actor=f.scientist)),
        [("dataset.create", "dana")],
    ),
    "register dataset version": (
        _prepared(
            lambda f: f.dataset,
            lambda f, dataset: do_register_dataset_version(
                dataset=dataset,
                file_path=f.small_csv,
                filename="small.csv",
                source="upload",
                actor=f.scientist,
            ),
        ),
        [("dataset_version.register", "dana")],
    ),
    "create model": (
        _ready(lambda f: do_create_registered_model(team=f.team, name="m", owner=f.owner, actor=f.scientist)),
        [("registered_model.create", "dana")],
    ),
    "register model version": (
        _prepared(
            lambda f: f.registered_model,
            lambda f, model: do_register_model_version(
                model=model,
                artifact_bytes=b"weights",
                metrics={},
                signature={},
                training_spec={},
                training_dataset_version=None,
                source_job_id=None,
                actor=f.owner,
            ),
        ),
        [("model_version.register", "olivia")],
    ),
    "submit job": (
        _prepared(lambda f: (f.dataset_version, f.registered_model), lambda f, _: f.queued_job()),
        [("job.submit", "dana")],
    ),
    "cancel job": (
        _prepared(_Fixtures.queued_job, lambda f, job: do_cancel_job(job=job, actor=f.owner)),
        [("job.cancel", "olivia")],
    ),
    "start job": (
        _prepared(_Fixtures.queued_job, lambda f, job: claim_job(job.pk)),
        [("job.start", "system")],
    ),
    "fail job": (
        _prepared(_Fixtures.queued_job, lambda f, job: do_fail_job(job.pk, "disk full")),
        [("job.fail", "system")],
    ),
    "request drift check": (
        _prepared(
            lambda f: (f.registered_version, f.current_dataset_version), lambda f, _: f.requested_check()
        ),
        [("drift_check.request", "dana")],
    ),
    "finish drift check with drift": (
        _prepared(
            _Fixtures.requested_check,
            lambda f, check: do_finish_drift_check(check.pk, result=f.bike_drift_result),
        ),
        [("drift_check.complete", "system"), ("alert.open", "system")],
    ),
    "fail drift check": (
        _prepared(
            _Fixtures.requested_check, lambda f, check: do_finish_drift_check(check.pk, error="no file")
        ),
        [("drift_check.fail", "system")],
    ),
    "acknowledge alert": (
        _prepared(_Fixtures.alert, lambda f, alert: do_acknowledge_alert(alert=alert, actor=f.owner)),
        [("alert.acknowledge", "olivia")],
    ),
    "resolve alert": (
        _prepared(_Fixtures.alert, lambda f, alert: do_resolve_alert(alert=alert, actor=f.scientist)),
        [("alert.resolve", "dana")],
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_each_action_writes_exactly_its_events(request, tmp_path, admin, owner, scientist, outsider, case):
    prepare, expected = CASES[case]
    act = prepare(_Fixtures(request, tmp_path))
    since = _last_event_id()

    act()

    assert _new_events(since) == expected


def test_permission_denied_registration_leaves_no_event(dataset, viewer, tmp_path):
    path = tmp_path / "small.csv"
    path.write_bytes(b"hr,cnt\n0,16\n")
    since = _last_event_id()

    with pytest.raises(PermissionDenied, match="you may not change objects of this team"):
        do_register_dataset_version(
            dataset=dataset, file_path=path, filename="small.csv", source="upload", actor=viewer
        )

    assert _new_events(since) == []
    assert DatasetVersion.objects.count() == 0


def test_a_failing_audit_write_rolls_back_the_change(dataset, scientist, tmp_path, monkeypatch):
    """The event is written, then the transaction fails: neither the version nor its event stays."""
    path = tmp_path / "small.csv"
    path.write_bytes(b"hr,cnt\n0,16\n")
    written = []

    def record_then_fail(**kwargs):
        written.append(audit.record_audit_event(**kwargs))
        raise RuntimeError("audit storage failed")

    monkeypatch.setattr("governance.actions.datasets.record_audit_event", record_then_fail)
    since = _last_event_id()

    with pytest.raises(RuntimeError, match="audit storage failed"):
        do_register_dataset_version(
            dataset=dataset, file_path=path, filename="small.csv", source="upload", actor=scientist
        )

    assert [event.action for event in written] == ["dataset_version.register"]
    assert _new_events(since) == []
    assert DatasetVersion.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_audit_events_are_written_only_inside_a_transaction(dataset, scientist):
    with pytest.raises(
        RuntimeError, match="record_audit_event must run inside the transaction of the change"
    ):
        audit.record_audit_event(actor=scientist, action="dataset.touch", obj=dataset)

    assert not AuditEvent.objects.filter(action="dataset.touch").exists()


def test_audit_events_refuse_update_and_delete(dataset):
    event = AuditEvent.objects.get(action="dataset.create")
    event.action = "dataset.forged"

    for attempt in (
        event.save,
        event.delete,
        lambda: AuditEvent.objects.filter(pk=event.pk).update(action="dataset.forged"),
        lambda: AuditEvent.objects.filter(pk=event.pk).delete(),
        lambda: AuditEvent.objects.all().delete(),
        lambda: AuditEvent.objects.bulk_update([event], ["action"]),
    ):
        # A savepoint per attempt: bulk_update fails inside its own atomic block.
        with pytest.raises(PermissionError, match="audit events are append-only"), transaction.atomic():
            attempt()

    assert AuditEvent.objects.get(pk=event.pk).action == "dataset.create"
    assert AuditEvent.objects.filter(action="dataset.forged").count() == 0


@pytest.mark.parametrize("sent", [None, "req-42.a_b", "has spaces", "x" * 65])
def test_the_request_id_on_events_is_generated_by_the_server(client_for, scientist, team, sent):
    """A client's X-Request-ID is ignored: otherwise a user could make their events carry the
    request id of someone else's approval."""
    headers = {} if sent is None else {"HTTP_X_REQUEST_ID": sent}

    response = client_for(scientist).post(
        "/api/datasets/", {"team": team.pk, "name": "trips"}, format="json", **headers
    )

    generated = response["X-Request-ID"]
    assert generated != sent
    assert len(generated) == 32
    assert int(generated, 16) >= 0
    assert AuditEvent.objects.get(action="dataset.create").request_id == generated


def test_actions_outside_requests_have_no_request_id(dataset):
    assert AuditEvent.objects.get(action="dataset.create").request_id == ""


def test_task_events_carry_system_on_behalf_of_the_submitter(
    model_version, scientist, current_dataset_version, settings
):
    run_job(
        kind="infer",
        dataset_version=current_dataset_version,
        model_version=model_version,
        spec={},
        actor=scientist,
    )
    check = do_request_drift_check(
        model_version=model_version, current_dataset_version=current_dataset_version, actor=scientist
    )
    assert execute_drift_check(check.pk) == "succeeded"

    system = AuditEvent.objects.filter(actor_label="system").order_by("id")
    assert list(system.values_list("action", "object_type")) == [
        ("job.start", "job"),
        ("model_version.register", "modelversion"),
        ("job.succeed", "job"),
        ("job.start", "job"),
        ("dataset.create", "dataset"),
        ("dataset_version.register", "datasetversion"),
        ("job.succeed", "job"),
        ("drift_check.complete", "driftcheck"),
        ("alert.open", "alert"),
    ]
    assert {(e.actor, e.on_behalf_of, e.on_behalf_of_label, e.task_id) for e in system} == {
        (None, scientist, "dana", "")
    }


def _run_together(count: int, work: Callable[[int], None]) -> list[BaseException]:
    """Run ``work(i)`` in ``count`` threads released at once; each closes its own connection."""
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait()
            work(i)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


@pytest.mark.django_db(transaction=True)
def test_concurrent_registrations_number_versions_1_to_n(dataset, registered_model, scientist, tmp_path):
    """SQLite serialises writers (BEGIN IMMEDIATE); PostgreSQL waits on the parent row's lock."""
    files = []
    for i in range(6):
        path = tmp_path / f"part-{i}.csv"
        path.write_text(f"hr,cnt\n{i},{i * 10}\n")
        files.append(path)

    def register(i: int) -> None:
        do_register_dataset_version(
            dataset=dataset, file_path=files[i], filename=files[i].name, source="upload", actor=scientist
        )
        do_register_model_version(
            model=registered_model,
            artifact_bytes=f"weights {i}".encode(),
            metrics={},
            signature={},
            training_spec={},
            training_dataset_version=None,
            source_job_id=None,
            actor=scientist,
        )

    errors = _run_together(6, register)

    assert errors == []
    assert sorted(DatasetVersion.objects.filter(dataset=dataset).values_list("version", flat=True)) == [
        1,
        2,
        3,
        4,
        5,
        6,
    ]
    assert sorted(ModelVersion.objects.filter(model=registered_model).values_list("version", flat=True)) == [
        1,
        2,
        3,
        4,
        5,
        6,
    ]
    assert AuditEvent.objects.filter(action="dataset_version.register").count() == 6
    assert AuditEvent.objects.filter(action="model_version.register").count() == 6
    # Each event describes the row committed with it.
    for version in DatasetVersion.objects.all():
        event = AuditEvent.objects.get(action="dataset_version.register", object_id=str(version.pk))
        assert (event.after["version"], event.after["sha256"]) == (version.version, version.sha256)


def test_changes_inside_an_outer_transaction_roll_back_with_their_events(dataset, scientist, tmp_path):
    path = tmp_path / "small.csv"
    path.write_bytes(b"hr,cnt\n0,16\n")
    since = _last_event_id()

    def register_then_give_up():
        with transaction.atomic():
            do_register_dataset_version(
                dataset=dataset, file_path=path, filename="small.csv", source="upload", actor=scientist
            )
            raise ValueError("caller gave up")

    with pytest.raises(ValueError, match="caller gave up"):
        register_then_give_up()

    assert _new_events(since) == []
    assert DatasetVersion.objects.count() == 0
