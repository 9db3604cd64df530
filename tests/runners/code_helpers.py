"""Archives of code for the code version tests: built in memory, member by member."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

MLPROJECT = """name: bike-demand
entry_points:
  main:
    parameters:
      epochs: {type: int, default: 3}
      lr: {type: float, default: 0.01}
      data: path
    command: "python train.py --epochs {epochs} --lr {lr} --data {data}"
  evaluate:
    command: "python evaluate.py"
"""

TRAIN = """import argparse

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int)
parser.add_argument("--lr", type=float)
parser.add_argument("--data")
args = parser.parse_args()
print("training for", args.epochs, "epochs")
"""

FILES: dict[str, bytes] = {
    "MLproject": MLPROJECT.encode(),
    "train.py": TRAIN.encode(),
    "evaluate.py": b"print('evaluating')\n",
    "lib/features.py": b"def scale(x):\n    return x / 10\n",
}


def zip_of(files: dict[str, bytes], top: str = "") -> bytes:
    raw = io.BytesIO()
    with zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in files.items():
            archive.writestr(f"{top}{name}", content)
    return raw.getvalue()


def tar_of(files: dict[str, bytes], top: str = "", mode: str = "w:gz") -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode=mode) as archive:
        for name, content in files.items():
            info = tarfile.TarInfo(f"{top}{name}")
            info.size = len(content)
            info.mtime = 1_700_000_000
            archive.addfile(info, io.BytesIO(content))
    return raw.getvalue()


def tar_with(member: tarfile.TarInfo, files: dict[str, bytes] = FILES) -> bytes:
    """``files`` plus one special ``member`` (a link, a device) with no data."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as archive:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
        archive.addfile(member)
    return raw.getvalue()


def write_tree(root: Path, files: dict[str, bytes]) -> Path:
    for name, content in files.items():
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
    return root


def upload(client, project_id: int, data: bytes, name: str = "code.zip", **extra):
    """POST an archive as multipart ``archive`` to /api/code-versions/."""
    handle = io.BytesIO(data)
    handle.name = name
    return client.post(
        "/api/code-versions/", {"project": project_id, "archive": handle, **extra}, format="multipart"
    )
