"""The hostile test of the daily sweep of killed writers' leftovers (issue 12,
``governance.storage.sweep_leftovers``): it deletes only what Steward's writers leave, never a
file a user named like one inside a stored model directory (the tree itself in direct mode, its
extracted copy in managed mode), and never a write under way."""

from __future__ import annotations

import os
import time
from datetime import timedelta
from pathlib import Path

import pytest

from governance import storage
from governance.actions.model_versions import do_register_model_version_from_artifact
from governance.actions.retention import apply_retention
from governance.artifacts import version_files
from governance.storage.envelope import Keyring

# A model folder whose own files carry the sweep's prefixes (nothing forbids these names).
MODEL_FILES = {
    "MLmodel": b"flavors: {}\n",
    ".scratch-notes.txt": b"the author's notes",
    ".incoming-data/part-0.bin": b"\x00\x01\x02",
    ".gathered-cache.json": b"{}",
}


def _age(root: Path, days: float = 2) -> None:
    """Every file and folder under ``root`` last modified ``days`` ago."""
    stamp = time.time() - days * 86400
    for item in root.rglob("*"):
        os.utime(item, (stamp, stamp), follow_symlinks=False)


@pytest.mark.parametrize("managed", [False, True], ids=["direct", "managed"])
def test_a_stored_model_directorys_own_files_survive_the_sweep(
    settings, registered_model, scientist, tmp_path, managed
):
    if managed:
        settings.STEWARD_ARTIFACT_KEYS = Keyring.new_entry("k1")
    folder = tmp_path / "upload" / "model"
    for relative, data in MODEL_FILES.items():
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        (folder / relative).write_bytes(data)
    version = do_register_model_version_from_artifact(
        model=registered_model, artifact_path=folder, source="a folder", actor=scientist
    )
    local = storage.local_path(version.artifact)  # direct: the stored tree; managed: its extracted copy
    assert sorted(name for name, _ in version_files(version)) == sorted(MODEL_FILES)
    for root in (Path(settings.ARTIFACT_ROOT), Path(settings.STEWARD_ARTIFACT_CACHE)):
        if root.exists():
            _age(root)
    # A real leftover beside the stored objects is still swept.
    leftover = local.parent / ".incoming-killed"
    leftover.write_bytes(b"half a copy")
    _age(local.parent)

    counts = apply_retention()

    assert counts["swept"] == 1
    assert not leftover.exists()
    for relative, data in MODEL_FILES.items():
        assert (local / relative).read_bytes() == data, relative
    assert sorted(name for name, _ in version_files(version)) == sorted(MODEL_FILES)


def test_the_sweep_leaves_fresh_leftovers_and_takes_old_ones_at_the_cache_root(settings):
    cache = Path(settings.STEWARD_ARTIFACT_CACHE)
    cache.mkdir(parents=True, exist_ok=True)
    fresh = cache / ".incoming-under-way"
    fresh.write_bytes(b"being written")
    old = cache / ".gathered-killed"
    (old / "model").mkdir(parents=True)
    (old / "model" / "MLmodel").write_bytes(b"plaintext")
    _age(old)
    stamp = time.time() - 2 * 86400
    os.utime(old, (stamp, stamp))

    assert storage.sweep_leftovers() == 1
    assert fresh.exists()
    assert not old.exists()
    # A day is the default; a shorter age is the caller's choice.
    assert storage.sweep_leftovers(timedelta(seconds=0)) == 1
