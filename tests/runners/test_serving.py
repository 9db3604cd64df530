"""Online prediction through the API (issue 17): the in-house flavor served in-process by alias
and by version, the prediction log, RBAC (the predict permission, prediction tokens), serving
policies (canary, shadow) and an alias moved through the approved promotion path while requests
keep arriving."""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import threading
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
from rest_framework.test import APIClient

from governance.actions.aliases import do_set_alias
from governance.actions.model_versions import (
    do_register_model_version,
    do_register_model_version_from_artifact,
)
from governance.actions.promotions import do_approve_promotion, do_request_promotion
from governance.actions.registered_models import do_create_registered_model
from governance.models import ApiToken, AuditEvent, TokenScope
from runners.models import Prediction, PredictionRole, ServingPolicy
from runners.serving import predictors, supervisor
from runners.specs import parse_spec
from tests.conftest import BIKE_FEATURES, small_training_spec

pytestmark = pytest.mark.django_db


def alias_url(name: str = "bike-demand", alias: str = "staging") -> str:
    return f"/api/models/{name}/aliases/{alias}/predict"


def version_url(name: str = "bike-demand", number: int = 1) -> str:
    return f"/api/models/{name}/versions/{number}/predict"


def rows_of(frame: pd.DataFrame, count: int) -> list[dict]:
    """``count`` real rows of the bike data, the model's features only, as JSON values."""
    return json.loads(frame[BIKE_FEATURES].iloc[:count].to_json(orient="records"))


def expected_predictions(version, rows: list[dict]) -> list[float]:
    """What the version predicts for ``rows``, loaded here through the plain predictor module."""
    loaded = predictors.load(version.path, flavor=version.flavor, sha256=version.sha256, name=str(version))
    return loaded.predict(pd.DataFrame.from_records(rows)).tolist()


@pytest.fixture
def staged(registered_version, scientist):
    """``registered_version`` (v1 of bike-demand) holding the unprotected alias ``staging``."""
    do_set_alias(model=registered_version.model, alias="staging", version=registered_version, actor=scientist)
    return registered_version


@pytest.fixture
def second_version(registered_version, dataset_version, bike_frame):
    """v2 of bike-demand: trained on other rows (2012), so its predictions differ from v1's."""
    from runners import training

    spec = parse_spec({**small_training_spec(), "where": {"yr": 1}, "seed": 7}, list(bike_frame.columns))
    result = training.train(bike_frame[bike_frame["yr"] == 1], spec)
    return do_register_model_version(
        model=registered_version.model,
        artifact_bytes=result.artifact,
        metrics=result.metrics,
        signature=result.signature,
        training_spec=spec.as_dict(),
        training_dataset_version=dataset_version,
        source_job_id=None,
        actor=None,
        on_behalf_of=registered_version.created_by,
    )


def test_predict_by_alias_in_process_answers_and_logs_each_row(staged, scientist, client_for, bike_frame):
    rows = rows_of(bike_frame, 3)

    response = client_for(scientist).post(alias_url(), {"rows": rows}, format="json")

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["predictions"] == pytest.approx(expected_predictions(staged, rows), rel=1e-6)
    assert (body["model_version"], body["served_by"], body["alias"], body["is_canary"]) == (
        1,
        "in_process",
        "staging",
        False,
    )
    assert len(set(body["prediction_ids"])) == 3
    logged = {str(p.prediction_id): p for p in Prediction.objects.all()}
    assert set(logged) == set(body["prediction_ids"])
    for prediction_id, row, output in zip(body["prediction_ids"], rows, body["predictions"], strict=True):
        entry = logged[prediction_id]
        assert (entry.model_version, entry.alias, entry.role, entry.is_canary) == (
            staged,
            "staging",
            PredictionRole.SERVED,
            False,
        )
        assert (entry.features, entry.output, entry.requested_by) == (row, output, scientist)


