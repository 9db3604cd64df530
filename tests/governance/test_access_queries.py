"""The new list endpoints cost a constant number of queries, whatever the number of rows."""

from __future__ import annotations

from django.contrib.auth import get_user_model

from governance.actions.promotions import do_request_promotion
from governance.actions.teams import do_grant_platform_role, do_set_membership
from governance.actions.tokens import do_create_api_token
from governance.models import TeamRole
from tests.conftest import PASSWORD


def _more_members(admin, team, count: int) -> None:
    for n in range(count):
        user = get_user_model().objects.create_user(f"member{n}", f"m{n}@example.com", PASSWORD)
        do_set_membership(user=user, team=team, role=TeamRole.VIEWER, actor=admin)


def test_users_list_in_constant_queries(
    client_for, fresh, admin, team, viewer, compliance_officer, django_assert_num_queries
):
    _more_members(admin, team, 5)
    client = client_for(fresh(viewer))

    # 1 platform and team roles (one UNION), 2 the page (no COUNT), 3 its memberships (team
    # joined), 4 its platform role grants
    with django_assert_num_queries(4):
        response = client.get("/api/users/")

    assert [row["username"] for row in response.json()["results"]] == [
        "member0",
        "member1",
        "member2",
        "member3",
        "member4",
        "vera",
    ]


def test_platform_roles_list_in_constant_queries(
    client_for, fresh, admin, owner, compliance_officer, django_assert_num_queries
):
    do_grant_platform_role(user=owner, role="compliance_officer", actor=admin)
    client = client_for(fresh(compliance_officer))

    # 1 platform roles, 2 the page (users joined)
    with django_assert_num_queries(2):
        response = client.get("/api/platform-roles/")

    assert [row["username"] for row in response.json()["results"]] == ["carl", "olivia"]


def test_tokens_list_in_constant_queries(client_for, fresh, scientist, django_assert_num_queries):
    for name in ("a", "b", "c"):
        do_create_api_token(user=scientist, name=name, actor=scientist)
    client = client_for(fresh(scientist))

    # 1 the page
    with django_assert_num_queries(1):
        response = client.get("/api/tokens/")

    assert [row["name"] for row in response.json()["results"]] == ["c", "b", "a"]


def test_promotion_requests_list_in_constant_queries(
    client_for, fresh, scientist, approver, registered_version, django_assert_num_queries
):
    do_request_promotion(model_version=registered_version, alias="production", actor=scientist)
    do_request_promotion(model_version=registered_version, alias="staging", actor=scientist)
    client = client_for(fresh(approver))

    # 1 platform and team roles (one UNION), 2 the page (version, model, people joined)
    with django_assert_num_queries(2):
        response = client.get("/api/promotion-requests/")

    assert [row["alias"] for row in response.json()["results"]] == ["staging", "production"]
