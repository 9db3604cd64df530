"""Hostile review of issue 15, second pass: who may read and write evaluations, evaluation jobs,
gate policies and overrides; what an evaluation job does with odd inputs; faults while it runs.

The model is an MLflow "model from code" (a rule on ``x``) evaluated by real evaluation jobs
(``do_submit_job`` / the jobs API, the worker's ``execute_job`` with its serving child) on a
small CSV registered through the actions.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from django.test import Client

from governance.actions.datasets import do_create_dataset, do_register_dataset_version
from governance.actions.model_versions import do_register_model_version_from_artifact
from governance.actions.registered_models import do_create_registered_model
from governance.models import DatasetVersion, Evaluation, ModelVersion
from runners.actions import do_submit_job
from runners.execute import execute_job
from runners.models import Job, JobKind, JobState

JOBS = "/api/jobs/"

# A model from code: "yes" where x > 5, else "no"; NaN where the row's x is missing.
RULE_MODEL = """
import mlflow
import numpy as np
from mlflow.pyfunc import PythonModel


class Rule(PythonModel):
    def predict(self, context, model_input, params=None):
        x = model_input["x"].astype(float)
        return np.where(x.isna(), None, np.where(x > 5, "yes", "no"))


mlflow.models.set_model(Rule())
"""


def _rows(count: int = 200) -> str:
    lines = ["x,sex,group,label"]
    for i in range(count):
        x = i % 11
        label = "yes" if (x > 5) != (i % 7 == 0) else "no"
        lines.append(f"{x},{'F' if i % 2 else 'M'},{'a' if i % 3 else 'b'},{label}")
    return "\n".join(lines) + "\n"


def _register(team, scientist, tmp_path: Path, name: str, text: str) -> DatasetVersion:
    path = tmp_path / f"{name}.csv"
    path.write_text(text)
    dataset = do_create_dataset(team=team, name=name, actor=scientist)
    return do_register_dataset_version(
        dataset=dataset,
        file_path=path,
        filename=path.name,
        source=DatasetVersion.Source.PATH,
        actor=scientist,
    )


@pytest.fixture
def rows(team, scientist, tmp_path) -> DatasetVersion:
    return _register(team, scientist, tmp_path, "rows", _rows())


@pytest.fixture
def rule_version(team, owner, scientist, tmp_path) -> ModelVersion:
    import mlflow.pyfunc

    code = tmp_path / "rule_on_x.py"
    code.write_text(RULE_MODEL)
    mlflow.pyfunc.save_model(str(tmp_path / "rule"), python_model=str(code))
    model = do_create_registered_model(team=team, name="rule", owner=owner, actor=scientist)
    return do_register_model_version_from_artifact(
        model=model, artifact_path=tmp_path / "rule", source="upload", actor=scientist
    )


def spec(**extra) -> dict:
    return {
        "task": "classification",
        "target": "label",
        "positive_label": "yes",
        "features": ["x"],
        "sensitive_attributes": ["sex"],
        "slice_columns": ["group"],
        "bootstrap_resamples": 20,
        "importance_repeats": 1,
        "champion_alias": None,
        **extra,
    }


def _post(client, version, data, body) -> dict:
    response = client.post(
        JOBS,
        {"kind": "evaluate", "model_version": version.pk, "dataset_version": data.pk, "spec": body},
        format="json",
    )
    return response


def _evaluate(version, data, user, **extra) -> Job:
    job = do_submit_job(
        kind=JobKind.EVALUATE, dataset_version=data, model_version=version, spec=spec(**extra), actor=user
    )
    execute_job(job.pk)
    job.refresh_from_db()
    return job


# --- Spec fields of the wrong type ------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("sensitive_attributes", 5),
        ("slice_columns", 5),
        ("features", 5),
        ("sensitive_attributes", {"sex": 1}),
        ("sensitive_attributes", "sex"),
        ("sensitive_attributes", ["sex"] * 10_000),
        ("slice_columns", ["group", "group"]),
        ("target", ["label"]),
        ("task", {"a": 1}),
        ("primary_metric", ["f1"]),
        ("positive_label", 1.5),
        ("where", "label == 'yes'"),
        ("champion_alias", 5),
    ],
)
def test_spec_fields_of_the_wrong_type_are_a_400_naming_the_field(
    client_for, scientist, rule_version, rows, field, value
):
    response = _post(client_for(scientist), rule_version, rows, spec(**{field: value}))
    assert response.status_code == 400, response.content
    assert response.json()["spec"][0].startswith(f"{field}:"), response.json()
    assert not Job.objects.exists()


def test_null_sensitive_attributes_and_slices_mean_none(client_for, scientist, rule_version, rows):
    response = _post(
        client_for(scientist), rule_version, rows, spec(sensitive_attributes=None, slice_columns=None)
    )
    assert response.status_code == 201, response.content
    stored = response.json()["spec"]
    assert (stored["sensitive_attributes"], stored["slice_columns"]) == ([], [])


def test_a_repeated_column_is_refused_precisely(client_for, scientist, rule_version, rows):
    response = _post(client_for(scientist), rule_version, rows, spec(sensitive_attributes=["sex", "sex"]))
    assert response.json() == {"spec": ["sensitive_attributes: a column appears more than once"]}


# --- Who may read and write ------------------------------------------------------------------


def test_a_viewer_and_an_approver_may_not_submit_an_evaluation(
    client_for, viewer, approver, rule_version, rows
):
    for user in (viewer, approver):
        response = _post(client_for(user), rule_version, rows, spec())
        assert response.status_code == 403, response.content
    assert not Job.objects.exists()


def test_an_outsider_cannot_evaluate_read_or_filter_another_teams_evaluations(
    client_for, scientist, outsider, rule_version, rows, other_team, tmp_path
):
    job = _evaluate(rule_version, rows, scientist)
    assert (job.state, job.error) == (JobState.SUCCEEDED, "")
    evaluation = Evaluation.objects.get()
    client = client_for(outsider)
    # Submitting on the team's model and data: the ids are not visible, nothing is said of them.
    response = _post(client, rule_version, rows, spec(sensitive_attributes=["gender"]))
    assert response.status_code == 400
    assert set(response.json()) == {"dataset_version", "model_version"}
    assert "gender" not in str(response.json())
    assert client.get(f"/api/evaluations/{evaluation.pk}/").status_code == 404
    assert client.get("/api/evaluations/").json()["results"] == []
    for query in (f"model_version={rule_version.pk}", f"dataset_version={rows.pk}", "source=steward"):
        answer = client.get(f"/api/evaluations/?{query}")
        assert answer.status_code in (200, 400)
        assert "results" not in answer.json() or answer.json()["results"] == []
    assert client.get(f"/api/jobs/{job.pk}/").status_code == 404
    page = Client()
    page.force_login(outsider)
    assert page.get(f"/evaluations/{evaluation.pk}/").status_code == 404
    # The audit trail's evaluation.record event is the team's only.
    events = client.get("/api/audit-events/?action=evaluation.record").json()
    assert events["results"] == []


def test_a_viewer_reads_the_teams_evaluation(client_for, scientist, viewer, rule_version, rows):
    _evaluate(rule_version, rows, scientist)
    evaluation = Evaluation.objects.get()
    body = client_for(viewer).get(f"/api/evaluations/{evaluation.pk}/").json()
    assert (body["model_version"], body["dataset_version"], body["source"]) == (
        rule_version.pk,
        rows.pk,
        "steward",
    )
    # Evaluations are written by jobs and the MLflow door only: the API has no write.
    for method in ("post", "put", "patch", "delete"):
        url = "/api/evaluations/" if method == "post" else f"/api/evaluations/{evaluation.pk}/"
        assert getattr(client_for(scientist), method)(url, {}, format="json").status_code == 405


def test_gate_policies_are_set_by_the_teams_managers_only(
    client_for, team, owner, scientist, approver, viewer, outsider, other_team
):
    from governance.actions.aliases import do_set_protected_aliases

    do_set_protected_aliases(team=team, aliases=["production"], actor=owner)
    body = {"team": team.pk, "alias": "production", "conditions": [{"kind": "no_open_critical_alert"}]}
    for user in (scientist, approver, viewer):
        response = client_for(user).put("/api/gate-policies/set/", body, format="json")
        assert response.status_code == 403, (user, response.content)
    response = client_for(outsider).put("/api/gate-policies/set/", body, format="json")
    assert response.status_code == 400
    assert "team" in response.json()
    assert client_for(owner).put("/api/gate-policies/set/", body, format="json").status_code == 200
    assert client_for(outsider).get("/api/gate-policies/").json()["results"] == []
    assert client_for(viewer).get("/api/gate-policies/").json()["results"][0]["alias"] == "production"


# --- What the job meets when it runs ---------------------------------------------------------


def test_a_where_that_keeps_no_row_fails_the_job_with_the_reason(scientist, rule_version, rows):
    job = _evaluate(rule_version, rows, scientist, where={"group": "zzz"})
    assert job.state == JobState.FAILED
    assert "no row" in job.error or "0 rows" in job.error, job.error
    assert not job.error.startswith("internal error"), job.error
    assert not Evaluation.objects.exists()


def test_missing_labels_are_dropped_and_counted(team, scientist, rule_version, tmp_path):
    text = _rows().replace(",yes\n", ",\n", 30)
    data = _register(team, scientist, tmp_path, "holes", text)
    job = _evaluate(rule_version, data, scientist)
    assert (job.state, job.error) == (JobState.SUCCEEDED, "")
    results = Evaluation.objects.get().results
    assert results["dropped"]["target_missing"] == 30
    assert results["rows"] == 170


def test_no_label_at_all_fails_the_job_with_the_reason(team, scientist, rule_version, tmp_path):
    text = "x,sex,group,label\n" + "".join(f"{i % 11},F,a,\n" for i in range(50))
    data = _register(team, scientist, tmp_path, "unlabelled", text)
    job = _evaluate(rule_version, data, scientist, sensitive_attributes=[], slice_columns=[])
    assert job.state == JobState.FAILED
    assert job.error.startswith("target:"), job.error


def test_a_slice_or_group_emptied_by_where_is_not_a_crash(scientist, rule_version, rows):
    job = _evaluate(rule_version, rows, scientist, where={"sex": "F"})
    assert (job.state, job.error) == (JobState.SUCCEEDED, "")
    results = Evaluation.objects.get().results
    assert [group["group"] for group in results["fairness"]["sex"]["groups"]] == ["F"]


def test_unicode_column_names_are_evaluated(team, scientist, rule_version, tmp_path):
    text = _rows().replace("x,sex,group,label", "x,Geschlecht/性别,grüppe 🚲,label", 1)
    data = _register(team, scientist, tmp_path, "unicode", text)
    job = _evaluate(
        rule_version, data, scientist, sensitive_attributes=["Geschlecht/性别"], slice_columns=["grüppe 🚲"]
    )
    assert (job.state, job.error) == (JobState.SUCCEEDED, "")
    evaluation = Evaluation.objects.get()
    assert list(evaluation.results["fairness"]) == ["Geschlecht/性别"]
    page = Client()
    page.force_login(scientist)
    assert "Geschlecht/性别" in page.get(f"/evaluations/{evaluation.pk}/").content.decode()


def test_a_version_deleted_while_its_evaluation_waited_fails_it_naming_the_version(
    scientist, owner, rule_version, rows
):
    from governance.actions.model_versions import do_delete_model_version

    job = do_submit_job(
        kind=JobKind.EVALUATE, dataset_version=rows, model_version=rule_version, spec=spec(), actor=scientist
    )
    do_delete_model_version(version=rule_version, actor=owner)
    execute_job(job.pk)
    job.refresh_from_db()
    assert (job.state, job.error) == (
        JobState.FAILED,
        f"model_version: {rule_version} was deleted after the job was submitted; nothing is evaluated",
    )
    assert not Evaluation.objects.exists()


def test_a_duplicate_delivery_of_a_finished_evaluation_does_nothing(scientist, rule_version, rows):
    job = _evaluate(rule_version, rows, scientist)
    assert job.state == JobState.SUCCEEDED
    assert execute_job(job.pk) == JobState.SUCCEEDED
    assert Evaluation.objects.count() == 1


def test_a_champion_deleted_while_the_evaluation_waited_fails_it_naming_the_champion(
    scientist, owner, rule_version, rows, tmp_path
):
    from governance.actions.aliases import do_set_alias
    from governance.actions.model_versions import do_delete_model_version

    challenger = do_register_model_version_from_artifact(
        model=rule_version.model, artifact_path=tmp_path / "rule", source="upload", actor=scientist
    )
    do_set_alias(model=rule_version.model, alias="staging", version=rule_version, actor=owner)
    job = do_submit_job(
        kind=JobKind.EVALUATE,
        dataset_version=rows,
        model_version=challenger,
        spec=spec(champion_alias="staging"),
        actor=scientist,
    )
    assert job.spec["champion_version"] == rule_version.pk
    do_delete_model_version(version=rule_version, actor=owner)
    execute_job(job.pk)
    job.refresh_from_db()
    assert (job.state, job.error) == (
        JobState.FAILED,
        f"champion_version: {rule_version} was deleted after the job was submitted; nothing is evaluated",
    )
    assert not Evaluation.objects.exists()


# --- Faults ----------------------------------------------------------------------------------


def _after(seconds: float):
    """A ``ChildKiller`` readiness: true ``seconds`` after it is first asked (the child is up)."""
    import time

    first: list[float] = []

    def ready() -> bool:
        first[:] = first or [time.monotonic()]
        return time.monotonic() - first[0] >= seconds

    return ready


def test_an_evaluation_whose_child_is_killed_runs_again_and_records_one_evaluation(
    scientist, rule_version, rows
):
    from governance.models import AuditEvent
    from tests.runners.test_child_lost import ChildKiller

    job = do_submit_job(
        kind=JobKind.EVALUATE, dataset_version=rows, model_version=rule_version, spec=spec(), actor=scientist
    )
    with ChildKiller(job.pk, _after(1.0), times=1) as killer:
        first = execute_job(job.pk)
    assert (first, killer.kills) == (JobState.QUEUED, 1)
    retry = AuditEvent.objects.get(object_type="job", object_id=str(job.pk), action="job.retry")
    assert retry.after["reason"].startswith("the job's process was killed by signal 9 without a result")
    assert not Evaluation.objects.exists()

    assert execute_job(job.pk) == JobState.SUCCEEDED
    assert Evaluation.objects.filter(job_id=job.pk).count() == 1


def test_an_evaluation_whose_child_is_killed_every_time_fails_with_the_reason(
    scientist, rule_version, rows, settings
):
    from tests.runners.test_child_lost import ChildKiller

    most = settings.STEWARD_JOB_MAX_ATTEMPTS
    job = do_submit_job(
        kind=JobKind.EVALUATE, dataset_version=rows, model_version=rule_version, spec=spec(), actor=scientist
    )
    with ChildKiller(job.pk, lambda: True, times=most):
        states = [execute_job(job.pk) for _ in range(most)]
    assert states == [JobState.QUEUED] * (most - 1) + [JobState.FAILED]
    job.refresh_from_db()
    assert job.error.startswith("the job's process was killed by signal 9 without a result")
    assert job.error.endswith(f"(attempt {most} of {most}; not retried again)")
    assert not Evaluation.objects.exists()
    assert execute_job(job.pk) == JobState.FAILED


def test_a_job_token_can_neither_read_nor_write_evaluations_gates_or_evaluation_jobs(
    team, owner, scientist, rule_version, rows
):
    from rest_framework.test import APIClient

    from governance.actions.aliases import do_set_protected_aliases
    from runners.tracking import do_create_experiment
    from tests.mlflow.test_job_tokens import job_token, make_code_run

    do_set_protected_aliases(team=team, aliases=["production"], actor=owner)
    _evaluate(rule_version, rows, scientist)
    evaluation = Evaluation.objects.get()
    run = make_code_run(team, scientist, experiment=do_create_experiment(name="runs", actor=scientist))
    client = APIClient(HTTP_AUTHORIZATION=f"Bearer {job_token(run)}")
    rule = f"a job token may only use the MLflow API of its own run (job #{run.pk})"

    answers = [
        client.get("/api/evaluations/"),
        client.get(f"/api/evaluations/{evaluation.pk}/"),
        client.get("/api/gate-policies/"),
        client.put(
            "/api/gate-policies/set/",
            {"team": team.pk, "alias": "production", "conditions": []},
            format="json",
        ),
        _post(client, rule_version, rows, spec()),
    ]

    assert [answer.status_code for answer in answers] == [403] * 5
    assert all(rule in answer.json()["detail"] for answer in answers)
    assert Job.objects.filter(kind=JobKind.EVALUATE).count() == 1
    assert Evaluation.objects.count() == 1


def test_an_evaluation_of_the_teams_model_on_another_teams_data_is_refused(
    client_for, admin, scientist, rule_version, other_team, tmp_path
):
    """A scientist who may also read the other team's data still cannot join it to the model."""
    from governance.actions.teams import do_set_membership
    from governance.models import TeamRole

    do_set_membership(user=scientist, team=other_team, role=TeamRole.DATA_SCIENTIST, actor=admin)
    theirs = _register(other_team, scientist, tmp_path, "theirs", _rows())
    response = _post(client_for(scientist), rule_version, theirs, spec())
    assert response.status_code == 400, response.content
    assert response.json() == {
        "dataset_version": ["the dataset version belongs to another team than the model"]
    }
    assert not Job.objects.exists()


