"""Personas and registry fixtures shared by every test (Healthchecks' hc/test.py idea).

Data comes from ``../shared/data`` (the real bike-sharing and adult files) or the project's own
copy under ``demo_data/`` when the shared folder is absent.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from governance import actions
from governance.models import DatasetVersion, PlatformRole, TeamRole

SHARED_DATA = Path(settings.BASE_DIR).parent / "shared" / "data"
BIKE_HOURLY = (
    SHARED_DATA / "bike-sharing" / "hour.csv"
    if (SHARED_DATA / "bike-sharing" / "hour.csv").exists()
    else Path(settings.BASE_DIR) / "demo_data" / "bike-sharing" / "hour.csv"
)
ADULT = SHARED_DATA / "adult" / "adult.csv"
BIKE_FEATURES = [
    "season",
    "mnth",
    "hr",
    "holiday",
    "weekday",
    "workingday",
    "weathersit",
    "temp",
    "atemp",
    "hum",
    "windspeed",
]
PASSWORD = "correct-horse-battery-staple"


@pytest.fixture(autouse=True)
def _isolated_storage(settings, tmp_path):
    """Each test writes artifacts and mail under its own temporary folder."""
    settings.ARTIFACT_ROOT = tmp_path / "artifacts"
    settings.EMAIL_FILE_PATH = str(tmp_path / "mail")
    settings.STEWARD_IMPORT_ROOTS = [SHARED_DATA.resolve(), (Path(settings.BASE_DIR) / "demo_data").resolve()]


def _user(username: str):
    return get_user_model().objects.create_user(username, f"{username}@example.com", PASSWORD)


@pytest.fixture
def admin(db):
    user = _user("admin")
    user.is_superuser = user.is_staff = True
    user.save()
    return user


@pytest.fixture
def team(admin):
    return actions.do_create_team(name="Mobility", actor=admin)


@pytest.fixture
def other_team(admin):
    return actions.do_create_team(name="Fraud", actor=admin)


def _member(admin, team, username: str, role: str):
    user = _user(username)
    actions.do_set_membership(user=user, team=team, role=role, actor=admin)
    return user


@pytest.fixture
def owner(admin, team):
    """Model owner in ``team``."""
    return _member(admin, team, "olivia", TeamRole.MODEL_OWNER)


@pytest.fixture
def scientist(admin, team):
    """Data scientist in ``team``."""
    return _member(admin, team, "dana", TeamRole.DATA_SCIENTIST)


@pytest.fixture
def approver(admin, team):
    return _member(admin, team, "aaron", TeamRole.APPROVER)


@pytest.fixture
def viewer(admin, team):
    return _member(admin, team, "vera", TeamRole.VIEWER)


@pytest.fixture
def outsider(admin, other_team):
    """Data scientist in another team: must never see ``team``'s objects."""
    return _member(admin, other_team, "oscar", TeamRole.DATA_SCIENTIST)


@pytest.fixture
def compliance_officer(admin):
    user = _user("carl")
    actions.do_grant_platform_role(user=user, role=PlatformRole.COMPLIANCE_OFFICER, actor=admin)
    return user


@pytest.fixture
def api():
    """A DRF client; call ``api.force_authenticate(user)`` or use ``client_for``."""
    return APIClient()


@pytest.fixture
def client_for():
    def make(user) -> APIClient:
        client = APIClient()
        client.force_authenticate(user)
        return client

    return make


@pytest.fixture
def dataset(team, scientist):
    return actions.do_create_dataset(team=team, name="bike-sharing-hourly", actor=scientist)


@pytest.fixture
def dataset_version(dataset, scientist) -> DatasetVersion:
    """The real bike-sharing hourly file (17,379 rows, 17 columns) as version 1."""
    return actions.do_register_dataset_version(
        dataset=dataset,
        file_path=BIKE_HOURLY,
        filename="hour.csv",
        source=DatasetVersion.Source.PATH,
        actor=scientist,
    )


@pytest.fixture
def registered_model(team, owner, scientist):
    return actions.do_create_registered_model(team=team, name="bike-demand", owner=owner, actor=scientist)


@pytest.fixture
def training_spec() -> dict:
    """A small, fast spec: 2011 rows, 3 epochs."""
    return {
        "target": "cnt",
        "features": BIKE_FEATURES,
        "categorical": ["season", "weathersit"],
        "epochs": 3,
        "batch_size": 256,
        "seed": 1,
        "where": {"yr": 0},
    }


@pytest.fixture
def model_version(dataset_version, registered_model, scientist, training_spec):
    """A model version trained by running the training job's plain function (no broker)."""
    from runners.actions import do_submit_job
    from runners.execute import execute_job

    job = do_submit_job(
        kind="train",
        dataset_version=dataset_version,
        registered_model=registered_model,
        spec=training_spec,
        actor=scientist,
    )
    assert execute_job(job.pk) == "succeeded"
    job.refresh_from_db()
    return job.output_model_version
