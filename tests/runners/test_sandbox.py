"""User code is untrusted (issue 17): real code that tries to read the worker's secrets, another
team's artifact, the database file, and to reach PostgreSQL and Redis, and fails each time; it
reaches Steward's API through the sandbox's proxy. Run through ``execute_job``."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from django.conf import settings

from governance.actions.datasets import do_create_dataset, do_register_dataset_version
from governance.models import DatasetVersion
from runners import sandbox
from runners.code_runs import do_submit_code_run
from runners.execute import execute_job
from runners.models import Job, JobLogChunk
from tests.conftest import BIKE_HOURLY
from tests.runners.code_fixtures import make_code_version

needs_bwrap = pytest.mark.skipif(
    not sandbox.bwrap_usable(), reason="bubblewrap (and socat) cannot create namespaces on this host"
)
SECRETS = {
    "DATABASE_URL": "postgres://steward:db-secret-4711@127.0.0.1:5432/steward",
    "DJANGO_SECRET_KEY": "django-secret-4711",
    "STEWARD_SECRET_KEY": "steward-secret-4711",
    "CELERY_BROKER_URL": "redis://:broker-secret-4711@127.0.0.1:6379/0",
    "AWS_SECRET_ACCESS_KEY": "aws-secret-4711",
    "STEWARD_AUDIT_SIGNING_KEY": "signing-secret-4711",
}
# The code's probes: each prints {"probe": name, "got": what it read or None, "error": why not}.
PROBE = """
    import json, os, socket, sys, urllib.request

    def report(name, fn):
        try:
            got, error = fn(), None
        except Exception as exc:
            got, error = None, f"{type(exc).__name__}: {exc}"
        print(json.dumps({"probe": name, "got": got, "error": error}))

    def read(path):
        with open(path, "rb") as handle:
            return handle.read().decode("utf-8", "replace")

    def connect(port):
        with socket.create_connection(("127.0.0.1", port), timeout=3):
            return f"connected to {port}"

    def api():
        request = urllib.request.Request(
            os.environ["MLFLOW_TRACKING_URI"]
            + "/api/2.0/mlflow/experiments/get?experiment_id="
            + os.environ["MLFLOW_EXPERIMENT_ID"],
            headers={"Authorization": "Bearer " + os.environ["MLFLOW_TRACKING_TOKEN"]},
        )
        try:
            with urllib.request.urlopen(request, timeout=20) as answer:
                return answer.status
        except urllib.error.HTTPError as exc:
            return exc.code

    targets = json.loads(sys.argv[1])
    for name in targets["env"]:
        report(f"env {name}", lambda: os.environ[name])
    report("worker environ", lambda: read(f"/proc/{targets['worker_pid']}/environ"))
    for name, path in targets["files"].items():
        report(name, lambda: read(path))
    if targets["network"]:
        report("postgresql", lambda: connect(5432))
        report("redis", lambda: connect(6379))
        report("steward api", api)
    status = read("/proc/self/status").splitlines()
    report("uid", lambda: [line for line in status if line.startswith("Uid:")][0])
    report("uid map", lambda: read("/proc/self/uid_map").split())
"""


def _probes(job: Job) -> dict[str, dict]:
    found = {}
    for text in JobLogChunk.objects.filter(job=job, stream="stdout").values_list("text", flat=True):
        for line in text.splitlines():
            if line.startswith("{"):
                probe = json.loads(line)
                found[probe["probe"]] = probe
    return found


def _run_probes(team, scientist, targets: dict) -> tuple[Job, dict[str, dict]]:
    code = make_code_version(
        team,
        scientist,
        {
            "MLproject": """
                entry_points:
                  main:
                    parameters: {targets: string}
                    command: "python probe.py {targets}"
            """,
            "probe.py": PROBE,
        },
    )
    job = do_submit_code_run(
        code_version=code, entry_point="main", parameters={"targets": json.dumps(targets)}, actor=scientist
    )
    assert execute_job(job.pk, worker="test") == "succeeded", Job.objects.get(pk=job.pk).error
    job.refresh_from_db()
    return job, _probes(job)


@pytest.fixture
def worker_secrets(monkeypatch, settings, audit_signing_key_file):
    """The worker's environment holds secrets, and the audit signing key file exists."""
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    if not audit_signing_key_file.exists():
        audit_signing_key_file.write_text("-----BEGIN PRIVATE KEY-----\nsigning-file-4711\n")
        audit_signing_key_file.chmod(0o600)
    return SECRETS


@pytest.fixture
def other_teams_artifact(other_team, outsider) -> Path:
    dataset = do_create_dataset(team=other_team, name="fraud-cases", actor=outsider)
    version = do_register_dataset_version(
        dataset=dataset,
        file_path=BIKE_HOURLY,
        filename="hour.csv",
        source=DatasetVersion.Source.PATH,
        actor=outsider,
    )
    return version.path


def _database_file() -> str:
    name = str(settings.DATABASES["default"]["NAME"])
    return name if Path(name).is_file() else str(Path(settings.BASE_DIR) / "var" / "test.sqlite3")