@pytest.mark.parametrize("field", ["champion_alias", "positive_label"])
def test_a_nul_character_in_a_spec_text_is_a_400(client_for, scientist, rule_version, rows, field):
    """PostgreSQL stores no NUL: the API's handler answers 400, no job is written."""
    response = _post(client_for(scientist), rule_version, rows, spec(**{field: "yes\x00"}))
    assert (response.status_code, response.json()) == (
        400,
        {"detail": "a value in the request cannot be stored"},
    )
    assert not Job.objects.exists()


def test_read_only_tokens_set_no_gate_approve_nothing_and_submit_no_evaluation(
    team, owner, scientist, approver, rule_version, rows
):
    from rest_framework.test import APIClient

    from governance.actions.aliases import do_set_protected_aliases
    from governance.actions.promotions import do_request_promotion
    from governance.actions.tokens import do_create_api_token
    from governance.models import PromotionGatePolicy, PromotionRequest

    do_set_protected_aliases(team=team, aliases=["production"], actor=owner)
    request = do_request_promotion(model_version=rule_version, actor=scientist)

    def reader(user) -> APIClient:
        _, secret = do_create_api_token(user=user, name="read", actor=user)
        return APIClient(HTTP_AUTHORIZATION=f"Bearer {secret}")

    answers = [
        reader(owner).put(
            "/api/gate-policies/set/",
            {"team": team.pk, "alias": "production", "conditions": []},
            format="json",
        ),
        _post(reader(scientist), rule_version, rows, spec()),
        reader(approver).post(
            f"/api/promotion-requests/{request.pk}/approve/", {"override_reason": "x"}, format="json"
        ),
    ]

    assert [answer.status_code for answer in answers] == [403, 403, 403]
    assert not PromotionGatePolicy.objects.exists()
    assert not Job.objects.exists()
    request.refresh_from_db()
    assert (request.state, request.override_by) == (PromotionRequest.State.PENDING, None)