def test_predict_by_version_and_mlflow_dataframe_records(staged, owner, client_for, bike_frame):
    rows = rows_of(bike_frame, 2)

    response = client_for(owner).post(version_url(), {"dataframe_records": rows}, format="json")

    assert response.status_code == 200, response.content
    assert response.json()["predictions"] == pytest.approx(expected_predictions(staged, rows), rel=1e-6)
    assert response.json()["alias"] == ""
    assert Prediction.objects.filter(alias="", model_version=staged).count() == 2


def test_sampling_zero_logs_nothing_but_still_answers_ids(
    staged, scientist, client_for, bike_frame, settings
):
    settings.STEWARD_PREDICTION_LOG_SAMPLE = 0.0

    response = client_for(scientist).post(alias_url(), {"rows": rows_of(bike_frame, 2)}, format="json")

    assert response.status_code == 200
    assert len(response.json()["prediction_ids"]) == 2
    assert not Prediction.objects.exists()


@pytest.mark.parametrize(
    ("persona", "status"),
    [
        ("admin", 200),
        ("owner", 200),
        ("scientist", 200),
        ("approver", 403),
        ("viewer", 403),
        ("compliance_officer", 403),
        ("outsider", 404),
    ],
)
def test_who_may_predict(persona, status, staged, client_for, bike_frame, request):
    user = request.getfixturevalue(persona)

    response = client_for(user).post(alias_url(), {"rows": rows_of(bike_frame, 1)}, format="json")

    assert response.status_code == status, response.content
    assert Prediction.objects.count() == (1 if status == 200 else 0)


def test_unknown_alias_version_or_name_is_404(staged, scientist, client_for, bike_frame):
    client = client_for(scientist)
    body = {"rows": rows_of(bike_frame, 1)}

    assert client.post(alias_url(alias="nope"), body, format="json").status_code == 404
    assert client.post(version_url(number=9), body, format="json").status_code == 404
    assert client.post(alias_url(name="no-such-model"), body, format="json").status_code == 404
    assert not Prediction.objects.exists()


def test_a_name_held_by_two_visible_teams_asks_for_the_team(
    staged, other_team, admin, client_for, bike_frame, outsider
):
    do_create_registered_model(team=other_team, name="bike-demand", owner=outsider, actor=outsider)
    client = client_for(admin)
    body = {"rows": rows_of(bike_frame, 1)}

    ambiguous = client.post(alias_url(), body, format="json")
    chosen = client.post(alias_url() + f"?team={staged.model.team.slug}", body, format="json")

    assert ambiguous.status_code == 400
    assert "?team=<slug>" in ambiguous.json()["team"][0]
    assert chosen.status_code == 200
    assert chosen.json()["model_version"] == 1


