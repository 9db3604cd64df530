"""Two teams' worth of registry, job, drift check and alert rows, built through the actions; and
the artifact store's fixtures (``keys``: encryption on; ``s3``: moto's S3 emulator)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from django.contrib.auth import get_user_model

from governance.actions.datasets import do_create_dataset, do_register_dataset_version
from governance.actions.model_versions import (
    do_register_model_version,
    do_register_model_version_from_artifact,
)
from governance.actions.registered_models import do_create_registered_model
from governance.models import (
    ApiToken,
    AuditEvent,
    DatasetVersion,
    Membership,
    PlatformRoleGrant,
    PromotionRequest,
    Team,
)
from monitoring.models import Alert
from runners.evaluation_records import record_evaluation
from tests.governance import sso_helpers
from tests.governance.audit_helpers import grow_log

PERSONAS = ["admin", "owner", "scientist", "approver", "viewer", "outsider", "compliance_officer"]


@pytest.fixture
def world(
    admin,
    owner,
    scientist,
    approver,
    viewer,
    outsider,
    compliance_officer,
    team,
    other_team,
    dataset,
    dataset_version,
    registered_model,
    registered_version,
    current_dataset_version,
    drifted_check,
    training_spec,
    bike_training_result,
    tmp_path,
):
    """Mobility (the personas' team) holds the bike rows; Fraud (the outsider's) holds its own.

    Mobility: 2 datasets with 1 version each, 1 model with 1 version, 1 queued job, 1 finished
    drift check and its open alert. Fraud: 1 dataset, 1 version, 1 model, 1 version, 1 queued job.
    """
    from runners.actions import do_submit_job  # imports torch (runners.training); only world needs it

    payments = tmp_path / "payments.csv"
    payments.write_text("amount,hour,is_fraud\n12.5,3,0\n990.0,4,1\n15.0,13,0\n")
    fraud_dataset = do_create_dataset(team=other_team, name="card-payments", actor=outsider)
    fraud_version = do_register_dataset_version(
        dataset=fraud_dataset,
        file_path=payments,
        filename="payments.csv",
        source=DatasetVersion.Source.UPLOAD,
        actor=outsider,
    )
    fraud_model = do_create_registered_model(
        team=other_team, name="fraud-score", owner=outsider, actor=outsider
    )
    fraud_model_version = do_register_model_version(
        model=fraud_model,
        artifact_bytes=bike_training_result.artifact,
        metrics={},
        signature={"task": "classification", "target": "is_fraud", "features": ["amount", "hour"]},
        training_spec={},
        training_dataset_version=fraud_version,
        source_job_id=None,
        actor=outsider,
    )
    fraud_job = do_submit_job(
        kind="train",
        dataset_version=fraud_version,
        registered_model=fraud_model,
        spec={"target": "is_fraud", "features": ["amount", "hour"]},
        actor=outsider,
    )
    job = do_submit_job(
        kind="train",
        dataset_version=dataset_version,
        registered_model=registered_model,
        spec=training_spec,
        actor=scientist,
    )
    return SimpleNamespace(
        team=team,
        other_team=other_team,
        dataset=dataset,
        dataset_version=dataset_version,
        current_dataset_version=current_dataset_version,
        model=registered_model,
        model_version=registered_version,
        job=job,
        check=drifted_check,
        alert=Alert.objects.get(drift_check=drifted_check),
        fraud_dataset=fraud_dataset,
        fraud_version=fraud_version,
        fraud_model=fraud_model,
        fraud_model_version=fraud_model_version,
        fraud_job=fraud_job,
    )


def fingerprint() -> dict:
    """Every row of the tables an API attack could change, to assert that none changed."""
    tables = [get_user_model(), Team, Membership, PlatformRoleGrant, ApiToken, PromotionRequest, AuditEvent]
    return {model.__name__: list(model.objects.order_by("pk").values()) for model in tables}


@pytest.fixture
def log(team, admin, compliance_officer) -> list[AuditEvent]:
    """Twelve events in checkpoints of 5, 9 and 12, in leaf order: the team, the officer's
    platform role, then ten datasets."""
    grow_log(team, admin, [5, 9, 12])
    return list(AuditEvent.objects.order_by("leaf__leaf_index"))


def result_ids(response) -> list[int]:
    """The ids of a paginated list response's page, in order."""
    return [row["id"] for row in response.json()["results"]]


# Single sign-on (tests/governance/test_sso*.py): each module starts its provider_process.
@pytest.fixture
def provider(provider_process):
    provider_process.reset()
    return provider_process


@pytest.fixture
def sso(settings, provider):
    """Single sign-on on, as the environment of docs/operations.md sets it."""
    settings.OIDC_RP_CLIENT_ID = sso_helpers.CLIENT_ID
    settings.OIDC_RP_CLIENT_SECRET = sso_helpers.CLIENT_SECRET
    settings.STEWARD_OIDC_ENABLED = True
    settings.STEWARD_OIDC_ISSUER = provider.issuer
    settings.OIDC_OP_AUTHORIZATION_ENDPOINT = f"{provider.issuer}/authorize/"
    settings.OIDC_OP_TOKEN_ENDPOINT = f"{provider.issuer}/token/"
    settings.OIDC_OP_USER_ENDPOINT = f"{provider.issuer}/userinfo/"
    settings.OIDC_OP_JWKS_ENDPOINT = f"{provider.issuer}/.well-known/jwks.json"
    settings.OIDC_RP_SCOPES = "openid email profile groups"
    settings.STEWARD_OIDC_ROLE_MAP = json.dumps(sso_helpers.ROLE_MAP)
    settings.AUTHENTICATION_BACKENDS = [
        *settings.AUTHENTICATION_BACKENDS,
        "governance.oidc.StewardOIDCBackend",
    ]
    return provider


@pytest.fixture(scope="session")
def adult_evaluations():
    """The engine's real evaluations of four adult-income models (``evaluation_helpers``); ~15 s
    once a session."""
    from tests.governance.evaluation_helpers import adult_evaluations as build

    return build()


@pytest.fixture
def adult_versions(team, owner, scientist, tmp_path):
    """Versions 1-4 of model ``income`` (the champion, full, mitigated again, weak), registered
    from files (the evaluation reads the engine's numbers, not these bytes)."""
    model = do_create_registered_model(team=team, name="income", owner=owner, actor=scientist)
    versions = {}
    for name in ("mitigated", "full", "mitigated_again", "weak"):
        path = tmp_path / f"{name}.txt"
        path.write_text(f"adult income model {name}\n")
        versions[name] = do_register_model_version_from_artifact(
            model=model, artifact_path=path, source=f"test:{name}", actor=scientist
        )
    return versions


@pytest.fixture
def record_adult_evaluation(adult_evaluations, adult_versions, adult_version, scientist):
    """``record(name)``: the engine's evaluation of candidate ``name`` (``full``,
    ``mitigated_again``, ``weak``) against the champion ``mitigated``, recorded as the evaluation
    job does (the system on behalf of the scientist)."""

    def record(name: str):
        comparison = adult_evaluations.comparisons[name]
        return record_evaluation(
            model_version=adult_versions[name],
            dataset_version=adult_version,
            spec=adult_evaluations.spec,
            results=comparison["candidate"],
            champion_version=adult_versions["mitigated"],
            champion_results=comparison["champion"],
            comparison=comparison["differences"],
            actor=None,
            on_behalf_of=scientist,
        )

    return record