@needs_bwrap
@pytest.mark.django_db(transaction=True)
def test_sandboxed_code_gets_no_secret_and_only_the_api(
    team, scientist, worker_secrets, other_teams_artifact, live_server, settings, audit_signing_key_file
):
    settings.STEWARD_SANDBOX = "bwrap"
    settings.STEWARD_API_URL = live_server.url
    files = {
        "audit signing key file": str(audit_signing_key_file),
        "other team's artifact": str(other_teams_artifact),
        "database file": _database_file(),
    }
    assert Path(files["other team's artifact"]).is_file()
    job, probes = _run_probes(
        team, scientist, {"env": sorted(SECRETS), "worker_pid": os.getpid(), "files": files, "network": True}
    )
    for name in [*(f"env {n}" for n in SECRETS), "worker environ", *files, "postgresql", "redis"]:
        assert probes[name]["got"] is None, (name, probes[name])
        assert probes[name]["error"], name
    # Steward's API answers through the proxy: the run's token reads the run's experiment.
    assert probes["steward api"]["got"] == 200, probes["steward api"]
    uid = str(settings.STEWARD_SANDBOX_UID)
    assert probes["uid"]["got"].split()[1:] == [uid] * 4
    if os.geteuid() == 0:
        # No user namespace: the uid inside is the uid outside (not root mapped to 65534).
        assert probes["uid map"]["got"] == ["0", "0", "4294967295"]
    log = "".join(JobLogChunk.objects.filter(job=job).values_list("text", flat=True))
    for secret in [*SECRETS.values(), "signing-file-4711", settings.SECRET_KEY]:
        assert secret not in log
    assert "sandbox: bwrap" in log


@pytest.mark.django_db
def test_unsandboxed_code_still_gets_a_clean_environment(team, scientist, worker_secrets, settings):
    """Without bubblewrap the code's environment is still clean and, under a root worker, it runs
    as the sandbox's uid. A shell script: the interpreter of this host lives under /root, which
    that uid cannot read (docs/operations.md)."""
    settings.STEWARD_SANDBOX = "none"
    names = " ".join(sorted(SECRETS))
    script = f"""
        for name in {names}; do
            if printenv "$name" >/dev/null; then echo "leaked $name"; else echo "no $name"; fi
        done
        if cat /proc/{os.getpid()}/environ >/dev/null 2>&1
        then echo "read worker environ"
        else echo "no worker environ"
        fi
        grep '^Uid:' /proc/self/status
    """
    code = make_code_version(
        team, scientist, {"probe.sh": script, "MLproject": "entry_points: {main: {command: sh probe.sh}}"}
    )
    job = do_submit_code_run(code_version=code, entry_point="main", actor=scientist)
    assert execute_job(job.pk) == "succeeded", Job.objects.get(pk=job.pk).error
    out = "".join(JobLogChunk.objects.filter(job=job, stream="stdout").values_list("text", flat=True))
    for name in SECRETS:
        assert f"no {name}\n" in out
    if os.geteuid() == 0:
        assert "no worker environ\n" in out
        assert f"Uid:\t{settings.STEWARD_SANDBOX_UID}\t" in out
    log = "".join(JobLogChunk.objects.filter(job=job).values_list("text", flat=True))
    assert "sandbox: none (bubblewrap is not usable here)" in log
    for secret in SECRETS.values():
        assert secret not in log


def test_auto_falls_back_to_none_where_bubblewrap_cannot_run_and_bwrap_refuses(tmp_path):
    missing = str(tmp_path / "no-bwrap")
    assert sandbox.resolve_mode("auto", bwrap=missing) == "none"
    assert sandbox.resolve_mode("none", bwrap=missing) == "none"
    with pytest.raises(sandbox.SandboxError, match=r"STEWARD_SANDBOX=bwrap but .*no-bwrap"):
        sandbox.resolve_mode("bwrap", bwrap=missing)
    with pytest.raises(sandbox.SandboxError, match="STEWARD_SANDBOX is 'docker'; one of auto, bwrap, none"):
        sandbox.resolve_mode("docker")


@needs_bwrap
def test_an_interpreter_under_tmp_stays_visible_in_the_sandbox(tmp_path, monkeypatch):
    """A checkout (and so its virtualenv) under /tmp, as CI's clone is: the sandbox's own /tmp
    must not hide it. Here a folder under pytest's /tmp stands for the interpreter's prefix."""
    prefix = tmp_path / "venv"
    (prefix / "bin").mkdir(parents=True)
    (prefix / "bin" / "marker").write_text("seen\n")
    monkeypatch.setattr(sandbox, "python_dirs", lambda: [prefix])
    workdir = tmp_path / "work"
    for folder in ("code", "inputs", "output", "run"):
        (workdir / folder).mkdir(parents=True)
    command = sandbox.build(
        "bwrap",
        run_line=f"cat {prefix / 'bin' / 'marker'}; ls -d /tmp",
        env={"PATH": "/usr/bin:/bin"},
        workdir=workdir,
        steward_packages=[],
        api_target=None,
        api_port=5000,
        uid=65534,
    )
    import subprocess

    done = subprocess.run(  # noqa: S603 - bwrap with the arguments the sandbox built
        command.argv,
        env=command.env,
        cwd=command.cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["seen", "/tmp"]


@needs_bwrap
@pytest.mark.django_db
def test_a_sandboxed_runs_cpu_time_is_accounted(team, scientist):
    """The sandbox's PID namespace keeps its processes' CPU time from the worker's wait4: the
    launcher's samples count it, so accounting (and cost) see what the code used."""
    code = make_code_version(
        team,
        scientist,
        {
            "burn.py": """
                import time
                start = time.process_time()
                while time.process_time() - start < 1.5:
                    pass
                print("burnt", round(time.process_time() - start, 1), flush=True)
            """
        },
    )
    job = do_submit_code_run(code_version=code, entry_point="burn.py", actor=scientist)

    assert execute_job(job.pk) == "succeeded", Job.objects.get(pk=job.pk).error
    job.refresh_from_db()
    assert "sandbox: bwrap" in job.log_tail
    assert job.cpu_time_s >= 1.0