def _token_client(secret: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


def test_prediction_token_predicts_with_its_model_only(staged, owner, client_for, bike_frame, team, outsider):
    created = client_for(owner).post(
        f"/api/models/{staged.model_id}/prediction-tokens/", {"name": "checkout app"}, format="json"
    )
    assert created.status_code == 201, created.content
    token = ApiToken.objects.get(pk=created.json()["id"])
    assert (token.scope, token.registered_model, token.user) == (TokenScope.PREDICT, staged.model, owner)
    assert (
        AuditEvent.objects.filter(action="api_token.create_prediction_token", object_id=str(token.pk)).count()
        == 1
    )
    client = _token_client(created.json()["token"])
    other = do_create_registered_model(team=team, name="bike-other", owner=owner, actor=owner)
    do_set_alias(
        model=other,
        alias="staging",
        version=do_register_model_version(
            model=other,
            artifact_bytes=staged.path.read_bytes(),
            metrics={},
            signature=staged.signature,
            training_spec={},
            training_dataset_version=None,
            source_job_id=None,
            actor=owner,
        ),
        actor=owner,
    )

    predicted = client.post(alias_url(), {"rows": rows_of(bike_frame, 1)}, format="json")
    other_model = client.post(alias_url(name="bike-other"), {"rows": rows_of(bike_frame, 1)}, format="json")
    datasets = client.get("/api/datasets/")
    jobs = client.post("/api/jobs/", {}, format="json")
    mlflow_api = client.get("/api/2.0/mlflow/registered-models/search")

    assert predicted.status_code == 200
    assert other_model.status_code == 403
    assert "another model" in other_model.json()["detail"]
    assert datasets.status_code == jobs.status_code == 403
    assert "prediction token" in datasets.json()["detail"]
    assert mlflow_api.status_code == 403
    assert "prediction token" in mlflow_api.json()["message"]
    assert Prediction.objects.count() == 1


def test_a_prediction_token_is_listed_and_revoked_by_its_owner(staged, owner, client_for, bike_frame):
    """A leaked prediction token can be stopped: it is in its owner's token list, revocable there."""
    owner_client = client_for(owner)
    created = owner_client.post(
        f"/api/models/{staged.model_id}/prediction-tokens/", {"name": "checkout app"}, format="json"
    ).json()
    listed = {row["id"]: row for row in owner_client.get("/api/tokens/").json()["results"]}
    assert listed[created["id"]]["scope"] == "predict"
    assert listed[created["id"]]["registered_model"] == staged.model_id
    token_client = _token_client(created["token"])
    assert token_client.post(alias_url(), {"rows": rows_of(bike_frame, 1)}, format="json").status_code == 200

    revoked = owner_client.post(f"/api/tokens/{created['id']}/revoke/")

    assert revoked.status_code == 200, revoked.content
    again = token_client.post(alias_url(), {"rows": rows_of(bike_frame, 1)}, format="json")
    assert again.status_code == 401
    assert "revoked" in again.json()["detail"]


def test_only_model_owners_create_prediction_tokens(staged, scientist, viewer, outsider, client_for):
    url = f"/api/models/{staged.model_id}/prediction-tokens/"

    assert client_for(scientist).post(url, {"name": "x"}, format="json").status_code == 403
    assert client_for(viewer).post(url, {"name": "x"}, format="json").status_code == 403
    assert client_for(outsider).post(url, {"name": "x"}, format="json").status_code == 404
    assert not ApiToken.objects.filter(scope=TokenScope.PREDICT).exists()


def test_canary_answers_its_share_and_is_logged_as_canary(
    staged, second_version, scientist, client_for, bike_frame
):
    client = client_for(scientist)
    policy = client.post(
        "/api/serving-policies/",
        {
            "registered_model": staged.model_id,
            "alias": "staging",
            "canary_version": second_version.pk,
            "canary_percent": 100,
        },
        format="json",
    )
    assert policy.status_code == 201, policy.content
    rows = rows_of(bike_frame, 2)

    canary = client.post(alias_url(), {"rows": rows}, format="json").json()
    client.post(
        "/api/serving-policies/", {"registered_model": staged.model_id, "alias": "staging"}, format="json"
    )
    stable = client.post(alias_url(), {"rows": rows}, format="json").json()

    assert (canary["model_version"], canary["is_canary"]) == (2, True)
    assert canary["predictions"] == pytest.approx(expected_predictions(second_version, rows), rel=1e-6)
    assert (stable["model_version"], stable["is_canary"]) == (1, False)
    assert Prediction.objects.filter(is_canary=True, model_version=second_version).count() == 2
    assert ServingPolicy.objects.get().canary_version is None
    assert AuditEvent.objects.filter(action="serving_policy.set").count() == 2


def test_a_protected_alias_takes_a_shadow_but_no_canary(
    staged, second_version, scientist, owner, approver, client_for
):
    """Four eyes: a canary answers real requests in the alias's name, so on ``production`` it would
    serve an unapproved version; a shadow answers nobody."""
    do_approve_promotion(
        promotion_request=do_request_promotion(model_version=staged, actor=scientist),
        actor=approver,
    )
    client = client_for(owner)
    body = {"registered_model": staged.model_id, "alias": "production"}

    canary = client.post(
        "/api/serving-policies/",
        {**body, "canary_version": second_version.pk, "canary_percent": 10},
        format="json",
    )
    shadow = client.post(
        "/api/serving-policies/", {**body, "shadow_version": second_version.pk}, format="json"
    )

    assert canary.status_code == 403
    assert "protected" in canary.json()["detail"]
    assert shadow.status_code == 201, shadow.content
    assert ServingPolicy.objects.get(alias="production").canary_version is None


def test_a_canary_share_splits_requests_between_both_versions(
    staged, second_version, scientist, client_for, bike_frame
):
    client = client_for(scientist)
    client.post(
        "/api/serving-policies/",
        {
            "registered_model": staged.model_id,
            "alias": "staging",
            "canary_version": second_version.pk,
            "canary_percent": 50,
        },
        format="json",
    )
    # 60 requests at 50 %: both versions answer unless a 2**-59 event happens.
    served = {
        client.post(alias_url(), {"rows": rows_of(bike_frame, 1)}, format="json").json()["model_version"]
        for _ in range(60)
    }

    assert served == {1, 2}


def test_shadow_scores_the_same_rows_logged_never_returned(
    staged, second_version, scientist, client_for, bike_frame
):
    client = client_for(scientist)
    client.post(
        "/api/serving-policies/",
        {"registered_model": staged.model_id, "alias": "staging", "shadow_version": second_version.pk},
        format="json",
    )
    rows = rows_of(bike_frame, 3)

    body = client.post(alias_url(), {"rows": rows}, format="json").json()

    assert body["model_version"] == 1
    assert body["predictions"] == pytest.approx(expected_predictions(staged, rows), rel=1e-6)
    shadow = Prediction.objects.filter(role=PredictionRole.SHADOW).order_by("created_at", "id")
    assert sorted(str(p.prediction_id) for p in shadow) == sorted(body["prediction_ids"])
    by_id = {str(p.prediction_id): p.output for p in shadow}
    assert [by_id[i] for i in body["prediction_ids"]] == pytest.approx(
        expected_predictions(second_version, rows), rel=1e-6
    )
    assert all(p.model_version == second_version for p in shadow)


@pytest.fixture
def model_servers(settings):
    """Model servers in a short-named folder of their own (a socket path has at most 107 bytes),
    all stopped after the test."""
    folder = Path(tempfile.mkdtemp(prefix="ms-", dir="/tmp"))
    settings.STEWARD_MODEL_SERVER_DIR = folder
    yield folder
    supervisor.stop_all(folder)
    shutil.rmtree(folder, ignore_errors=True)


def test_a_failing_shadow_never_fails_the_request(
    staged, scientist, client_for, bike_frame, tmp_path, model_servers
):
    # An MLflow model whose loader module does not exist: its model server cannot load it.
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "MLmodel").write_text(
        "flavors:\n  python_function:\n    loader_module: no_such_loader_module\n    python_version: 3.11\n"
    )
    shadow = do_register_model_version_from_artifact(
        model=staged.model, artifact_path=broken, source="test", actor=scientist
    )
    client = client_for(scientist)
    client.post(
        "/api/serving-policies/",
        {"registered_model": staged.model_id, "alias": "staging", "shadow_version": shadow.pk},
        format="json",
    )

    response = client.post(alias_url(), {"rows": rows_of(bike_frame, 2)}, format="json")

    assert response.status_code == 200
    assert response.json()["model_version"] == 1
    assert Prediction.objects.filter(role=PredictionRole.SERVED).count() == 2
    assert not Prediction.objects.filter(role=PredictionRole.SHADOW).exists()


