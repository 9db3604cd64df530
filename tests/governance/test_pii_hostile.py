"""Hostile review of PII scans and policies (issue 12): hostile files through the worker's
function, the API and the page; policy bodies and roles through the API; every door a job that
reads a dataset version comes in by."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.test import Client

from governance.actions.datasets import do_create_dataset, do_register_dataset_version
from governance.actions.pii import do_set_pii_policy, run_pii_scan
from governance.actions.teams import do_set_membership
from governance.models import AuditEvent, DatasetVersion, PiiPolicy, PiiScan, TeamRole
from runners.models import Job
from tests.runners.code_fixtures import make_code_version

pytestmark = pytest.mark.django_db


def _register(team, actor, tmp_path: Path, name: str, text: str) -> DatasetVersion:
    path = tmp_path / f"{name}.csv"
    path.write_text(text, encoding="utf-8")
    dataset = do_create_dataset(team=team, name=name, actor=actor)
    return do_register_dataset_version(
        dataset=dataset, file_path=path, filename=path.name, source=DatasetVersion.Source.PATH, actor=actor
    )


def _scan(version: DatasetVersion) -> PiiScan:
    scan = PiiScan.objects.get(dataset_version=version)
    assert run_pii_scan(scan.pk) == "done"
    scan.refresh_from_db()
    return scan


def test_masked_examples_of_free_text_hide_the_words_around_the_identifier(
    team, scientist, tmp_path, client_for
):
    """The email mask kept everything after the cell's last dot and the IP mask everything before
    the address's first separator: a note's patient name and diagnosis came back unmasked."""
    rows = [
        f'{i},"mail{i}@example.com. Patient Jane Roe has HIV","Jane Roe logged in from 10.0.{i}.1"'
        for i in range(20)
    ]
    version = _register(team, scientist, tmp_path, "notes", "id,note,log\n" + "\n".join(rows) + "\n")
    _scan(version)

    body = client_for(scientist).get(f"/api/dataset-versions/{version.pk}/pii/").json()
    findings = {(f["column"], f["kind"]): f["examples"] for f in body["report"]["findings"]}
    assert findings[("note", "email")][0] == "m***@e***.com. ******* **** *** *** ***"
    assert findings[("log", "ip_address")][0] == "**** *** ****** ** **** 10.*.*.*"
    text = json.dumps([example for examples in findings.values() for example in examples])
    for secret in ("Jane", "Roe", "HIV", "example", "mail0"):
        assert secret not in text


def test_a_hostile_file_is_escaped_on_the_page_and_its_examples_masked(team, scientist, tmp_path):
    header = '"<script>alert(1)</script>email","<b>name</b>",ssn'
    rows = [
        f'"<img src=x onerror=alert({i})>a{i}@evil.example","<i>Bob</i>",078-05-112{i % 10}'
        for i in range(30)
    ]
    version = _register(team, scientist, tmp_path, "hostile", header + "\n" + "\n".join(rows) + "\n")
    scan = _scan(version)
    kinds = {(f["column"], f["kind"]) for f in scan.report["findings"]}
    assert ("<script>alert(1)</script>email", "email") in kinds
    assert ("ssn", "us_ssn") in kinds

    browser = Client()
    browser.force_login(scientist)
    page = browser.get(f"/dataset-versions/{version.pk}/").content.decode()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;email" in page
    assert "<script>alert(1)" not in page
    assert "<img src=x" not in page
    assert "078-05-112" not in page


def test_a_wide_file_of_long_cells_is_scanned_within_bounds(team, scientist, tmp_path, settings):
    """2,000 columns and cells of 20,000 characters: the scan finishes, or fails at its time
    limit with the reason, never hangs or stores a report it cannot."""
    settings.STEWARD_PII_SCAN_TIME_LIMIT_S = 30
    header = ",".join(f"c{i}" for i in range(2000))
    row = ",".join("7" for _ in range(2000))
    long_row = ",".join(["@a." * 6000 + "x"] + ["1"] * 1999)
    version = _register(team, scientist, tmp_path, "wide", "\n".join([header, row, long_row, row]) + "\n")
    scan = PiiScan.objects.get(dataset_version=version)
    assert run_pii_scan(scan.pk) == "done"
    scan.refresh_from_db()
    assert scan.report["columns_scanned"] == 2000
    assert scan.report["findings"] == []


BAD_RULES = {
    "list": ([["us_ssn", "block"]], "an object of kind -> one of block, mask, hash, drop, allow"),
    "string": ("block", "an object of kind -> one of block, mask, hash, drop, allow"),
    "null": (None, "This field may not be null."),
    "unknown kind": ({"passport": "block"}, "unknown kind 'passport'"),
    "NUL in kind": ({"us_ssn\x00": "block"}, "unknown kind 'us_ssn\\x00'"),
    "NUL in rule": (
        {"us_ssn": "block\x00"},
        "us_ssn: 'block\\x00' is not one of block, mask, hash, drop, allow",
    ),
    "number": ({"us_ssn": 1}, "us_ssn: '1' is not one of block, mask, hash, drop, allow"),
    "object": ({"us_ssn": {"rule": "block"}}, "is not one of block, mask, hash, drop, allow"),
    "unknown rule": ({"us_ssn": "encrypt"}, "us_ssn: 'encrypt' is not one of block, mask, hash, drop, allow"),
    "case": ({"us_ssn": "BLOCK"}, "us_ssn: 'BLOCK' is not one of block, mask, hash, drop, allow"),
    "huge": ({f"k{i}": "block" for i in range(10_000)}, "unknown kind 'k0'"),
}


def test_bad_policy_bodies_are_400s_naming_the_problem(team, owner, client_for):
    client = client_for(owner)
    url = f"/api/teams/{team.pk}/pii-policy/"
    for case, (rules, message) in BAD_RULES.items():
        answer = client.put(url, {"rules": rules}, format="json")
        assert answer.status_code == 400, case
        assert message in " ".join(answer.json()["rules"]), (case, answer.json())
    assert not PiiPolicy.objects.exists()
    assert client.put(url, {}, format="json").status_code == 400
    assert not AuditEvent.objects.filter(action="pii_policy.set").exists()


def test_only_the_teams_managers_set_the_policy_or_rescan(
    team, other_team, admin, owner, scientist, viewer, outsider, client_for, tmp_path
):
    other_owner = _other_owner(admin, other_team)
    url = f"/api/teams/{team.pk}/pii-policy/"
    body = {"rules": {"default": "allow"}}
    assert client_for(scientist).put(url, body, format="json").status_code == 403
    assert client_for(viewer).put(url, body, format="json").status_code == 403
    assert client_for(outsider).put(url, body, format="json").status_code == 404
    assert client_for(other_owner).put(url, body, format="json").status_code == 404
    assert client_for(other_owner).get(url).status_code == 404
    assert client_for(viewer).get(url).json() == {"rules": {}}
    assert not PiiPolicy.objects.exists()

    version = _register(team, scientist, tmp_path, "small", "a,b\n1,2\n")
    scan_url = f"/api/dataset-versions/{version.pk}/pii/"
    assert client_for(other_owner).post(scan_url).status_code == 404
    assert client_for(outsider).post(scan_url).status_code == 404
    assert client_for(viewer).post(scan_url).status_code == 403
    assert not AuditEvent.objects.filter(action="pii_scan.request").exists()


def _other_owner(admin, other_team):
    from django.contrib.auth.models import User

    user = User.objects.create_user("mallory")
    do_set_membership(user=user, team=other_team, role=TeamRole.MODEL_OWNER, actor=admin)
    return user


def test_a_code_run_is_refused_an_input_the_policy_blocks(team, owner, scientist, tmp_path, client_for):
    """A code run reads its inputs in the sandbox like a training job: the policy refused training
    and inference on a version holding a blocked SSN column but let user code read it."""
    rows = [f"{i},078-05-{1120 + i}" for i in range(20)]
    version = _register(team, scientist, tmp_path, "people", "id,ssn\n" + "\n".join(rows) + "\n")
    code = make_code_version(
        team,
        scientist,
        {"probe.py": "print(1)", "MLproject": "entry_points: {main: {command: python probe.py}}"},
    )
    body = {"kind": "code", "code_version": code.pk, "entry_point": "main", "inputs": {"people": version.pk}}
    client = client_for(scientist)
    assert client.post("/api/jobs/", body, format="json").status_code == 201
    do_set_pii_policy(team=team, rules={"us_ssn": "block"}, actor=owner)

    pending = client.post("/api/jobs/", body, format="json")
    assert pending.status_code == 400
    assert f"people: the PII scan of {version} is queued, not done" in json.dumps(pending.json())
    _scan(version)
    refused = client.post("/api/jobs/", body, format="json")
    assert refused.json() == {
        "inputs": [
            f"people: {version} holds personal data team {team.name}'s PII policy blocks: "
            "column 'ssn' (us_ssn)"
        ]
    }
    assert Job.objects.filter(kind="code").count() == 1
    do_set_pii_policy(team=team, rules={"us_ssn": "allow"}, actor=owner)
    assert client.post("/api/jobs/", body, format="json").status_code == 201


def test_the_art30_record_costs_the_same_queries_for_many_datasets_and_only_its_teams_read_it(
    team, other_team, admin, scientist, viewer, outsider, compliance_officer, client_for, tmp_path
):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    url = f"/api/teams/{team.pk}/records-of-processing/"
    _register(team, scientist, tmp_path, "first", "email\na@b.example\n")
    client = client_for(viewer)
    client.get(url)  # the user's platform roles are read once and kept on the user
    with CaptureQueriesContext(connection) as one:
        assert client.get(url).status_code == 200
    for i in range(6):
        version = _register(
            team, scientist, tmp_path, f"more{i}", "ssn\n078-05-1120\n078-05-1121\n078-05-1122\n"
        )
        _scan(version)
    foreign = _register(other_team, outsider, tmp_path, "secret-fraud", "ssn\n078-05-1120\n")
    _scan(foreign)
    with CaptureQueriesContext(connection) as seven:
        body = client.get(url).json()
    assert len(seven.captured_queries) == len(one.captured_queries)
    assert [activity["dataset"] for activity in body["activities"]] == ["first"] + [
        f"more{i}" for i in range(6)
    ]
    assert "secret-fraud" not in json.dumps(body)
    assert body["activities"][1]["personal_data"]["kinds"] == {"us_ssn": ["ssn"]}
    assert client_for(compliance_officer).get(url).status_code == 200
    assert client_for(outsider).get(url).status_code == 404
    assert client_for(_other_owner(admin, other_team)).get(url).status_code == 404


def test_a_birth_date_column_of_non_ascii_text_is_masked(team, scientist, tmp_path, client_for):
    """The date-of-birth mask hid only [0-9A-Za-z]: names in Cyrillic or dates in Arabic-Indic
    digits in a column called dob came back as they were."""
    rows = ["Иван Петров", "Мария Иванова", "\u0661\u0669\u0669\u0660-\u0660\u0665-\u0660\u0661"] * 5
    version = _register(
        team, scientist, tmp_path, "births", "id,dob\n" + "\n".join(f"{i},{v}" for i, v in enumerate(rows))
    )
    _scan(version)

    body = client_for(scientist).get(f"/api/dataset-versions/{version.pk}/pii/").json()
    (finding,) = [f for f in body["report"]["findings"] if f["column"] == "dob"]
    assert (finding["kind"], finding["signal"]) == ("date_of_birth", "name")
    assert finding["examples"] == ["**** ******", "***** *******", "****-**-**"]


def test_a_job_queued_before_the_policy_blocked_its_data_is_refused_when_it_starts(
    adult_version, registered_model, team, owner, scientist, client_for
):
    """The refusal was asked only at submission: a training job or code run queued before the
    team blocked race (waiting in a start window, a budget hold, a queue) still read the data."""
    from runners.execute import execute_job

    client = client_for(scientist)
    train = {
        "kind": "train",
        "dataset_version": adult_version.pk,
        "registered_model": registered_model.pk,
        "spec": {"target": "label", "features": ["age", "hours-per-week"], "epochs": 1},
    }
    files = {"probe.py": "print(1)", "MLproject": "entry_points: {main: {command: python probe.py}}"}
    code = make_code_version(team, scientist, files)
    run = {
        "kind": "code",
        "code_version": code.pk,
        "entry_point": "main",
        "inputs": {"adult": adult_version.pk},
    }
    queued = [client.post("/api/jobs/", body, format="json") for body in (train, run)]
    assert [answer.status_code for answer in queued] == [201, 201]
    do_set_pii_policy(team=team, rules={"race_ethnicity": "block"}, actor=owner)
    _scan(adult_version)

    for answer in queued:
        job_id = answer.json()["id"]
        assert execute_job(job_id) == "failed"
        job = Job.objects.get(pk=job_id)
        assert job.error == (
            f"refused when it started: {adult_version} holds personal data team {team.name}'s PII "
            "policy blocks: column 'race' (race_ethnicity)"
        )
        assert job.output_model_version_id is None


def test_a_nul_in_a_parquet_column_name_is_a_400_not_a_500(team, scientist, tmp_path, client_for):
    """A Parquet file may name a column with a NUL, which PostgreSQL's jsonb refuses: the
    registration stored it in the schema and answered 500."""
    import pandas as pd

    client = client_for(scientist)
    dataset = do_create_dataset(team=team, name="nul", actor=scientist)
    named = tmp_path / "named.parquet"
    pd.DataFrame({"email\x00": ["a@mail.example"] * 5}).to_parquet(named)
    with named.open("rb") as handle:
        answer = client.post(
            "/api/dataset-versions/", {"dataset": dataset.pk, "file": handle}, format="multipart"
        )
    assert answer.status_code == 400
    assert "named.parquet: its column names cannot be stored: text may not contain NUL characters" in str(
        answer.json()
    )
    assert not DatasetVersion.objects.exists()


def test_nul_in_parquet_cells_is_masked_away_not_a_failed_scan(team, scientist, tmp_path, client_for):
    """Cells with a NUL failed the scan (the masked examples kept it and jsonb refuses it), so a
    blocking policy refused the version for ever."""
    import pandas as pd

    dataset = do_create_dataset(team=team, name="nul", actor=scientist)
    cells = tmp_path / "cells.parquet"
    pd.DataFrame({"contact": [f"a{i}@mail.example\x00" for i in range(20)]}).to_parquet(cells)
    with cells.open("rb") as handle:
        answer = client_for(scientist).post(
            "/api/dataset-versions/", {"dataset": dataset.pk, "file": handle}, format="multipart"
        )
    assert answer.status_code == 201, answer.json()
    scan = _scan(DatasetVersion.objects.get())
    (finding,) = scan.report["findings"]
    assert (finding["column"], finding["kind"], finding["examples"][0]) == (
        "contact",
        "email",
        "a***@m***.example",
    )
