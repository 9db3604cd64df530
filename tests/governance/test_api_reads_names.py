"""Get by name, search by name prefix and constant queries per page on the registry lists (issue 9)."""

from __future__ import annotations

import unicodedata

from governance.actions.datasets import do_create_dataset
from governance.actions.registered_models import do_create_registered_model
from governance.models import DatasetVersion, RegisteredModel


def _names(response) -> list[tuple[str, int]]:
    return [(row["name"], row["team"]) for row in response.json()["results"]]


def test_get_a_model_by_its_exact_name_one_row_per_team(
    client_for, admin, scientist, outsider, team, other_team
):
    for where, owner in ((team, scientist), (other_team, outsider)):
        for name in ("churn", "churn-v2", "Churn2"):
            do_create_registered_model(team=where, name=name, owner=owner, actor=admin)

    assert _names(client_for(admin).get("/api/models/", {"name": "churn"})) == [
        ("churn", team.pk),
        ("churn", other_team.pk),
    ]
    assert _names(client_for(admin).get("/api/models/", {"name": "churn", "team": other_team.pk})) == [
        ("churn", other_team.pk)
    ]
    # Another team's model of that name is not there for a member of one team.
    assert _names(client_for(scientist).get("/api/models/", {"name": "churn"})) == [("churn", team.pk)]
    assert _names(client_for(scientist).get("/api/models/", {"name": "chur"})) == []


def test_a_name_is_found_whichever_unicode_form_it_is_typed_in(client_for, scientist, team):
    do_create_dataset(team=team, name="café-orders", actor=scientist)
    decomposed = unicodedata.normalize("NFD", "café-orders")

    response = client_for(scientist).get("/api/datasets/", {"name": decomposed})

    assert decomposed != "café-orders"
    assert [row["name"] for row in response.json()["results"]] == ["café-orders"]


def test_search_by_name_prefix_returns_a_page_of_a_hundred(client_for, scientist, owner, team):
    for number in range(105):
        do_create_registered_model(team=team, name=f"fraud-{number:03}", owner=owner, actor=scientist)
    do_create_registered_model(team=team, name="churn", owner=owner, actor=scientist)
    client = client_for(scientist)

    first = client.get("/api/models/", {"prefix": "fraud-", "page_size": 100}).json()
    rest = client.get(first["next"]).json()

    assert [row["name"] for row in first["results"]] == [f"fraud-{number:03}" for number in range(100)]
    assert [row["name"] for row in rest["results"]] == [f"fraud-{number:03}" for number in range(100, 105)]
    assert rest["next"] is None


def test_registry_lists_cost_the_same_queries_for_one_row_or_a_thousand(
    client_for, fresh, scientist, owner, team, registered_version, django_assert_max_num_queries
):
    for number in range(30):
        do_create_registered_model(team=team, name=f"m{number:02}", owner=owner, actor=scientist)
        do_create_dataset(team=team, name=f"d{number:02}", actor=scientist)
    client = client_for(fresh(scientist))

    for url in ("/api/models/", "/api/datasets/", "/api/model-versions/", "/api/dataset-versions/"):
        # 1 platform and team roles (one UNION), 2 the page, 3 its aliases (models and versions)
        with django_assert_max_num_queries(4):
            one = client.get(url, {"page_size": 1})
        with django_assert_max_num_queries(4):
            many = client.get(url, {"page_size": 1000})
        assert (one.status_code, many.status_code) == (200, 200)
        assert len(one.json()["results"]) == 1
    assert (
        len(client.get("/api/models/", {"page_size": 1000}).json()["results"])
        == RegisteredModel.objects.count()
    )


def test_dataset_versions_expose_their_schema_change(client_for, viewer, dataset_version):
    change = {
        "added": ["humidity_pct"],
        "removed": ["hum"],
        "retyped": [{"name": "cnt", "from": "int64", "to": "float64"}],
    }
    # Written by the registering action once it compares schemas (H1); set here to test the read.
    DatasetVersion.objects.filter(pk=dataset_version.pk).update(schema_change=change)

    listed = client_for(viewer).get("/api/dataset-versions/").json()["results"]
    detail = client_for(viewer).get(f"/api/dataset-versions/{dataset_version.pk}/").json()

    assert [row["schema_change"] for row in listed] == [change]
    assert detail["schema_change"] == change