def test_serving_policy_rules(staged, second_version, scientist, viewer, outsider, client_for, team, owner):
    other = do_create_registered_model(team=team, name="bike-other", owner=owner, actor=owner)
    foreign = do_register_model_version(
        model=other,
        artifact_bytes=staged.path.read_bytes(),
        metrics={},
        signature=staged.signature,
        training_spec={},
        training_dataset_version=None,
        source_job_id=None,
        actor=owner,
    )
    base = {"registered_model": staged.model_id, "alias": "staging"}
    client = client_for(scientist)

    another_model = client.post(
        "/api/serving-policies/", {**base, "canary_version": foreign.pk, "canary_percent": 10}, format="json"
    )
    too_much = client.post(
        "/api/serving-policies/",
        {**base, "canary_version": second_version.pk, "canary_percent": 101},
        format="json",
    )
    no_canary = client.post("/api/serving-policies/", {**base, "canary_percent": 10}, format="json")
    no_alias = client.post("/api/serving-policies/", {**base, "alias": "nowhere"}, format="json")
    by_viewer = client_for(viewer).post("/api/serving-policies/", base, format="json")
    by_outsider = client_for(outsider).post("/api/serving-policies/", base, format="json")

    assert another_model.status_code == 400
    assert "not a version of bike-demand" in another_model.json()["canary_version"][0]
    assert too_much.status_code == 400
    assert no_canary.status_code == 400
    assert "canary_version" in no_canary.json()["canary_percent"][0]
    assert no_alias.status_code == 400
    assert "no alias 'nowhere'" in no_alias.json()["alias"][0]
    assert by_viewer.status_code == 403
    assert by_outsider.status_code == 400  # the model is an unknown id to an outsider
    assert not ServingPolicy.objects.exists()
    assert not AuditEvent.objects.filter(action="serving_policy.set").exists()