def test_an_identifier_as_sensitive_attribute_fails_at_once_and_as_slice_column_is_quick(
    team, scientist, rule_version, tmp_path
):
    import time

    lines = _rows(3000).splitlines()
    text = "\n".join([lines[0] + ",id"] + [f"{line},row-{i}" for i, line in enumerate(lines[1:])]) + "\n"
    data = _register(team, scientist, tmp_path, "with-ids", text)

    job = _evaluate(rule_version, data, scientist, sensitive_attributes=["id"])
    assert (job.state, job.error) == (
        JobState.FAILED,
        "sensitive_attributes: column 'id' has 3,000 distinct values; fairness compares at most 100 "
        "groups (a category such as sex or race): bin it into a new column, or report it with "
        "slice_columns",
    )
    assert not Evaluation.objects.exists()

    started = time.monotonic()
    job = _evaluate(rule_version, data, scientist, slice_columns=["id"], robustness=False)
    assert (job.state, job.error) == (JobState.SUCCEEDED, "")
    slices = Evaluation.objects.get().results["slices"]
    assert (len(slices["items"]), slices["left_out"]) == (50, 2950)
    assert all(item["too_small"] and item["rows"] == 1 for item in slices["items"])
    assert time.monotonic() - started < 60


@pytest.mark.django_db(transaction=True)
def test_a_second_delivery_while_the_evaluation_runs_leaves_it_alone(scientist, rule_version, rows):
    import threading
    import time

    job = do_submit_job(
        kind=JobKind.EVALUATE, dataset_version=rows, model_version=rule_version, spec=spec(), actor=scientist
    )
    states: list[str] = []

    def first() -> None:
        from django.db import connection

        try:
            states.append(execute_job(job.pk))
        finally:
            connection.close()

    thread = threading.Thread(target=first)
    thread.start()
    deadline = time.monotonic() + 60
    while Job.objects.get(pk=job.pk).state != JobState.RUNNING and time.monotonic() < deadline:
        time.sleep(0.05)
    second = execute_job(job.pk)
    thread.join()

    assert (second, states) == (JobState.RUNNING, [JobState.SUCCEEDED])
    job.refresh_from_db()
    assert (job.state, job.attempt) == (JobState.SUCCEEDED, 1)
    assert Evaluation.objects.filter(job_id=job.pk).count() == 1


