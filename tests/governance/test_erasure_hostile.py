"""The hostile test of erasing a dataset version with its protected copies (issue 12,
``governance.actions.datasets.do_erase_dataset_version``): a copy whose bytes another team also
registered, and the system's daily retention meeting a copy under legal hold or shared bytes.
Nothing is half-erased, another team's version is never named to whom may not see it, and a
legal hold is never broken by the system."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from governance import storage
from governance.actions.datasets import (
    do_create_dataset,
    do_erase_dataset_version,
    do_register_dataset_version,
)
from governance.actions.pii import do_set_pii_policy, run_pii_scan
from governance.actions.retention import apply_retention, do_set_legal_hold, do_set_retention_policy
from governance.models import AuditEvent, DatasetVersion, PiiScan
from runners.pii_protection import do_protect_dataset_version
from tests.conftest import ADULT

ADULT_RULES = {"race_ethnicity": "hash", "sex_gender": "mask", "native_country": "drop"}


@pytest.fixture
def source(keys, settings, team, owner, scientist, tmp_path) -> DatasetVersion:
    """A scanned sample of the adult data in ``team``, under a policy that protects it."""
    settings.STEWARD_PII_HASH_KEY = "test-key"
    do_set_pii_policy(team=team, rules=ADULT_RULES, actor=owner)
    sample = tmp_path / "adult-sample.csv"
    sample.write_text("".join(Path(ADULT).read_text().splitlines(keepends=True)[:200]))
    dataset = do_create_dataset(team=team, name="adult-sample", actor=scientist)
    version = do_register_dataset_version(
        dataset=dataset,
        file_path=sample,
        filename="a.csv",
        source=DatasetVersion.Source.PATH,
        actor=scientist,
    )
    assert run_pii_scan(PiiScan.objects.get(dataset_version=version).pk) == "done"
    return version


@pytest.fixture
def copy(source, scientist) -> DatasetVersion:
    made = do_protect_dataset_version(dataset_version=source, actor=scientist)
    assert made is not None
    return made


def _register_same_bytes(copy: DatasetVersion, team, user, tmp_path: Path) -> DatasetVersion:
    """Another version in ``team`` holding exactly the copy's bytes."""
    path = tmp_path / "same.csv"
    path.write_bytes(storage.local_path(copy.file).read_bytes())
    dataset = do_create_dataset(team=team, name="downloaded-copy", actor=user)
    return do_register_dataset_version(
        dataset=dataset, file_path=path, filename="same.csv", source=DatasetVersion.Source.PATH, actor=user
    )


def _live(*versions: DatasetVersion) -> list[bool]:
    return [DatasetVersion.objects.get(pk=v.pk).erased_at is None for v in versions]


def test_another_teams_copy_of_the_same_bytes_is_its_own_and_survives(
    source, copy, owner, outsider, other_team, client_for, tmp_path
):
    """The other team downloaded the protected copy and registered it: its own stored object
    (keys are per team), so the erasure neither waits for its managers, names it, nor destroys it."""
    theirs = _register_same_bytes(copy, other_team, outsider, tmp_path)
    assert theirs.sha256 == copy.sha256
    assert theirs.file != copy.file

    done = client_for(owner).post(
        f"/api/dataset-versions/{source.pk}/erase/", {"reason": "subject request"}, format="json"
    )

    assert done.status_code == 200, done.content
    assert "downloaded-copy" not in done.content.decode()
    assert _live(source, copy, theirs) == [False, False, True]
    events = {e.object_id: e.after for e in AuditEvent.objects.filter(action="dataset_version.erase")}
    assert set(events) == {str(source.pk), str(copy.pk)}
    assert events[str(copy.pk)]["protected_copy_of"] == source.pk
    assert client_for(outsider).get(f"/api/dataset-versions/{theirs.pk}/download/").status_code == 200


def test_a_copy_sharing_bytes_with_a_version_its_actor_may_not_manage_blocks_the_erasure(
    source, copy, team, owner, scientist, admin, client_for, tmp_path
):
    """A data scientist registered the copy's bytes as a dataset of its own (one stored object):
    who may not erase is refused with nothing erased; the team's manager erases all three."""
    ours = _register_same_bytes(copy, team, scientist, tmp_path)
    assert ours.file == copy.file
    refused = client_for(scientist).post(
        f"/api/dataset-versions/{source.pk}/erase/", {"reason": "subject request"}, format="json"
    )
    assert refused.status_code == 403, refused.content
    assert _live(source, copy, ours) == [True, True, True]

    done = client_for(owner).post(
        f"/api/dataset-versions/{source.pk}/erase/", {"reason": "subject request"}, format="json"
    )
    assert done.status_code == 200, done.content
    assert _live(source, copy, ours) == [False, False, False]
    events = {e.object_id: e.after for e in AuditEvent.objects.filter(action="dataset_version.erase")}
    assert {after["requested_version"] for after in events.values()} == {source.pk}
    assert "protected_copy_of" not in events[str(ours.pk)]


def test_the_system_never_erases_shared_bytes_through_a_copy(source, copy, team, scientist, tmp_path):
    ours = _register_same_bytes(copy, team, scientist, tmp_path)
    with pytest.raises(ValidationError):
        do_erase_dataset_version(dataset_version=source, reason="retention: 30 days", actor=None)
    assert _live(source, copy, ours) == [True, True, True]
    assert storage.local_path(ours.file).read_bytes()


def test_the_daily_retention_never_breaks_a_legal_hold_on_a_protected_copy(source, copy, team, owner):
    do_set_legal_hold(dataset_version=copy, reason="litigation 2026-17", actor=owner)
    do_set_retention_policy(team=team, rules={"datasets": {"delete_after_days": 30}}, actor=owner)

    counts = apply_retention(timezone.now() + timedelta(days=31))

    # The source is not erased alone (its copy would outlive it) nor with its held copy.
    assert counts["deleted"] == 0
    assert counts["skipped"] == 1
    assert _live(source, copy) == [True, True]
    assert storage.local_path(copy.file).read_bytes()
    # Its managers still may (the GDPR and the hold are theirs to weigh).
    do_erase_dataset_version(dataset_version=source, reason="subject request", actor=owner)
    assert _live(source, copy) == [False, False]