@pytest.mark.django_db(transaction=True)
def test_alias_moved_by_an_approved_promotion_while_requests_arrive(
    staged, second_version, scientist, approver, live_server, bike_frame
):
    from governance.actions.tokens import do_create_api_token

    first = do_request_promotion(model_version=staged, alias="production", actor=scientist)
    do_approve_promotion(promotion_request=first, actor=approver)
    _, secret = do_create_api_token(user=scientist, name="load", is_read_only=False, actor=scientist)
    body = json.dumps({"rows": rows_of(bike_frame, 1)}).encode()
    answers: list[tuple[int, int]] = []
    moved = threading.Event()
    after_move: list[int] = []

    def send() -> None:
        request = urllib.request.Request(  # noqa: S310 - the live test server
            f"{live_server.url}{alias_url(alias='production')}",
            data=body,
            headers={"Authorization": f"Bearer {secret}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310 - the test server
            answers.append((response.status, json.loads(response.read())["model_version"]))

    def keep_sending() -> None:
        while not moved.is_set():
            send()
        for _ in range(5):
            send()
            after_move.append(answers[-1][1])

    sender = threading.Thread(target=keep_sending)
    sender.start()
    while len(answers) < 5:
        sender.join(0.05)
    request = do_request_promotion(model_version=second_version, alias="production", actor=scientist)
    do_approve_promotion(promotion_request=request, actor=approver)
    moved.set()
    sender.join(120)

    assert not sender.is_alive()
    assert {status for status, _ in answers} == {200}
    assert {version for _, version in answers} == {1, 2}
    assert after_move == [2] * 5


def test_a_served_monitor_compares_the_features_by_default_not_the_target(staged, scientist, client_for):
    created = client_for(scientist).post(
        "/api/monitors/",
        {"model_version": staged.pk, "name": "online", "source": "served"},
        format="json",
    )

    assert created.status_code == 201, created.content
    assert created.json()["columns"] == staged.signature["features"]
    assert "cnt" not in created.json()["columns"]


def test_a_monitor_of_served_predictions_checks_drift_over_the_logged_rows(
    staged, scientist, client_for, bike_frame, settings
):
    from monitoring.engine import CheckConfig, build_profile, run_check
    from monitoring.execute import execute_drift_check
    from monitoring.models import CheckState, DriftCheck

    settings.STEWARD_PREDICT_MAX_ROWS = 1000
    client = client_for(scientist)
    served = bike_frame[bike_frame["yr"] == 1].iloc[:600]
    answer = client.post(alias_url(), {"rows": rows_of(served, 600)}, format="json")
    assert answer.status_code == 200
    created = client.post(
        "/api/monitors/",
        {
            "model_version": staged.pk,
            "name": "online",
            "source": "served",
            "served_hours": 2,
            "columns": BIKE_FEATURES,
            "min_sample_size": 100,
            "check_performance": False,
        },
        format="json",
    )
    assert created.status_code == 201, created.content

    ran = client.post(f"/api/monitors/{created.json()['id']}/run/")
    assert ran.status_code in (200, 201, 202), ran.content
    check = DriftCheck.objects.get()
    state = execute_drift_check(check.pk, make_report=False)

    check.refresh_from_db()
    assert state == CheckState.SUCCEEDED, check.error
    assert check.window["rows"] == 600
    current = check.current_dataset_version
    assert (current.dataset.name, current.row_count) == ("bike-demand-served", 600)
    reference = bike_frame[bike_frame["yr"] == 0]
    logged = pd.DataFrame.from_records(rows_of(served, 600))
    logged["prediction"] = answer.json()["predictions"]
    config = CheckConfig(columns=tuple(BIKE_FEATURES), min_sample_size=100)
    expected = run_check(build_profile(reference), logged, config)
    assert [c["column"] for c in check.drifted_columns] == [
        c.column for c in expected.columns if c.is_drifted
    ]


def test_the_serving_page_sets_a_policy_and_creates_a_prediction_token(
    staged, second_version, scientist, owner, viewer, outsider, client
):
    page = f"/models/{staged.model_id}/serving/"
    tokens = f"/models/{staged.model_id}/prediction-tokens/"
    client.force_login(scientist)
    assert "Set serving policy" in client.get(page).content.decode()

    posted = client.post(page, {"alias": "staging", "shadow_version": second_version.pk, "canary_percent": 0})
    refused = client.post(tokens, {"name": "shop"})

    assert posted.status_code == 302
    assert ServingPolicy.objects.get().shadow_version == second_version
    assert refused.status_code == 403
    client.force_login(owner)
    created = client.post(tokens, {"name": "shop"})
    token = ApiToken.objects.get(scope=TokenScope.PREDICT)
    assert created.status_code == 200
    assert token.prefix in created.content.decode()
    assert created["Cache-Control"] == "no-store"
    client.force_login(viewer)
    assert client.post(page, {"alias": "staging", "canary_percent": 0}).status_code == 403
    client.force_login(outsider)
    assert client.get(page).status_code == 404
    assert ServingPolicy.objects.count() == 1


def _select(page: str, name: str) -> str:
    """The HTML of the form's ``<select name=...>``."""
    return re.search(rf'<select name="{name}".*?</select>', page, re.S).group(0)


def test_the_policy_form_shows_the_alias_current_policy_and_only_to_who_may_use_it(
    staged, second_version, scientist, owner, viewer, client
):
    page = f"/models/{staged.model_id}/serving/"
    client.force_login(scientist)
    posted = client.post(
        page, {"alias": "staging", "canary_version": second_version.pk, "canary_percent": 20}
    )

    assert (posted.status_code, posted["Location"]) == (302, f"{page}?alias=staging")
    shown = client.get(posted["Location"]).content.decode()
    # Prefilled with the policy just set: submitting it again keeps the canary.
    assert f'<option value="{second_version.pk}" selected>' in _select(shown, "canary_version")
    assert "selected>" not in _select(shown, "shadow_version").replace('value="" selected>', "")
    assert 'name="canary_percent" value="20"' in shown
    assert 'name="alias" value="staging"' in shown
    assert '<a href="?alias=staging">Edit policy</a>' in shown
    resubmitted = client.post(
        page, {"alias": "staging", "canary_version": second_version.pk, "canary_percent": 20}
    )
    assert resubmitted.status_code == 302
    policy = ServingPolicy.objects.get()
    assert (policy.canary_version, policy.canary_percent) == (second_version, 20)
    # Another alias has no policy: an empty form.
    other = client.get(f"{page}?alias=production").content.decode()
    assert 'name="canary_percent" value="0"' in other
    assert "selected>" not in _select(other, "canary_version").replace('value="" selected>', "")
    # A data scientist sets policies; only a model owner creates prediction tokens.
    assert "Create prediction token" not in shown
    client.force_login(owner)
    as_owner = client.get(page).content.decode()
    assert "Set serving policy" in as_owner
    assert "Create prediction token" in as_owner
    client.force_login(viewer)
    as_viewer = client.get(page).content.decode()
    assert "Set serving policy" not in as_viewer
    assert "Create prediction token" not in as_viewer
    assert "Edit policy" not in as_viewer
