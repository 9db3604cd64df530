"""Personas and registry fixtures shared by every test (Healthchecks' hc/test.py idea).

Data comes from ``../shared/data`` (the real bike-sharing and adult files) or the project's own
copy under ``demo_data/`` when the shared folder is absent.
"""

from __future__ import annotations

import email
import email.policy
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pandas as pd
import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from config.demo import FEATURES as DEMO_FEATURES
from governance.actions.datasets import do_create_dataset, do_register_dataset_version
from governance.actions.model_versions import do_register_model_version
from governance.actions.registered_models import do_create_registered_model
from governance.actions.teams import do_create_team, do_grant_platform_role, do_set_membership
from governance.models import DatasetVersion, PlatformRole, TeamRole
from governance.storage.envelope import Keyring
from lineage.graph import reset_edge_index
from monitoring.actions.checks import do_finish_drift_check, do_request_drift_check
from runners.specs import parse_spec

SHARED_DATA = Path(settings.BASE_DIR).parent / "shared" / "data"


def _real_data(relative: str) -> Path:
    """The shared copy of a data file, else the project's own copy under ``demo_data/``."""
    shared = SHARED_DATA / relative
    return shared if shared.exists() else Path(settings.BASE_DIR) / "demo_data" / relative


BIKE_HOURLY = _real_data("bike-sharing/hour.csv")
ADULT = _real_data("adult/adult.csv")
# The demo's features of the hourly bike data: the tests train and check what the demo does.
BIKE_FEATURES = DEMO_FEATURES
DRIFT_COLUMNS = [*BIKE_FEATURES, "cnt"]
PASSWORD = "correct-horse-battery-staple"


@pytest.fixture(autouse=True)
def _isolated_storage(settings, tmp_path):
    """Each test writes artifacts and mail under its own temporary folder."""
    settings.ARTIFACT_ROOT = tmp_path / "artifacts"
    settings.STEWARD_ARTIFACT_CACHE = tmp_path / "artifact-cache"
    settings.STEWARD_ARTIFACT_COLD_URL = f"file://{tmp_path / 'artifacts-cold'}"
    settings.EMAIL_FILE_PATH = str(tmp_path / "mail")
    settings.STEWARD_IMPORT_ROOTS = [SHARED_DATA.resolve(), (Path(settings.BASE_DIR) / "demo_data").resolve()]


@pytest.fixture(scope="session")
def audit_signing_key_file(tmp_path_factory) -> Path:
    """Where the tests' audit checkpoint key lives: generated on first use, once a session."""
    return tmp_path_factory.mktemp("audit-key") / "audit_signing_key.pem"


@pytest.fixture(autouse=True)
def _audit_signing_key(settings, audit_signing_key_file):
    """Checkpoints are signed with the session's key, never one under ``var/``."""
    settings.STEWARD_AUDIT_SIGNING_KEY = ""
    settings.STEWARD_AUDIT_SIGNING_KEY_FILE = str(audit_signing_key_file)


@pytest.fixture(autouse=True, scope="session")
def _audit_maintenance_during_flush():
    """TEST ONLY: let pytest-django's flush empty the append-only audit tables on PostgreSQL.

    After each transactional test pytest-django TRUNCATEs every table, which the audit tables'
    trigger refuses (migration 0003). Around that flush alone, and only inside its transaction
    (``set_config(..., true)`` is SET LOCAL), ``steward.audit_maintenance`` is turned on.
    Application code never sets it.
    """
    from django.db import transaction
    from django.db.backends.base.operations import BaseDatabaseOperations

    original = BaseDatabaseOperations.execute_sql_flush

    def execute_sql_flush(self, sql_list):
        if self.connection.vendor != "postgresql":
            return original(self, sql_list)
        with transaction.atomic(using=self.connection.alias):
            with self.connection.cursor() as cursor:
                cursor.execute("SELECT set_config('steward.audit_maintenance', 'on', true)")
            return original(self, sql_list)

    BaseDatabaseOperations.execute_sql_flush = execute_sql_flush
    yield
    BaseDatabaseOperations.execute_sql_flush = original


