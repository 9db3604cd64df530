"""Two model versions side by side, through the API and the UI (issue 9)."""

from __future__ import annotations

import pytest

from governance.actions.model_versions import do_register_model_version
from governance.actions.registered_models import do_create_registered_model

SIGNATURE = {"task": "regression", "target": "cnt", "features": ["hr", "temp"], "categorical": []}


def _version(model, actor, *, metrics, spec, signature=SIGNATURE, data=None, artifact=b"weights"):
    return do_register_model_version(
        model=model,
        artifact_bytes=artifact,
        metrics=metrics,
        signature=signature,
        training_spec=spec,
        training_dataset_version=data,
        source_job_id=None,
        actor=actor,
    )


@pytest.fixture
def two_versions(registered_model, scientist, dataset_version):
    a = _version(
        registered_model,
        scientist,
        metrics={"rmse": 80.5, "mae": 50.0},
        spec={"epochs": 3, "optimizer": {"lr": 0.01, "name": "adam"}},
        data=dataset_version,
    )
    b = _version(
        registered_model,
        scientist,
        metrics={"rmse": 70.25, "mae": 50.0, "r2": 0.8},
        spec={"epochs": 5, "optimizer": {"lr": 0.01, "name": "adam"}},
        signature={**SIGNATURE, "features": ["hr", "temp", "hum"]},
        artifact=b"other weights",
    )
    return a, b


def test_the_api_compares_metrics_parameters_data_and_signature(
    client_for, viewer, two_versions, dataset_version
):
    a, b = two_versions

    response = client_for(viewer).get("/api/model-versions/compare/", {"a": a.pk, "b": b.pk})

    assert response.status_code == 200
    data = {
        "id": dataset_version.pk,
        "dataset": "bike-sharing-hourly",
        "version": 1,
        "sha256": dataset_version.sha256,
    }
    assert response.json() == {
        "a": {"id": a.pk, "model": a.model_id, "model_name": "bike-demand", "version": 1},
        "b": {"id": b.pk, "model": b.model_id, "model_name": "bike-demand", "version": 2},
        "metrics": [
            {"key": "mae", "a": 50.0, "b": 50.0, "differs": False},
            {"key": "r2", "a": None, "b": 0.8, "differs": True},
            {"key": "rmse", "a": 80.5, "b": 70.25, "differs": True},
        ],
        "parameters": [
            {"key": "epochs", "a": 3, "b": 5, "differs": True},
            {"key": "optimizer.lr", "a": 0.01, "b": 0.01, "differs": False},
            {"key": "optimizer.name", "a": "adam", "b": "adam", "differs": False},
        ],
        "training_data": [
            {"key": key, "a": data[key], "b": None, "differs": True}
            for key in ("dataset", "id", "sha256", "version")
        ],
        "signature": [
            {"key": "categorical", "a": [], "b": [], "differs": False},
            {"key": "features", "a": ["hr", "temp"], "b": ["hr", "temp", "hum"], "differs": True},
            {"key": "target", "a": "cnt", "b": "cnt", "differs": False},
            {"key": "task", "a": "regression", "b": "regression", "differs": False},
        ],
        "differs": True,
    }


def test_a_version_compared_with_itself_differs_nowhere(client_for, viewer, two_versions):
    a, _ = two_versions

    body = client_for(viewer).get("/api/model-versions/compare/", {"a": a.pk, "b": a.pk}).json()

    assert body["differs"] is False
    assert [
        row["differs"] for section in ("metrics", "parameters", "signature") for row in body[section]
    ] == [False] * 9


def test_another_teams_version_is_a_404_and_names_nothing(
    client_for, admin, outsider, other_team, two_versions
):
    theirs_model = do_create_registered_model(team=other_team, name="fraud", owner=outsider, actor=admin)
    theirs = _version(theirs_model, outsider, metrics={"auc": 0.9}, spec={})
    a, _ = two_versions

    for first, second in ((a.pk, theirs.pk), (theirs.pk, a.pk)):
        response = client_for(outsider).get("/api/model-versions/compare/", {"a": first, "b": second})
        assert (response.status_code, response.json()) == (
            404,
            {"detail": "No ModelVersion matches the given query."},
        )


