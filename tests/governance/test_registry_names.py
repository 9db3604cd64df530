"""The name rule and the text limits of the registry, through the API (issue 9)."""

import pytest

from governance.limits import DESCRIPTION_MAX, TAG_KEY_MAX, TAG_VALUE_MAX
from governance.models import AuditEvent, Dataset, RegisteredModel

SAME_NAME = "(names are compared ignoring case and character width: NFKC case folding)"


def _create_model(client, team, name, **extra):
    return client.post("/api/models/", {"team": team.pk, "name": name, **extra}, format="json")


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("model ", "a model name may not start or end with whitespace: 'model '"),
        (" model", "a model name may not start or end with whitespace: ' model'"),
        (
            "mo\u200bdel",
            "a model name may not contain the invisible character U+200B ZERO WIDTH SPACE (at position 2)",
        ),
        ("mod\u202eel", "a model name may not contain the bidirectional control U+202E (at position 3)"),
        ("mo\x07del", "a model name may not contain the control character U+0007 (at position 2)"),
    ],
)
def test_a_name_breaking_the_rule_is_refused_never_rewritten(client_for, team, scientist, name, message):
    response = _create_model(client_for(scientist), team, name)

    assert (response.status_code, response.json()) == (400, {"name": [message]})
    assert not RegisteredModel.objects.exists()


@pytest.mark.parametrize("lookalike", ["BIKE-demand", "\uff42\uff49\uff4b\uff45-demand", "Bike-Demand"])
def test_a_case_or_width_twin_of_a_name_in_the_team_is_refused_naming_the_rule(
    client_for, team, scientist, registered_model, lookalike
):
    response = _create_model(client_for(scientist), team, lookalike)

    assert response.status_code == 400
    assert response.json() == {"name": [f"team Mobility already has a model named {lookalike!r} {SAME_NAME}"]}
    assert RegisteredModel.objects.count() == 1


def test_the_same_name_in_another_team_is_allowed_and_exists_reveals_no_other_team(
    client_for, team, other_team, scientist, outsider, registered_model
):
    theirs = _create_model(client_for(outsider), other_team, "bike-demand")
    ours_again = _create_model(client_for(scientist), team, "bike-demand")
    theirs_again = _create_model(client_for(outsider), other_team, "Bike-Demand")

    assert theirs.status_code == 201
    assert theirs.json()["name"] == "bike-demand"
    assert "Fraud" not in str(ours_again.json())
    assert "Mobility" not in str(theirs_again.json())
    assert theirs_again.json() == {
        "name": [f"team Fraud already has a model named 'Bike-Demand' {SAME_NAME}"]
    }


def test_a_rename_follows_the_same_rule(client_for, team, scientist, registered_model, owner):
    client = client_for(scientist)
    _create_model(client, team, "taxi-demand", owner="olivia")

    twin = client.patch(f"/api/models/{registered_model.pk}/", {"name": "TAXI-demand"}, format="json")
    spaced = client.patch(f"/api/models/{registered_model.pk}/", {"name": "bikes "}, format="json")
    renamed = client.patch(f"/api/models/{registered_model.pk}/", {"name": "bike-demand-v2"}, format="json")

    assert twin.json() == {"name": [f"team Mobility already has a model named 'TAXI-demand' {SAME_NAME}"]}
    assert spaced.json() == {"name": ["a model name may not start or end with whitespace: 'bikes '"]}
    assert (renamed.status_code, renamed.json()["name"]) == (200, "bike-demand-v2")
    event = AuditEvent.objects.filter(action="registered_model.rename").get()
    assert (event.before["name"], event.after["name"]) == ("bike-demand", "bike-demand-v2")


