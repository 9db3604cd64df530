"""Hostile review of issue 15: a self-reported evaluation that cannot be recorded (the version
was registered into another team's model than the run's data) must not stop the run from ending."""

from __future__ import annotations

import hashlib

import pandas as pd
import pytest

from governance.actions.registered_models import do_create_registered_model
from governance.actions.teams import do_set_membership
from governance.models import Evaluation, ModelVersion, TeamRole
from runners.models import Job, JobState
from tests.conftest import ADULT

pytestmark = pytest.mark.django_db(transaction=True)

FEATURES = ["age", "education-num", "hours-per-week"]


def test_a_run_registering_into_another_teams_model_still_ends(
    mlflow_env, adult_version, scientist, admin, other_team
):
    import mlflow
    import mlflow.data
    import mlflow.sklearn
    from sklearn.linear_model import LogisticRegression

    mlflow.set_experiment("cross-team")  # in the scientist's only team: Mobility
    do_set_membership(user=scientist, team=other_team, role=TeamRole.DATA_SCIENTIST, actor=admin)
    do_create_registered_model(team=other_team, name="fraud-income", owner=scientist, actor=scientist)
    frame = pd.read_csv(ADULT)
    train, test = frame.iloc[:20000], frame.iloc[20000:]
    model = LogisticRegression(max_iter=200).fit(train[FEATURES], train["label"])
    dataset = mlflow.data.from_pandas(
        test, name="adult-test", targets="label", digest=hashlib.sha256(ADULT.read_bytes()).hexdigest()
    )
    with mlflow.start_run() as run:
        mlflow.log_input(dataset, context="evaluation")
        mlflow.log_metric("accuracy", float(model.score(test[FEATURES], test["label"])))
        logged = mlflow.sklearn.log_model(model, name="model", serialization_format="cloudpickle")
        mlflow.MlflowClient().create_model_version(
            name="fraud-income", source=logged.model_uri, run_id=run.info.run_id
        )

    job = Job.objects.get(pk=int(run.info.run_id))
    assert job.state == JobState.SUCCEEDED
    version = ModelVersion.objects.get(model__name="fraud-income")
    assert version.model.team == other_team
    # The run's data is Mobility's: no evaluation of Fraud's version joins the two teams' rows.
    assert not Evaluation.objects.exists()