@pytest.fixture(autouse=True)
def _fresh_edge_index():
    """TEST ONLY: forget the in-memory lineage edges after each test. A test's rows are rolled
    back, which committed data never is, and SQLite then hands the same ids out again, so an
    index kept across tests would hold edges that no longer exist under ids it will not re-read
    (``lineage.graph``)."""
    yield
    reset_edge_index()


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    """PBKDF2's million rounds cost 0.2 s per persona; tests need a hash, not its strength."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


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
    return do_create_team(name="Mobility", actor=admin)


@pytest.fixture
def other_team(admin):
    return do_create_team(name="Fraud", actor=admin)


def _member(admin, team, username: str, role: str):
    user = _user(username)
    do_set_membership(user=user, team=team, role=role, actor=admin)
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
    do_grant_platform_role(user=user, role=PlatformRole.COMPLIANCE_OFFICER, actor=admin)
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
    return do_create_dataset(team=team, name="bike-sharing-hourly", actor=scientist)


@pytest.fixture
def dataset_version(dataset, scientist) -> DatasetVersion:
    """The real bike-sharing hourly file (17,379 rows, 17 columns) as version 1."""
    return do_register_dataset_version(
        dataset=dataset,
        file_path=BIKE_HOURLY,
        filename="hour.csv",
        source=DatasetVersion.Source.PATH,
        actor=scientist,
    )


@pytest.fixture
def registered_model(team, owner, scientist):
    return do_create_registered_model(team=team, name="bike-demand", owner=owner, actor=scientist)


def small_training_spec() -> dict:
    """The raw spec of ``training_spec``, for tests that parse it themselves."""
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
def training_spec() -> dict:
    """A small, fast spec: 2011 rows, 3 epochs."""
    return small_training_spec()


@pytest.fixture
def model_version(dataset_version, registered_model, scientist, training_spec):
    """A model version trained by running the training job's plain function (no broker)."""
    job = run_job(
        kind="train",
        dataset_version=dataset_version,
        registered_model=registered_model,
        spec=training_spec,
        actor=scientist,
    )
    return job.output_model_version


def run_job(**submit):
    """Submit a job through ``do_submit_job(**submit)`` and run the worker's plain function on it
    (no broker); it must succeed. Returns the job re-read. Imports torch on first use."""
    from runners.actions import do_submit_job
    from runners.execute import execute_job

    job = do_submit_job(**submit)
    assert execute_job(job.pk) == "succeeded"
    job.refresh_from_db()
    return job


def submit_training(dataset_version, registered_model, actor, spec):
    """A training job submitted through ``do_submit_job`` (not run)."""
    from runners.actions import do_submit_job

    return do_submit_job(
        kind="train",
        dataset_version=dataset_version,
        registered_model=registered_model,
        spec=spec,
        actor=actor,
    )


# Expensive, database-free results computed once per session; tests register them through the
# actions (cheap) so each test still starts from an empty database.


@pytest.fixture(scope="session")
def bike_frame() -> pd.DataFrame:
    return pd.read_csv(BIKE_HOURLY)


@pytest.fixture(scope="session")
def bike_2012_csv(bike_frame, tmp_path_factory) -> Path:
    """The 8,734 rows of 2012 as their own CSV file (the "current" data of the demo)."""
    path = tmp_path_factory.mktemp("bike") / "hour-2012.csv"
    bike_frame[bike_frame["yr"] == 1].to_csv(path, index=False)
    return path


@pytest.fixture(scope="session")
def bike_training_result(bike_frame):
    """``runners.training.train`` on the 2011 rows with the small spec (plain function, no DB)."""
    from runners import training  # torch: imported by the tests that train, not by every run

    spec = parse_spec(small_training_spec(), list(bike_frame.columns))
    return training.train(bike_frame[bike_frame["yr"] == 0], spec)


@pytest.fixture(scope="session")
def bike_drift_result(bike_frame):
    """``monitoring.drift.compare`` of the 2012 rows against the 2011 rows over features + cnt."""
    from monitoring import drift  # evidently: imported by the tests that compare, not by every run

    return drift.compare(bike_frame[bike_frame["yr"] == 0], bike_frame[bike_frame["yr"] == 1], DRIFT_COLUMNS)


@pytest.fixture
def registered_version(dataset_version, registered_model, scientist, bike_training_result):
    """A model version registered through the action from the session's trained artifact (no job)."""
    spec = parse_spec(small_training_spec(), dataset_version.column_names)
    return do_register_model_version(
        model=registered_model,
        artifact_bytes=bike_training_result.artifact,
        metrics=bike_training_result.metrics,
        signature=bike_training_result.signature,
        training_spec=spec.as_dict(),
        training_dataset_version=dataset_version,
        source_job_id=None,
        actor=None,
        on_behalf_of=scientist,
    )


@pytest.fixture
def current_dataset_version(team, scientist, bike_2012_csv) -> DatasetVersion:
    """The 2012 rows registered as version 1 of dataset ``bike-sharing-2012``."""
    dataset = do_create_dataset(team=team, name="bike-sharing-2012", actor=scientist)
    return do_register_dataset_version(
        dataset=dataset,
        file_path=bike_2012_csv,
        filename="hour-2012.csv",
        source=DatasetVersion.Source.PATH,
        actor=scientist,
    )