@pytest.mark.parametrize(
    "evaluation",
    [
        '{"dataset": %d, "task": "classification", "target": "label\\u0000"}',
        '{"dataset": %d, "task": "classification", "target": "label", "positive_label": "y\\u0000"}',
        '{"dataset": %d, "task": "classification", "target": "label", "slice_columns": ["g\\u0000"]}',
    ],
)
def test_a_gate_policys_evaluation_setting_with_a_nul_is_a_400_form_error(team, owner, rows, evaluation):
    from governance.actions.aliases import do_set_protected_aliases
    from governance.models import PromotionGatePolicy

    do_set_protected_aliases(team=team, aliases=["production"], actor=owner)
    page = Client(raise_request_exception=False)
    page.force_login(owner)
    response = page.post(
        "/gate-policies/",
        {
            "team": team.pk,
            "alias": "production",
            "conditions": '[{"kind": "no_open_critical_alert"}]',
            "evaluation": evaluation % rows.dataset_id,
        },
    )
    assert response.status_code == 400, response.status_code
    assert "<li>a value in the request cannot be stored</li>" in response.content.decode()
    assert not PromotionGatePolicy.objects.exists()


# A model whose predictions never come (a deadlock, a remote call that hangs).
HANGING_MODEL = """
import time

import mlflow
from mlflow.pyfunc import PythonModel


class Hang(PythonModel):
    def predict(self, context, model_input, params=None):
        time.sleep(3600)


mlflow.models.set_model(Hang())
"""


