"""Storage in the cost roll-up (issue 12): what each team's stored artifacts take and cost a
month, through ``GET /api/usage/storage/`` and the usage page, within what the caller may view."""

from __future__ import annotations

import pytest

from governance.actions.datasets import do_create_dataset, do_register_dataset_version
from governance.models import DatasetVersion
from tests.conftest import ADULT, BIKE_HOURLY

GIB = 1024**3


def _register(team, actor, path, name):
    dataset = do_create_dataset(team=team, name=name, actor=actor)
    return do_register_dataset_version(
        dataset=dataset, file_path=path, filename=path.name, source=DatasetVersion.Source.PATH, actor=actor
    )


@pytest.fixture
def stored(team, other_team, scientist, outsider):
    """The bike data in ``team`` (twice: one object), the adult data in ``other_team``."""
    bike = _register(team, scientist, BIKE_HOURLY, "bike")
    _register(team, scientist, BIKE_HOURLY, "bike-again")
    adult = _register(other_team, outsider, ADULT, "adult")
    return bike, adult


def test_each_team_sees_its_own_storage_and_its_monthly_cost(
    stored, client_for, scientist, outsider, settings
):
    bike, adult = stored
    settings.STEWARD_STORAGE_PRICE_PER_GIB_MONTH = {"hot": 0.5, "cold": 0.1}

    mine = client_for(scientist).get("/api/usage/storage/")
    theirs = client_for(outsider).get("/api/usage/storage/")

    assert mine.status_code == 200
    assert mine.json() == [
        {
            "team": "mobility",
            "tier": "hot",
            "objects": 1,  # the same bytes registered twice are stored once
            "bytes": bike.size_bytes,
            "price_per_gib_month": 0.5,
            "monthly_cost": round(bike.size_bytes / GIB * 0.5, 6),
            "currency": "USD",
        }
    ]
    assert [(row["team"], row["bytes"]) for row in theirs.json()] == [("fraud", adult.size_bytes)]


def test_a_platform_wide_reader_sees_every_team_and_can_narrow_to_one(stored, client_for, compliance_officer):
    client = client_for(compliance_officer)

    every = client.get("/api/usage/storage/").json()
    one = client.get("/api/usage/storage/", {"team": "fraud"}).json()

    assert [row["team"] for row in every] == ["fraud", "mobility"]
    assert [row["team"] for row in one] == ["fraud"]
    assert client.get("/api/usage/storage/", {"teams": "fraud"}).status_code == 400


def test_erased_versions_no_longer_count(stored, client_for, scientist, owner):
    bike, _adult = stored

    # Its twin in the same team holds the same bytes: the erasure takes both.
    erased = client_for(owner).post(
        f"/api/dataset-versions/{bike.pk}/erase/", {"reason": "Art. 17"}, format="json"
    )

    assert erased.status_code == 200
    assert DatasetVersion.objects.filter(dataset__team=bike.dataset.team, erased_at__isnull=True).count() == 0
    assert client_for(scientist).get("/api/usage/storage/").json() == []


def test_the_usage_page_shows_the_storage_table(stored, client, scientist):
    client.force_login(scientist)

    page = client.get("/usage/").content.decode()

    assert "<h2>Storage" in page
    assert "<td>mobility</td><td>hot</td>" in page
    assert "fraud" not in page


def test_a_tracked_runs_files_count_in_its_teams_storage(stored, client_for, scientist, team, tmp_path):
    """Files logged to a run (``runners.run_artifacts``) are the team's stored objects too."""
    from runners import run_artifacts
    from runners.tracking import do_create_experiment, do_start_run, run_artifact_location

    bike, _ = stored
    experiment = do_create_experiment(name="sized", actor=scientist)
    run = do_start_run(experiment=experiment, actor=scientist)
    logged = tmp_path / "weights.bin"
    logged.write_bytes(b"w" * 5000)
    prefix = run_artifacts.artifact_prefix(run_artifact_location(run))
    run_artifacts.do_store_file(prefix=prefix, relative="weights.bin", team_id=team.pk, source=logged)

    rows = client_for(scientist).get("/api/usage/storage/").json()

    assert [(row["team"], row["objects"], row["bytes"]) for row in rows] == [
        ("mobility", 2, bike.size_bytes + 5000)
    ]
