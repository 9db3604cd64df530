"""Cursor pages on every API list (issue 9): stable under concurrent inserts, ``page_size`` 1 to
1,000 (else a 400 naming the limit), ``next``/``previous`` links, unknown query parameters a 400."""

from __future__ import annotations

import pytest

from governance.actions.datasets import do_create_dataset
from governance.actions.registered_models import do_create_registered_model
from governance.actions.teams import do_create_team, do_set_membership
from governance.models import RegisteredModel, TeamRole

PAGE_SIZE_ERROR = {"page_size": ["Enter a whole number from 1 to 1000 (the most rows a page holds)."]}

# Every list of the router, as a platform admin sees it.
LISTS = [
    "/api/teams/",
    "/api/users/",
    "/api/memberships/",
    "/api/platform-roles/",
    "/api/tokens/",
    "/api/datasets/",
    "/api/dataset-versions/",
    "/api/models/",
    "/api/model-versions/",
    "/api/promotion-requests/",
    "/api/audit-events/",
    "/api/audit/checkpoints/",
    "/api/jobs/",
    "/api/job-schedules/",
    "/api/drift-checks/",
    "/api/alerts/",
    "/api/monitors/",
    "/api/notifications/",
    "/api/channels/",
    "/api/escalation-policies/",
]


def _ids(page: dict) -> list[int]:
    return [row["id"] for row in page["results"]]


def test_paging_while_another_client_inserts_shows_every_row_once(
    client_for, admin, scientist, outsider, team, other_team
):
    # Each name in two teams: ties on the name, broken by the id; 7 rows a page cut through ties.
    for number in range(0, 40, 2):
        do_create_registered_model(team=team, name=f"m{number:02}", owner=scientist, actor=admin)
        do_create_registered_model(team=other_team, name=f"m{number:02}", owner=outsider, actor=admin)
    third = do_create_team(name="Pricing", actor=admin)
    do_set_membership(user=scientist, team=third, role=TeamRole.DATA_SCIENTIST, actor=admin)
    at_start = list(RegisteredModel.objects.order_by("name", "id").values_list("id", flat=True))
    reader = client_for(admin)

    seen, page, turn = [], reader.get("/api/models/", {"page_size": 7}).json(), 0
    while page["next"] is not None:
        seen += _ids(page)
        last = page["results"][-1]["name"]
        # Another client inserts before the cursor, right after it, far after it, and into the
        # tie at the cursor (the case that shows a row twice with an offset-based cursor).
        for where, name in [(team, f"a{turn}"), (team, f"{last}-{turn}"), (team, f"z{turn}"), (third, last)]:
            if not RegisteredModel.objects.filter(team=where, name=name).exists():
                do_create_registered_model(team=where, name=name, owner=scientist, actor=admin)
        turn += 1
        page = reader.get(page["next"]).json()
    seen += _ids(page)

    assert (len(at_start), turn) == (40, 9)  # 9 pages turned, inserting 4 rows each time
    assert len(seen) == len(set(seen))  # no duplicates
    assert [pk for pk in seen if pk in set(at_start)] == at_start  # every row there at the start, in order


def test_previous_goes_back_to_the_same_rows(client_for, admin, team):
    for number in range(12):
        do_create_dataset(team=team, name=f"d{number:02}", actor=admin)
    client = client_for(admin)

    first = client.get("/api/datasets/", {"page_size": 5}).json()
    second = client.get(first["next"]).json()
    third = client.get(second["next"]).json()
    back = client.get(third["previous"]).json()

    assert [row["name"] for row in first["results"] + second["results"] + third["results"]] == [
        f"d{number:02}" for number in range(12)
    ]
    assert (third["next"], first["previous"]) == (None, None)
    assert _ids(back) == _ids(second)
    assert _ids(client.get(back["previous"]).json()) == _ids(first)


def test_page_size_up_to_a_thousand(client_for, admin, team):
    for number in range(3):
        do_create_dataset(team=team, name=f"d{number}", actor=admin)
    client = client_for(admin)

    assert len(client.get("/api/datasets/", {"page_size": 1000}).json()["results"]) == 3
    one = client.get("/api/datasets/", {"page_size": 1}).json()
    assert ([row["name"] for row in one["results"]], one["next"] is not None) == (["d0"], True)
    assert len(client.get("/api/datasets/").json()["results"]) == 3  # default 50


@pytest.mark.parametrize(
    "page_size", ["0", "-1", "1001", "1.5", "abc", "", "99999999999999999999", "\u0661\u0660"]
)
def test_a_page_size_outside_one_to_a_thousand_is_a_400_naming_the_limit(client_for, viewer, page_size):
    response = client_for(viewer).get("/api/models/", {"page_size": page_size})

    assert (response.status_code, response.json()) == (400, PAGE_SIZE_ERROR)


@pytest.mark.parametrize("cursor", ["garbage", "cD1hYmM=", "eyJwIjoiW1wiYVwiXSIsInIiOjB9:forged"])
def test_a_forged_cursor_is_invalid(client_for, viewer, cursor):
    response = client_for(viewer).get("/api/models/", {"cursor": cursor})

    assert (response.status_code, response.json()) == (400, {"cursor": ["Invalid cursor"]})


def test_a_cursor_of_another_list_is_invalid(client_for, admin, team):
    for number in range(3):
        do_create_dataset(team=team, name=f"d{number}", actor=admin)
    client = client_for(admin)
    cursor = client.get("/api/datasets/", {"page_size": 1}).json()["next"].split("cursor=")[1]

    response = client.get("/api/audit-events/", {"cursor": cursor})

    assert (response.status_code, response.json()) == (400, {"cursor": ["Invalid cursor"]})


@pytest.mark.parametrize("url", LISTS)
def test_every_list_pages_by_cursor(client_for, admin, registered_version, url):
    response = client_for(admin).get(url, {"page_size": 1})

    assert response.status_code == 200
    assert set(response.json()) == {"next", "previous", "results"}
    assert len(response.json()["results"]) <= 1


@pytest.mark.parametrize("url", LISTS)
def test_every_list_refuses_an_unknown_query_parameter(client_for, admin, url):
    response = client_for(admin).get(url, {"bogus": "1", "page_size": "2"})

    assert response.status_code == 400
    assert response.json()["detail"].startswith("unknown query parameter(s): bogus; known: ")
    assert "cursor, " in response.json()["detail"]


def test_the_unknown_parameter_message_names_what_the_list_knows(client_for, viewer):
    response = client_for(viewer).get("/api/dataset-versions/", {"name": "x", "team": "1"})

    assert (response.status_code, response.json()) == (
        400,
        {
            "detail": "unknown query parameter(s): name, team; "
            "known: cursor, dataset, format, page_size, source"
        },
    )


def test_a_list_with_only_known_parameters_is_not_refused(client_for, viewer, registered_model):
    response = client_for(viewer).get("/api/models/", {"name": "bike-demand", "page_size": "10", "q": "bike"})

    assert [row["name"] for row in response.json()["results"]] == ["bike-demand"]