@pytest.mark.parametrize(
    ("params", "errors"),
    [
        ({"a": "1"}, {"b": ["This field is required."]}),
        ({"a": "x", "b": "1"}, {"a": ["A valid integer is required."]}),
        ({"a": "0", "b": "1"}, {"a": ["Ensure this value is greater than or equal to 1."]}),
    ],
)
def test_bad_ids_are_a_400_naming_the_field(client_for, viewer, params, errors):
    response = client_for(viewer).get("/api/model-versions/compare/", params)

    assert (response.status_code, response.json()) == (400, errors)


def test_an_unknown_parameter_is_a_400(client_for, viewer, two_versions):
    a, b = two_versions

    response = client_for(viewer).get("/api/model-versions/compare/", {"a": a.pk, "b": b.pk, "c": "1"})

    assert (response.status_code, response.json()) == (
        400,
        {"detail": "unknown query parameter(s): c; known: a, b"},
    )


# The UI ----------------------------------------------------------------------------------------


def test_the_version_page_offers_the_models_other_versions(client, viewer, two_versions):
    a, b = two_versions
    client.force_login(viewer)

    page = client.get(a.get_absolute_url()).content.decode()

    assert 'action="/model-versions/compare/"' in page
    assert f'<input type="hidden" name="a" value="{a.pk}">' in page
    assert f'<option value="{b.pk}">v2</option>' in page
    assert f'<option value="{a.pk}">' not in page


def test_the_compare_page_shows_both_sides_and_marks_what_differs(client, viewer, two_versions):
    a, b = two_versions
    client.force_login(viewer)

    response = client.get("/model-versions/compare/", {"a": a.pk, "b": b.pk})

    assert response.status_code == 200
    sections = dict(response.context["sections"])
    assert [row["key"] for row in sections["Metrics"] if row["differs"]] == ["r2", "rmse"]
    assert [row["key"] for row in sections["Parameters (training spec)"] if row["differs"]] == ["epochs"]
    page = response.content.decode()
    assert page.count('<tr class="differs">') == 8  # r2, rmse, epochs, 4 training data rows, features
    assert "bike-demand v1</a> vs <a" in page


def test_the_compare_page_is_a_404_for_an_outsider_and_a_400_without_ids(client, outsider, two_versions):
    a, b = two_versions
    client.force_login(outsider)

    assert client.get("/model-versions/compare/", {"a": a.pk, "b": b.pk}).status_code == 404
    missing = client.get("/model-versions/compare/", {"a": a.pk})
    assert missing.status_code == 400
    assert "missing or not an id: b" in missing.content.decode()


# Schema changes on the dataset pages ------------------------------------------------------------


def test_dataset_pages_flag_a_version_whose_schema_changed(
    client, viewer, dataset, dataset_version, scientist, tmp_path
):
    import pandas as pd

    from governance.actions.datasets import do_register_dataset_version
    from governance.models import DatasetVersion

    # The next file renames hum and makes cnt fractional: the action records the change.
    frame = pd.read_csv(dataset_version.path).rename(columns={"hum": "humidity_pct"})
    frame["cnt"] = frame["cnt"] / 2
    changed = tmp_path / "hour.csv"
    frame.to_csv(changed, index=False)
    second = do_register_dataset_version(
        dataset=dataset,
        file_path=changed,
        filename="hour.csv",
        source=DatasetVersion.Source.UPLOAD,
        actor=scientist,
    )
    assert second.schema_change == {
        "added": ["humidity_pct"],
        "removed": ["hum"],
        "retyped": [{"name": "cnt", "from": "int64", "to": "float64"}],
    }
    client.force_login(viewer)

    version_page = client.get(second.get_absolute_url()).content.decode()
    dataset_page = client.get(dataset.get_absolute_url()).content.decode()
    first_page = client.get(dataset_version.get_absolute_url()).content.decode()

    for page in (version_page, dataset_page):
        assert '<span class="badge badge-warning">schema changed</span>' in page
        assert "+<code>humidity_pct</code>" in page
        assert "\u2212<code>hum</code>" in page  # a minus sign
        assert "~<code>cnt</code> (int64 → float64)" in page
    assert "schema changed" not in first_page
