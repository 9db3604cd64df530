"""A team's GDPR Art. 30 record of processing (issue 12), through the API: per dataset, what its
PII scans found, its purposes, recipients, retention and the versions it holds; only for whoever
may view the team."""

from __future__ import annotations

import json

from governance.actions.datasets import do_update_dataset
from governance.actions.pii import do_set_pii_policy, run_pii_scan
from governance.models import PiiScan


def test_the_record_lists_each_dataset_with_its_personal_data_purposes_and_recipients(
    team, owner, scientist, adult_version, registered_version, client_for
):
    assert run_pii_scan(PiiScan.objects.get(dataset_version=adult_version).pk) == "done"
    do_update_dataset(
        dataset=adult_version.dataset, description="census income, to price credit", actor=owner
    )
    do_set_pii_policy(team=team, rules={"race_ethnicity": "block"}, actor=owner)
    answer = client_for(owner).patch(
        f"/api/model-versions/{registered_version.pk}/",
        {"intended_purpose": "forecast hourly bike demand for fleet planning"},
        format="json",
    )
    assert answer.status_code == 200, answer.content

    response = client_for(scientist).get(f"/api/teams/{team.pk}/records-of-processing/")

    assert response.status_code == 200, response.content
    assert response["Content-Disposition"] == f'attachment; filename="art30-{team.name.lower()}.json"'
    record = json.loads(response.content)
    assert (record["schema"], record["controller"], record["pii_policy"]) == (
        "steward-art30-record/1",
        {"team": team.name},
        {"race_ethnicity": "block"},
    )
    adult, bike = record["activities"]
    assert (adult["dataset"], bike["dataset"]) == (
        "adult",
        registered_version.training_dataset_version.dataset.name,
    )
    # The adult census data: its special categories and quasi-identifiers, found by the scan.
    assert adult["personal_data"]["special_categories"] == {"race": "race_ethnicity", "sex": "sex_gender"}
    assert {"age", "native-country", "occupation"} <= set(adult["personal_data"]["quasi_identifiers"])
    assert adult["personal_data"]["versions_without_a_done_scan"] == []
    assert adult["purposes"] == [{"source": "dataset description", "text": "census income, to price credit"}]
    assert adult["versions"] == [
        {
            "version": 1,
            "sha256": adult_version.sha256,
            "rows": adult_version.row_count,
            "registered_at": adult["versions"][0]["registered_at"],
        }
    ]
    # The bike data: its version's scan never ran here, and the record says so; the model
    # trained on it is a recipient and its intended purpose a purpose.
    assert bike["personal_data"] == {
        "kinds": {},
        "special_categories": {},
        "quasi_identifiers": [],
        "versions_without_a_done_scan": [{"version": 1, "scan": "queued"}],
    }
    assert bike["purposes"] == [
        {
            "source": f"intended purpose of {registered_version}",
            "text": "forecast hourly bike demand for fleet planning",
        }
    ]
    assert bike["recipients"]["models_trained_on_it"] == [
        {"model": registered_version.model.name, "version": 1, "status": str(registered_version.status)}
    ]
    members = {member["user"]: member["role"] for member in adult["recipients"]["team_members"]}
    assert (members[owner.username], members[scientist.username]) == ("model_owner", "data_scientist")
    assert adult["retention"].startswith("no retention period set")


def test_another_teams_record_is_not_found(team, outsider, client_for):
    response = client_for(outsider).get(f"/api/teams/{team.pk}/records-of-processing/")

    assert response.status_code == 404