def test_a_model_that_never_answers_fails_its_evaluation_at_the_wall_time_limit(
    team, owner, scientist, rows, tmp_path
):
    import time

    import mlflow.pyfunc

    code = tmp_path / "hang.py"
    code.write_text(HANGING_MODEL)
    mlflow.pyfunc.save_model(str(tmp_path / "hang"), python_model=str(code))
    model = do_create_registered_model(team=team, name="hang", owner=owner, actor=scientist)
    version = do_register_model_version_from_artifact(
        model=model, artifact_path=tmp_path / "hang", source="upload", actor=scientist
    )
    started = time.monotonic()
    job = _evaluate(version, rows, scientist, limits={"wall_time_s": 20})
    assert job.state == JobState.FAILED
    assert "20" in job.error, job.error
    assert "wall" in job.error, job.error
    assert time.monotonic() - started < 90
    assert not Evaluation.objects.exists()


def test_only_the_teams_approvers_other_than_the_requester_may_override(
    client_for, team, owner, scientist, viewer, outsider, admin, compliance_officer, rule_version
):
    from governance.actions.aliases import do_set_protected_aliases
    from governance.actions.gates import do_set_gate_policy
    from governance.actions.promotions import do_request_promotion
    from governance.models import PromotionRequest

    do_set_protected_aliases(team=team, aliases=["production"], actor=owner)
    do_set_gate_policy(
        team=team,
        alias="production",
        conditions=[{"kind": "metric_bound", "metric": "f1", "min": 0.9}],
        actor=owner,
    )
    request = do_request_promotion(model_version=rule_version, actor=scientist)
    approve = f"/api/promotion-requests/{request.pk}/approve/"
    body = {"override_reason": "trust me"}

    personas = {
        "scientist": scientist,
        "owner": owner,
        "viewer": viewer,
        "outsider": outsider,
        "admin": admin,
        "compliance_officer": compliance_officer,
    }
    answers = {name: client_for(user).post(approve, body, format="json") for name, user in personas.items()}

    statuses = {name: answer.status_code for name, answer in answers.items()}
    assert statuses == {
        "scientist": 403,
        "owner": 403,
        "viewer": 403,
        "outsider": 404,
        "admin": 403,
        "compliance_officer": 403,
    }
    assert answers["viewer"].json()["detail"] == "only an approver of team Mobility may decide promotions"
    request.refresh_from_db()
    assert (request.state, request.override_by, request.override_reason) == (
        PromotionRequest.State.PENDING,
        None,
        "",
    )
