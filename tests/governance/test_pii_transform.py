"""Protected copies under a team's PII policy (issue 12): ``mask``, ``hash`` and ``drop`` rules,
the derived dataset version jobs read instead of the one they name (its file, lineage edge and
audit event), keyed hashes that still join, and the refusals that stay (blocked findings, a copy
made under rules since tightened, evaluation jobs), through the API, the actions and the worker's
plain function on the adult census data and a small synthetic file."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

import pandas as pd
import pytest
from django.test import Client

from governance.actions.datasets import (
    do_create_dataset,
    do_erase_dataset_version,
    do_register_dataset_version,
)
from governance.actions.pii import do_set_pii_policy, hash_key, pii_gate, run_pii_scan
from governance.models import AuditEvent, DatasetVersion, PiiPolicy, PiiScan
from lineage.models import LineageEdge
from runners.actions import do_submit_job
from runners.execute import execute_job
from runners.joblog import whole_log
from runners.models import Job, JobKind
from runners.pii_protection import do_protect_dataset_version
from tests.conftest import ADULT, run_job
from tests.runners.code_fixtures import make_code_version

ADULT_RULES = {"race_ethnicity": "hash", "sex_gender": "mask", "native_country": "drop"}
TRAIN_SPEC = {"target": "label", "features": ["age", "hours-per-week"], "epochs": 1}


def _scanned(version: DatasetVersion) -> DatasetVersion:
    assert run_pii_scan(PiiScan.objects.get(dataset_version=version).pk) == "done"
    return version


def _frame(version: DatasetVersion) -> pd.DataFrame:
    return pd.read_csv(version.path, dtype=str, keep_default_na=False)


def _register(dataset, tmp_path: Path, actor, name: str, text: str) -> DatasetVersion:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return _scanned(
        do_register_dataset_version(
            dataset=dataset, file_path=path, filename=name, source="path", actor=actor
        )
    )


def test_managers_set_mask_hash_and_drop_rules_through_the_api(team, owner, client_for):
    url = f"/api/teams/{team.pk}/pii-policy/"
    rules = {**ADULT_RULES, "us_ssn": "block", "default": "allow"}

    answer = client_for(owner).put(url, {"rules": rules}, format="json")

    assert (answer.status_code, answer.json()["rules"]) == (200, rules)
    assert PiiPolicy.objects.get(team=team).rules == rules
    bad = client_for(owner).put(url, {"rules": {"email": "encrypt"}}, format="json")
    assert bad.json() == {"rules": ["email: 'encrypt' is not one of block, mask, hash, drop, allow"]}


def test_a_training_job_on_the_adult_data_trains_on_its_protected_copy(
    adult_version, registered_model, team, owner, scientist, settings
):
    settings.STEWARD_PII_HASH_KEY = "test-key"
    do_set_pii_policy(team=team, rules=ADULT_RULES, actor=owner)
    _scanned(adult_version)

    job = run_job(
        kind=JobKind.TRAIN,
        dataset_version=adult_version,
        registered_model=registered_model,
        spec=TRAIN_SPEC,
        actor=scientist,
    )

    copy = job.dataset_version
    assert (copy.dataset.name, copy.version, copy.source) == ("adult-protected", 1, "protected")
    assert (copy.protects, copy.pii_protection, copy.row_count) == (
        adult_version,
        {"race": "hash", "sex": "mask", "native-country": "drop"},
        32561,
    )
    original, protected = _frame(adult_version), _frame(copy)
    assert list(protected.columns) == [c for c in original.columns if c != "native-country"]
    assert set(protected["sex"]) == {"***"}
    white = hmac.new(b"test-key", b"White", hashlib.sha256).hexdigest()
    assert (protected["race"] == white).sum() == (original["race"] == " White").sum() == 27816
    assert protected["race"].nunique() == original["race"].nunique() == 5
    # The other columns are the file's text, unchanged.
    assert protected["age"].equals(original["age"])
    assert protected["label"].equals(original["label"])
    # Lineage: source -derived-> copy -input-> job -output-> model version.
    assert LineageEdge.objects.filter(
        source_type="dataset_version",
        source_id=adult_version.pk,
        target_type="dataset_version",
        target_id=copy.pk,
        relation="derived",
    ).exists()
    assert LineageEdge.objects.filter(
        source_type="dataset_version",
        source_id=copy.pk,
        target_type="job",
        target_id=job.pk,
        relation="input",
    ).exists()
    assert job.output_model_version.training_dataset_version == copy
    event = AuditEvent.objects.get(action="dataset_version.protect")
    assert (event.actor, event.object_id, event.team_id) == (scientist, str(copy.pk), team.pk)
    assert event.after == {
        "protects": adult_version.pk,
        "source": "adult v1",
        "pii_protection": {"race": "hash", "sex": "mask", "native-country": "drop"},
        "kinds": {"race": "race_ethnicity", "sex": "sex_gender", "native-country": "native_country"},
        "sha256": copy.sha256,
    }
    assert (
        "reads adult-protected v1, the protected copy of adult v1 under team Mobility's PII policy "
        "(column 'native-country' (drop); column 'race' (hash); column 'sex' (mask))"
    ) in "".join(whole_log(job.pk))
    browser = Client()
    browser.force_login(scientist)
    source_page = browser.get(f"/dataset-versions/{adult_version.pk}/").content.decode()
    assert (
        "Jobs on it read its protected copy, as the team's PII policy asks: column &#x27;native"
        in source_page
    )
    assert "Training and inference refused" not in source_page
    copy_page = browser.get(f"/dataset-versions/{copy.pk}/").content.decode()
    assert f'A protected copy of <a href="/dataset-versions/{adult_version.pk}/">adult v1</a>' in copy_page
    # The next job on the same version reads the same copy: none is made twice.
    again = do_submit_job(
        kind=JobKind.TRAIN,
        dataset_version=adult_version,
        registered_model=registered_model,
        spec=TRAIN_SPEC,
        actor=scientist,
    )
    assert again.dataset_version == copy
    assert DatasetVersion.objects.filter(protects=adult_version).count() == 1
    assert AuditEvent.objects.filter(action="dataset_version.protect").count() == 1


def test_hashes_are_keyed_and_stable_so_two_protected_versions_still_join(team, owner, scientist, tmp_path):
    dataset = do_create_dataset(team=team, name="customers", actor=scientist)
    emails = [f"person{i}@example.org" for i in range(30)]
    first = _register(
        dataset,
        tmp_path,
        scientist,
        "customers.csv",
        "id,email,ssn,amount\n"
        + "".join(f"{i},{email},078-05-{1120 + i},{i * 10}\n" for i, email in enumerate(emails)),
    )
    # The second file: the last 20 customers again, with 10 new ones, in another order.
    later = emails[10:] + [f"new{i}@example.org" for i in range(10)]
    second = _register(
        dataset,
        tmp_path,
        scientist,
        "customers-2.csv",
        "id,email,ssn,amount\n"
        + "".join(f"{100 + i},{email},219-09-{1000 + i},{i}\n" for i, email in enumerate(reversed(later))),
    )
    do_set_pii_policy(team=team, rules={"email": "hash", "us_ssn": "mask"}, actor=owner)

    copies = [do_protect_dataset_version(dataset_version=v, actor=scientist) for v in (first, second)]

    assert [c.pii_protection for c in copies] == [{"email": "hash", "ssn": "mask"}] * 2
    one, two = (_frame(c) for c in copies)
    assert set(one["ssn"]) == set(two["ssn"]) == {"***-**-****"}
    assert not set(one["email"]) & set(emails)
    joined = one.merge(two, on="email")
    assert len(joined) == 20
    assert sorted(joined["id_x"].astype(int)) == list(range(10, 30))
    # Both copies sit in the sibling dataset, one version each, each joined to its source.
    assert [(c.dataset.name, c.version, c.protects) for c in copies] == [
        ("customers-protected", 1, first),
        ("customers-protected", 2, second),
    ]
    assert LineageEdge.objects.filter(relation="derived").count() == 2


def test_blocked_findings_are_still_refused_and_no_copy_is_made(
    adult_version, registered_model, team, owner, scientist, client_for
):
    do_set_pii_policy(team=team, rules={"race_ethnicity": "block", "sex_gender": "mask"}, actor=owner)
    _scanned(adult_version)
    body = {
        "kind": "train",
        "dataset_version": adult_version.pk,
        "registered_model": registered_model.pk,
        "spec": TRAIN_SPEC,
    }

    refused = client_for(scientist).post("/api/jobs/", body, format="json")

    assert (refused.status_code, refused.json()) == (
        400,
        {
            "dataset_version": [
                f"{adult_version} holds personal data team {team.name}'s PII policy blocks: "
                "column 'race' (race_ethnicity)"
            ]
        },
    )
    assert not Job.objects.exists()
    assert not DatasetVersion.objects.filter(protects__isnull=False).exists()
    assert not AuditEvent.objects.filter(action="dataset_version.protect").exists()


def test_a_spec_naming_a_dropped_column_is_refused_on_the_copy(
    adult_version, registered_model, team, owner, scientist, client_for
):
    do_set_pii_policy(team=team, rules={"native_country": "drop"}, actor=owner)
    _scanned(adult_version)
    spec = {**TRAIN_SPEC, "features": ["age", "native-country"], "categorical": ["native-country"]}
    body = {"kind": "train", "dataset_version": adult_version.pk, "registered_model": registered_model.pk}

    refused = client_for(scientist).post("/api/jobs/", {**body, "spec": spec}, format="json")

    assert refused.status_code == 400
    message = refused.json()["dataset_version"][0]
    assert message.startswith("on adult-protected v1, the protected copy jobs read: ")
    assert "native-country" in message
    # The refused submission made nothing: the copy rolled back with it.
    assert not DatasetVersion.objects.filter(protects__isnull=False).exists()
    assert not Job.objects.exists()


def test_a_copy_made_under_rules_since_tightened_is_refused_when_the_job_starts(
    adult_version, registered_model, team, owner, scientist
):
    do_set_pii_policy(team=team, rules={"sex_gender": "hash"}, actor=owner)
    _scanned(adult_version)
    job = do_submit_job(
        kind=JobKind.TRAIN,
        dataset_version=adult_version,
        registered_model=registered_model,
        spec=TRAIN_SPEC,
        actor=scientist,
    )
    copy = job.dataset_version
    # Mask is stricter than hash: a copy masked before still serves a policy that hashes.
    do_set_pii_policy(team=team, rules={"sex_gender": "drop"}, actor=owner)

    assert execute_job(job.pk) == "failed"

    job.refresh_from_db()
    assert job.error == (
        f"refused when it started: {copy} was protected under older rules (column 'sex' (hash)); "
        f"team {team.name}'s PII policy now asks for column 'sex' (drop): submit the job on "
        f"{adult_version} to read a current protected copy"
    )
    # Submitting again makes the copy the policy asks for now.
    newer = do_submit_job(
        kind=JobKind.TRAIN,
        dataset_version=adult_version,
        registered_model=registered_model,
        spec=TRAIN_SPEC,
        actor=scientist,
    ).dataset_version
    assert (newer.version, newer.pii_protection) == (2, {"sex": "drop"})
    assert "sex" not in _frame(newer).columns


def test_the_source_itself_is_refused_at_start_once_the_policy_protects_it(
    adult_version, registered_model, team, owner, scientist
):
    """A job queued before the policy named a protection reads the raw file no more."""
    _scanned(adult_version)
    job = do_submit_job(
        kind=JobKind.TRAIN,
        dataset_version=adult_version,
        registered_model=registered_model,
        spec=TRAIN_SPEC,
        actor=scientist,
    )
    assert job.dataset_version == adult_version
    do_set_pii_policy(team=team, rules={"race_ethnicity": "mask"}, actor=owner)

    assert execute_job(job.pk) == "failed"

    job.refresh_from_db()
    assert job.error == (
        f"refused when it started: {adult_version} holds personal data team {team.name}'s PII "
        "policy protects: column 'race' (mask); jobs read its protected copy (submit the job again "
        "to use it)"
    )


@pytest.fixture
def adult_classifier(adult_version, registered_model, scientist):
    """A classifier trained by a real job on the adult data, before any policy."""
    return run_job(
        kind=JobKind.TRAIN,
        dataset_version=adult_version,
        registered_model=registered_model,
        spec={**TRAIN_SPEC, "task": "classification"},
        actor=scientist,
    ).output_model_version


def test_evaluation_jobs_obey_the_policy(adult_classifier, adult_version, team, owner, scientist, client_for):
    """Evaluations read the data like training does: they were not refused on blocked data."""
    _scanned(adult_version)
    body = {
        "kind": "evaluate",
        "model_version": adult_classifier.pk,
        "dataset_version": adult_version.pk,
        "spec": {
            "task": "classification",
            "target": "label",
            "positive_label": " >50K",
            "sensitive_attributes": ["race"],
            "bootstrap_resamples": 50,
            "importance_repeats": 1,
            "importance_max_rows": 1000,
        },
    }
    do_set_pii_policy(team=team, rules={"race_ethnicity": "block"}, actor=owner)
    client = client_for(scientist)

    refused = client.post("/api/jobs/", body, format="json")

    assert refused.json() == {
        "dataset_version": [
            f"{adult_version} holds personal data team {team.name}'s PII policy blocks: "
            "column 'race' (race_ethnicity)"
        ]
    }
    assert not Job.objects.filter(kind=JobKind.EVALUATE).exists()
    do_set_pii_policy(team=team, rules={"race_ethnicity": "hash"}, actor=owner)
    accepted = client.post("/api/jobs/", body, format="json")
    assert accepted.status_code == 201
    copy = DatasetVersion.objects.get(protects=adult_version)
    assert accepted.json()["dataset_version"] == copy.pk
    assert copy.pii_protection == {"race": "hash"}


def test_managers_set_the_policy_on_its_page_and_others_only_read_it(team, owner, viewer, outsider):
    url = f"/people/teams/{team.pk}/pii-policy/"
    browser = Client()
    browser.force_login(owner)
    assert 'name="race_ethnicity"' in browser.get(url).content.decode()

    done = browser.post(url, {"default": "allow", "race_ethnicity": "hash", "us_ssn": "block", "email": ""})

    assert (done.status_code, done["Location"]) == (302, url)
    assert PiiPolicy.objects.get(team=team).rules == {
        "default": "allow",
        "race_ethnicity": "hash",
        "us_ssn": "block",
    }
    page = browser.get(url).content.decode()
    assert "<td><code>race_ethnicity</code></td><td>hash</td>" in page
    assert 'name="us_ssn"' in page
    reader = Client()
    reader.force_login(viewer)
    shown = reader.get(url).content.decode()
    assert "<td><code>us_ssn</code></td><td>block</td>" in shown
    assert 'name="us_ssn"' not in shown  # no form for a viewer
    assert reader.post(url, {"default": "block"}).status_code == 403
    assert PiiPolicy.objects.get(team=team).rules["default"] == "allow"
    assert AuditEvent.objects.filter(action="pii_policy.set").count() == 1
    stranger = Client()
    stranger.force_login(outsider)
    assert stranger.get(url).status_code == 404


def test_a_code_run_is_given_the_protected_copy_of_its_input(team, owner, scientist, tmp_path, client_for):
    dataset = do_create_dataset(team=team, name="people", actor=scientist)
    rows = "".join(f"{i},person{i}@example.org,078-05-{1120 + i}\n" for i in range(20))
    version = _register(dataset, tmp_path, scientist, "people.csv", "id,email,ssn\n" + rows)
    do_set_pii_policy(team=team, rules={"email": "hash", "us_ssn": "drop"}, actor=owner)
    code = make_code_version(
        team,
        scientist,
        {"probe.py": "print(1)", "MLproject": "entry_points: {main: {command: python probe.py}}"},
    )
    body = {"kind": "code", "code_version": code.pk, "entry_point": "main", "inputs": {"people": version.pk}}

    answer = client_for(scientist).post("/api/jobs/", body, format="json")

    assert answer.status_code == 201
    job = Job.objects.get(pk=answer.json()["id"])
    copy = DatasetVersion.objects.get(protects=version)
    assert [(link.name, link.dataset_version) for link in job.datasets.all()] == [("people", copy)]
    assert job.spec["inputs"] == {"people": copy.pk}
    assert list(_frame(copy).columns) == ["id", "email"]


def test_the_promotion_gate_passes_a_model_of_the_copy_and_fails_one_of_the_raw_data(
    adult_version, team, owner, scientist
):
    do_set_pii_policy(team=team, rules={"sex_gender": "mask"}, actor=owner)
    _scanned(adult_version)
    copy = do_protect_dataset_version(dataset_version=adult_version, actor=scientist)

    assert pii_gate(adult_version) == (
        False,
        "adult v1 holds personal data its team's PII policy protects (column 'sex' (mask)): the model "
        "read it unprotected; train on the protected copy",
    )
    assert pii_gate(copy) == (
        True,
        "adult-protected v1 is the protected copy of adult v1 (column 'sex' (mask)) its team's policy "
        "asks for",
    )
    do_set_pii_policy(team=team, rules={"sex_gender": "block"}, actor=owner)
    assert pii_gate(copy) == (
        False,
        f"adult v1 holds personal data team {team.name}'s PII policy blocks: column 'sex' (sex_gender)",
    )


def test_the_hash_key_is_the_setting_or_derived_from_the_secret_key(settings):
    settings.STEWARD_PII_HASH_KEY = ""
    settings.SECRET_KEY = "one-secret"
    prk = hmac.new(b"steward.pii", b"one-secret", hashlib.sha256).digest()
    derived = hmac.new(prk, b"pii hash key\x01", hashlib.sha256).digest()

    assert hash_key() == derived  # HKDF-SHA256 (RFC 5869), not the secret key itself
    settings.SECRET_KEY = "another-secret"
    assert hash_key() != derived
    settings.STEWARD_PII_HASH_KEY = "explicit"
    assert hash_key() == b"explicit"


def test_erasing_a_version_erases_its_protected_copy_and_the_system_may_too(
    keys, adult_version, team, owner, scientist, client_for, settings, tmp_path
):
    settings.STEWARD_PII_HASH_KEY = "test-key"
    do_set_pii_policy(team=team, rules=ADULT_RULES, actor=owner)
    copy = do_protect_dataset_version(dataset_version=_scanned(adult_version), actor=scientist)
    assert copy is not None
    assert client_for(scientist).get(f"/api/dataset-versions/{copy.pk}/download/").status_code == 200

    answer = client_for(owner).post(
        f"/api/dataset-versions/{adult_version.pk}/erase/", {"reason": "subject request"}, format="json"
    )

    assert answer.status_code == 200, answer.content
    copy.refresh_from_db()
    assert copy.erased_at is not None
    assert copy.erasure_reason == "subject request"
    # The copy's own data key is destroyed: its bytes are gone for every reader.
    gone = client_for(scientist).get(f"/api/dataset-versions/{copy.pk}/download/")
    assert gone.status_code == 410, gone.content
    events = {
        event.object_id: event.after for event in AuditEvent.objects.filter(action="dataset_version.erase")
    }
    assert set(events) == {str(adult_version.pk), str(copy.pk)}
    assert events[str(copy.pk)]["protected_copy_of"] == adult_version.pk
    assert events[str(copy.pk)]["requested_version"] == adult_version.pk
    assert "protected_copy_of" not in events[str(adult_version.pk)]

    # The system (a retention policy) erases a version's protected copy with it as well.
    sample = tmp_path / "adult-sample.csv"
    sample.write_text("".join(Path(ADULT).read_text().splitlines(keepends=True)[:300]))
    dataset = do_create_dataset(team=team, name="adult-sample", actor=scientist)
    again = _scanned(
        do_register_dataset_version(
            dataset=dataset, file_path=sample, filename="a.csv", source="path", actor=scientist
        )
    )
    second_copy = do_protect_dataset_version(dataset_version=again, actor=scientist)
    assert second_copy is not None
    do_erase_dataset_version(dataset_version=again, reason="retention: delete after 30 days", actor=None)
    second_copy.refresh_from_db()
    assert second_copy.erased_at is not None
    assert second_copy.erased_by is None