def test_dataset_names_follow_the_rule_per_team(client_for, team, other_team, scientist, outsider, dataset):
    twin = client_for(scientist).post(
        "/api/datasets/", {"team": team.pk, "name": "BIKE-sharing-hourly"}, format="json"
    )
    spaced = client_for(scientist).post("/api/datasets/", {"team": team.pk, "name": "bikes\t"}, format="json")
    theirs = client_for(outsider).post(
        "/api/datasets/", {"team": other_team.pk, "name": "bike-sharing-hourly"}, format="json"
    )

    assert twin.json() == {
        "name": [f"team Mobility already has a dataset named 'BIKE-sharing-hourly' {SAME_NAME}"]
    }
    assert spaced.json() == {"name": ["a dataset name may not start or end with whitespace: 'bikes\\t'"]}
    assert theirs.status_code == 201
    assert Dataset.objects.count() == 2


def test_description_limit_names_the_field_and_the_limit(client_for, team, scientist, registered_model):
    client = client_for(scientist)
    too_long = "x" * (DESCRIPTION_MAX + 1)

    created = _create_model(client, team, "long", description=too_long)
    updated = client.patch(f"/api/models/{registered_model.pk}/", {"description": too_long}, format="json")
    dataset = client.post(
        "/api/datasets/", {"team": team.pk, "name": "d", "description": too_long}, format="json"
    )
    at_limit = client.patch(
        f"/api/models/{registered_model.pk}/", {"description": "x" * DESCRIPTION_MAX}, format="json"
    )

    message = {
        "description": [f"description has at most 5000 characters, this one has {DESCRIPTION_MAX + 1}"]
    }
    assert (created.status_code, created.json()) == (400, message)
    assert (updated.status_code, updated.json()) == (400, message)
    assert (dataset.status_code, dataset.json()) == (400, message)
    assert at_limit.status_code == 200
    assert len(at_limit.json()["description"]) == DESCRIPTION_MAX


def test_tag_limits_name_the_key_and_the_limit(client_for, scientist, registered_model, team):
    client = client_for(scientist)
    long_key = "k" * (TAG_KEY_MAX + 1)

    key = client.put(f"/api/models/{registered_model.pk}/tags/{long_key}/", {"value": "v"}, format="json")
    value = client.put(
        f"/api/models/{registered_model.pk}/tags/team/", {"value": "v" * (TAG_VALUE_MAX + 1)}, format="json"
    )
    on_create = _create_model(client, team, "tagged", tags={"k": "v" * (TAG_VALUE_MAX + 1)})
    not_a_string = _create_model(client, team, "tagged", tags={"k": 3})
    fine = client.put(
        f"/api/models/{registered_model.pk}/tags/{'k' * TAG_KEY_MAX}/",
        {"value": "v" * TAG_VALUE_MAX},
        format="json",
    )

    assert (key.status_code, key.json()) == (
        400,
        {"tags": [f"tag key {'k' * 40!r}... has {TAG_KEY_MAX + 1} characters; at most 250"]},
    )
    assert value.json() == {"tags": ["the value of tag 'team' has 5001 characters; at most 5000"]}
    assert on_create.json() == {"tags": ["the value of tag 'k' has 5001 characters; at most 5000"]}
    assert not_a_string.json() == {"tags": ["the value of tag 'k' must be a string"]}
    assert fine.status_code == 200
    assert RegisteredModel.objects.filter(name="tagged").count() == 0


def test_an_inference_job_writes_into_its_own_teams_dataset_whatever_other_teams_hold(
    registered_version, dataset_version, scientist, outsider, other_team
):
    from governance.actions.datasets import do_create_dataset
    from runners.actions import do_submit_job
    from runners.execute import execute_job
    from runners.models import JobKind, JobState

    theirs = do_create_dataset(team=other_team, name="December-Forecast", actor=outsider)
    job = do_submit_job(
        kind=JobKind.INFER,
        dataset_version=dataset_version,
        model_version=registered_version,
        spec={"where": {"yr": 1, "mnth": 12}, "output_dataset": "december-forecast"},
        actor=scientist,
    )

    assert execute_job(job.pk) == JobState.SUCCEEDED
    job.refresh_from_db()
    assert job.output_dataset_version.dataset.team_id == job.team_id
    assert not theirs.versions.exists()