@pytest.fixture
def adult_version(team, scientist) -> DatasetVersion:
    """The adult census data (``ADULT``) registered as the first version of dataset "adult"."""
    dataset = do_create_dataset(team=team, name="adult", actor=scientist)
    return do_register_dataset_version(
        dataset=dataset,
        file_path=ADULT,
        filename="adult.csv",
        source=DatasetVersion.Source.PATH,
        actor=scientist,
    )


@pytest.fixture
def drifted_check(registered_version, current_dataset_version, scientist, bike_drift_result):
    """A finished drift check of the 2012 rows (hum and cnt drift) and the alert it opened."""
    check = do_request_drift_check(
        model_version=registered_version, current_dataset_version=current_dataset_version, actor=scientist
    )
    return do_finish_drift_check(check.pk, result=bike_drift_result)


@pytest.fixture
def fresh():
    """The user re-read from the database, as each real request does (no cached roles)."""

    def reload(user):
        return get_user_model().objects.get(pk=user.pk)

    return reload


@pytest.fixture
def mail_dir(settings) -> Path:
    """Mail goes through the file backend into this folder (pytest-django would use locmem)."""
    settings.EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
    return Path(settings.EMAIL_FILE_PATH)


MAIL_SEPARATOR = b"\n" + b"-" * 79 + b"\n"


def sent_mail(folder: Path) -> list[email.message.EmailMessage]:
    """Every message the file backend wrote into ``folder``, headers unfolded.

    It names a file by the second and the backend object's address, and CPython reuses a freed
    backend's address: two sends within one second can share a file (a test that read one message
    per file failed now and then). Each message is followed by a line of 79 dashes; split on it.
    """
    return [
        email.message_from_bytes(chunk, policy=email.policy.default)
        for path in sorted(folder.iterdir())
        for chunk in path.read_bytes().split(MAIL_SEPARATOR)[:-1]
    ]


def mail_count(folder: Path) -> int:
    """Messages the file backend wrote into ``folder`` (not files: see ``sent_mail``)."""
    return len(sent_mail(folder))


def wrong_page_answers(
    client,
    request,
    pages: Iterable[tuple[str, Any]],
    personas: Iterable[str],
    expected: Callable[[str, Any], int],
) -> list[tuple[str, str, int]]:
    """Render every page anonymously, then as each persona; return each (who, url, status) that is
    not what it should be. Anonymous: a redirect to the login page. A persona: ``expected(persona,
    rule)``, ``rule`` being the page's second item (who may see it)."""
    wrong = []
    for url, _ in pages:
        response = client.get(url)
        if response.status_code != 302 or response["Location"] != f"/login/?next={quote(url)}":
            wrong.append(("anonymous", url, response.status_code))
    for persona in personas:
        client.force_login(request.getfixturevalue(persona))
        for url, rule in pages:
            status = client.get(url).status_code
            if status != expected(persona, rule):
                wrong.append((persona, url, status))
        client.logout()
    return wrong


def free_port() -> int:
    """A local TCP port nobody listens on now (bound, then released): for a server a test starts,
    or as a broker or database address that refuses connections for real."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# --- The artifact store (issue 12): encryption on; S3 through moto's emulator -------------------


@pytest.fixture
def keys(settings):
    """Encryption at rest on, with one key-encryption key ``k1``; the keyring entry returned."""
    entry = Keyring.new_entry("k1")
    settings.STEWARD_ARTIFACT_KEYS = entry
    return entry


@pytest.fixture
def s3(settings, monkeypatch, tmp_path):
    """A moto S3 server on a free port with bucket ``steward-test``; artifacts go to
    ``s3://steward-test/artifacts``, uploads over 5 MiB in parts. Yields the server's process."""
    import boto3

    port = free_port()
    server = subprocess.Popen(  # noqa: S603 - the venv's own moto_server
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    for name, value in {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "steward",
        "AWS_SECRET_ACCESS_KEY": "steward-secret",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    client = boto3.client("s3")
    deadline = time.monotonic() + 30
    while True:
        try:
            client.create_bucket(Bucket="steward-test")
            break
        except Exception:
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                raise
            time.sleep(0.2)
    settings.STEWARD_ARTIFACT_URL = "s3://steward-test/artifacts"
    settings.STEWARD_S3_MULTIPART_BYTES = 5 * 1024 * 1024
    yield server
    server.kill()
    server.wait(timeout=10)
