"""Helpers of the artifact-store tests (issue 12): fixtures ``keys`` (encryption on) and ``s3``
(moto's S3 emulator run as a server process: no S3 service can be installed here) are in
``tests/governance/conftest.py``; these register and read dataset versions."""

from __future__ import annotations

import shutil
from pathlib import Path

from governance.actions.datasets import do_register_dataset_version
from governance.models import DatasetVersion
from tests.conftest import BIKE_HOURLY


def register_version(dataset, scientist, path: Path = BIKE_HOURLY, name: str = "hour.csv") -> DatasetVersion:
    return do_register_dataset_version(
        dataset=dataset, file_path=path, filename=name, source=DatasetVersion.Source.PATH, actor=scientist
    )


def stored_path(settings, version: DatasetVersion) -> Path:
    """The object's bytes on the filesystem backend (ciphertext when encrypted)."""
    return Path(settings.ARTIFACT_ROOT) / version.file


def forget_copies(settings) -> None:
    """Drop this machine's decrypted copies, as a fresh worker would start."""
    shutil.rmtree(settings.STEWARD_ARTIFACT_CACHE, ignore_errors=True)


def download(client, version: DatasetVersion):
    return client.get(f"/api/dataset-versions/{version.pk}/download/")
