"""The demo workspace: the bike-sharing lifecycle, driven through the actions and a real worker.

A data scientist registers ``hour.csv``, trains a model of ``cnt`` on the 2011 rows, predicts
the 2012 rows, and puts a monitor on the model version; its first check of the 2012 predictions
fires, and the model's owner gets the alert (level 1 of the team's escalation policy). Jobs and checks
run on whatever Celery worker is consuming the configured broker; this code only submits and
waits, as a user of the UI would.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model

from governance.actions.datasets import do_create_dataset, do_register_dataset_version
from governance.actions.registered_models import do_create_registered_model
from governance.actions.teams import do_create_team, do_grant_platform_role, do_set_membership
from governance.actions.users import do_create_user
from governance.models import Dataset, DatasetVersion, PlatformRole, RegisteredModel, Team, TeamRole
from monitoring.actions.checks import do_run_monitor
from monitoring.actions.monitors import do_create_monitor
from monitoring.actions.policies import do_create_escalation_policy
from monitoring.models import CheckState, DriftCheck, EscalationPolicy
from runners.actions import do_submit_job
from runners.models import TERMINAL_STATES, Job, JobKind, JobState

POLICY_NAME = "bike-demand on-call"
DEMO_PASSWORD = "steward-demo"  # noqa: S105 - printed to the person who runs the demo
DEMO_DATA = Path(settings.BASE_DIR) / "demo_data" / "bike-sharing" / "hour.csv"
FEATURES = [
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
TRAINING_SPEC = {
    "target": "cnt",
    "features": FEATURES,
    "categorical": ["season", "mnth", "hr", "weekday", "weathersit"],
    "epochs": 15,
    "batch_size": 128,
    "learning_rate": 0.003,
    "seed": 7,
    "where": {"yr": 0},
}
PREDICT_SPEC = {"where": {"yr": 1}}
JOB_NOUNS = {JobKind.TRAIN: "training", JobKind.INFER: "inference"}
# (username, email, platform role or None, team role or None)
PEOPLE = [
    ("admin", "admin@example.com", PlatformRole.ADMIN, None),
    ("olivia", "olivia@example.com", None, TeamRole.MODEL_OWNER),
    ("dana", "dana@example.com", None, TeamRole.DATA_SCIENTIST),
    ("aaron", "aaron@example.com", None, TeamRole.APPROVER),
    ("vera", "vera@example.com", None, TeamRole.VIEWER),
    ("carl", "carl@example.com", PlatformRole.COMPLIANCE_OFFICER, None),
]


@dataclass
class DemoResult:
    training_job: Job
    inference_job: Job
    drift_check: DriftCheck


def plain(value: object) -> str:
    """A metric as people read it: 4 significant digits, thousands grouped, never in exponent
    form (``:.3g`` printed an MSE of 12345 as 1.23e+04, issue 14)."""
    if not isinstance(value, int | float) or value != value:  # not a number, or NaN
        return str(value)
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.4g}" if abs(value) >= 1e-4 or value == 0 else f"{value:.6f}"


class DemoTimeout(RuntimeError):
    pass


def _wait(fetch: Callable[[], object], is_done: Callable[[object], bool], what: str, timeout_s: float, say):
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        obj = fetch()
        progress = getattr(obj, "progress", None)
        if progress is not None and progress != last:
            say(f"  {what}: {obj.state} {progress:.0%}")
            last = progress
        if is_done(obj):
            return obj
        time.sleep(0.5)
    raise DemoTimeout(f"{what} did not finish in {timeout_s:.0f} s: is a Celery worker running?")


def create_people(say: Callable[[str], None] = print) -> dict[str, object]:
    """The demo team and its people (idempotent); returns users by username."""
    user_model = get_user_model()
    admin = user_model.objects.filter(username="admin").first()
    if admin is None:
        admin = user_model.objects.create_superuser("admin", "admin@example.com", DEMO_PASSWORD)
        # The system bootstraps the first admin: nobody, admins included, grants themselves a role.
        do_grant_platform_role(user=admin, role=PlatformRole.ADMIN, actor=None)
    team = Team.objects.filter(name="Mobility").first() or do_create_team(
        name="Mobility", description="Demand forecasting for bike sharing", actor=admin
    )
    users = {"admin": admin}
    for username, email, platform_role, team_role in PEOPLE[1:]:
        user = user_model.objects.filter(username=username).first() or do_create_user(
            username=username, email=email, password=DEMO_PASSWORD, actor=admin
        )
        if platform_role:
            do_grant_platform_role(user=user, role=platform_role, actor=admin)
        if team_role:
            do_set_membership(user=user, team=team, role=team_role, actor=admin)
        users[username] = user
    users["team"] = team
    return users


def run_demo(
    say: Callable[[str], None] = print, timeout_s: float = 900, data_file: Path = DEMO_DATA
) -> DemoResult:
    """Run the whole lifecycle once and return its job, inference and drift check rows."""
    people = create_people(say)
    dana, olivia, team = people["dana"], people["olivia"], people["team"]
    version, model = _register_data(team, dana, olivia, data_file, say)
    inputs = {"dataset_version": version, "actor": dana}
    say("training on the 2011 rows (a real Celery worker runs it)")
    training = _run_job(
        timeout_s, say, kind=JobKind.TRAIN, registered_model=model, spec=TRAINING_SPEC, **inputs
    )
    model_version = training.output_model_version
    metrics = ", ".join(f"{key}={plain(value)}" for key, value in model_version.metrics.items())
    say(f"registered {model_version}: {metrics}")
    say("predicting the 2012 rows")
    inference = _run_job(
        timeout_s, say, kind=JobKind.INFER, model_version=model_version, spec=PREDICT_SPEC, **inputs
    )
    say(f"predictions written as {inference.output_dataset_version}")
    check = _check_predictions(team, dana, olivia, model_version, timeout_s, say)
    return DemoResult(training, inference, check)


def _register_data(team, dana, olivia, data_file: Path, say) -> tuple[DatasetVersion, RegisteredModel]:
    """The bike-sharing dataset (idempotent), ``data_file`` as its next version, the model."""
    dataset = Dataset.objects.filter(name="bike-sharing-hourly").first() or do_create_dataset(
        team=team, name="bike-sharing-hourly", description="Capital Bikeshare, hourly, 2011-2012", actor=dana
    )
    say(f"registering {data_file.name} as a version of {dataset.name}")
    version = do_register_dataset_version(
        dataset=dataset,
        file_path=data_file,
        filename=data_file.name,
        source=DatasetVersion.Source.PATH,
        actor=dana,
    )
    live = RegisteredModel.objects.filter(team=team, name="bike-demand", deleted_at__isnull=True)
    model = live.first() or do_create_registered_model(
        team=team,
        name="bike-demand",
        owner=olivia,
        description="Hourly rentals (cnt) from calendar and weather",
        actor=dana,
    )
    return version, model


def _run_job(timeout_s: float, say, **submission) -> Job:
    """Submit a job (``do_submit_job(**submission)``) and wait for it; RuntimeError unless it succeeded."""
    job = do_submit_job(**submission)
    kind = JOB_NOUNS[submission["kind"]]
    job = _wait(
        lambda: Job.objects.get(pk=job.pk),
        lambda j: j.state in TERMINAL_STATES,
        f"{kind} job #{job.pk}",
        timeout_s,
        say,
    )
    if job.state != JobState.SUCCEEDED:
        raise RuntimeError(f"{kind} job #{job.pk} {job.state}: {job.error}")
    return job


def _check_predictions(team, dana, olivia, model_version, timeout_s: float, say) -> DriftCheck:
    """The on-call policy (idempotent), a daily monitor of the model version, and its first check."""
    policy = EscalationPolicy.objects.filter(
        team=team, name=POLICY_NAME
    ).first() or do_create_escalation_policy(
        team=team,
        name=POLICY_NAME,
        description="The model's owner first; the team's data scientists if nobody acknowledges.",
        levels=[
            {"delay_minutes": 15, "repeat": 1, "users": [olivia]},
            {"delay_minutes": 30, "role": TeamRole.DATA_SCIENTIST},
        ],
        actor=olivia,
    )
    monitor = do_create_monitor(
        model_version=model_version,
        name="predictions",
        # What the owner chose: its alerts are critical (monitor, check and alert agree, issue 14).
        severity="critical",
        escalation_policy=policy,
        schedule_minutes=24 * 60,
        actor=dana,
    )
    say(f"{monitor}: checks the newest predictions daily against the 2011 training rows")
    check = do_run_monitor(monitor=monitor, actor=dana)
    check = _wait(
        lambda: DriftCheck.objects.get(pk=check.pk),
        lambda c: c.state in (CheckState.SUCCEEDED, CheckState.FAILED),
        f"drift check #{check.pk}",
        timeout_s,
        say,
    )
    if check.state != CheckState.SUCCEEDED:
        raise RuntimeError(f"drift check #{check.pk} failed: {check.error}")
    drifted = ", ".join(c["column"] for c in check.drifted_columns) or "none"
    say(f"drift check #{check.pk}: {check.drifted_count} of {len(check.results)} columns drifted ({drifted})")
    alert = check.alerts.first()
    if alert is not None:
        say(f"alert #{alert.pk} for {alert.owner.get_username()}: {alert.title}")
    return check
