"""Hostile code uploads (issue 17): every unsafe or broken archive and MLproject is a 400 that
names the member or field, and nothing is stored, registered or audited."""

from __future__ import annotations

import io
import tarfile
import zipfile

import pytest

from governance.models import AuditEvent
from runners import codefiles
from runners.code_versions import do_create_code_project
from runners.models import CodeVersion
from tests.runners.code_helpers import FILES, MLPROJECT, tar_of, tar_with, upload, zip_of


@pytest.fixture
def project(team, scientist):
    return do_create_code_project(team=team, name="hostile", actor=scientist)


def _special(name: str, kind: bytes, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info


def _zip_member(name: str, mode: int, content: bytes = b"x") -> bytes:
    raw = io.BytesIO()
    with zipfile.ZipFile(raw, "w") as archive:
        for path, data in FILES.items():
            archive.writestr(path, data)
        info = zipfile.ZipInfo(name)
        info.external_attr = mode << 16
        archive.writestr(info, content)
    return raw.getvalue()


def _zip_bomb(size: int) -> bytes:
    """One member of ``size`` zero bytes: deflate makes it about a thousandth of that."""
    raw = io.BytesIO()
    with zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("MLproject", MLPROJECT)
        archive.writestr("train.py", b"\0" * size)
    return raw.getvalue()


def _alias_bomb(parameters: int, entry_points: int) -> str:
    """An MLproject whose ``entry_points`` all alias one mapping of ``parameters`` parameters."""
    declared = "".join(f"    p{i}: {{type: int, default: {i}}}\n" for i in range(parameters))
    aliases = "".join(f"  e{i}: *entry\n" for i in range(entry_points))
    return f"x: &entry\n  command: python train.py\n  parameters:\n{declared}entry_points:\n{aliases}"


def _lying_zip() -> bytes:
    """A member whose header declares 10 bytes but whose data inflates to 5 MB."""
    raw = io.BytesIO()
    with zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("train.py", b"\0" * 5_000_000)
    data = bytearray(raw.getvalue())
    # The declared size sits at offset 22 of the local header and 24 of the central one.
    local = data.index(b"PK\x03\x04")
    central = data.index(b"PK\x01\x02")
    data[local + 22 : local + 26] = (10).to_bytes(4, "little")
    data[central + 24 : central + 28] = (10).to_bytes(4, "little")
    return bytes(data)


def _duplicate_tar() -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as archive:
        for content in (b"print(1)\n", b"print(2)\n"):
            info = tarfile.TarInfo("train.py")
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    return raw.getvalue()


def _mlproject(text: str) -> bytes:
    return zip_of({**FILES, "MLproject": text.encode()})


HOSTILE = {
    "traversal": (
        tar_of({**FILES, "../evil.py": b"x"}),
        "archive member '../evil.py': a path outside the archive",
    ),
    "absolute": (tar_of({**FILES, "/etc/x": b"x"}), "archive member '/etc/x': a path outside the archive"),
    "zip traversal": (
        zip_of({**FILES, "../../evil.py": b"x"}),
        "archive member '../../evil.py': a path outside the archive",
    ),
    "windows drive": (
        zip_of({**FILES, "C:/evil.py": b"x"}),
        "archive member 'C:/evil.py': a path outside the archive",
    ),
    "symlink": (
        tar_with(_special("data", tarfile.SYMTYPE, "/etc/passwd")),
        "archive member 'data': links are not accepted",
    ),
    "hardlink": (
        tar_with(_special("copy", tarfile.LNKTYPE, "/etc/shadow")),
        "archive member 'copy': links are not accepted",
    ),
    "device": (
        tar_with(_special("disk", tarfile.BLKTYPE)),
        f"archive member 'disk': {codefiles.ONLY_FILES}",
    ),
    "fifo": (tar_with(_special("pipe", tarfile.FIFOTYPE)), f"archive member 'pipe': {codefiles.ONLY_FILES}"),
    "zip symlink": (
        _zip_member("link", 0o120777, b"/etc/passwd"),
        "archive member 'link': links are not accepted",
    ),
    "zip device": (_zip_member("disk", 0o060644), f"archive member 'disk': {codefiles.ONLY_FILES}"),
    "zip bomb": (_zip_bomb(3_000_000), "the archive unpacks to more than 1000000 bytes"),
    # zipfile stops at the declared size; the data's CRC then fails: nothing is inflated past it.
    "lying zip": (_lying_zip(), "the zip archive is damaged or unreadable: Bad CRC-32 for file 'train.py'"),
    "tar bomb": (
        tar_of({**FILES, "big.bin": b"\0" * 3_000_000}),
        "the archive unpacks to more than 1000000 bytes",
    ),
    "too many files": (
        zip_of({f"f{i}.py": b"" for i in range(codefiles.MAX_FILES + 1)}),
        f"the archive has more than {codefiles.MAX_FILES} files",
    ),
    "empty zip": (zip_of({}), "the archive holds no files"),
    "only tool files": (zip_of({"__pycache__/x.pyc": b"x"}), "the archive holds no files"),
    "not an archive": (b"#!/bin/sh\nrm -rf /\n", "not a .zip or .tar(.gz/.bz2/.xz) archive"),
    "truncated tar": (tar_of(FILES)[:200], "the archive is damaged: "),
    "duplicate member": (_duplicate_tar(), "archive member 'train.py' appears twice"),
    "file and folder": (zip_of({**FILES, "lib": b"x"}), "'lib' is both a file and a folder"),
    "yaml error": (_mlproject("entry_points: {main: [unclosed\n"), "MLproject: not readable YAML ("),
    "no entry points": (_mlproject("name: x\n"), "MLproject: needs an entry_points mapping"),
    "missing command": (
        _mlproject("entry_points:\n  main:\n    parameters: {a: float}\n"),
        "MLproject: entry_points.main: needs a command",
    ),
    "bad parameter type": (
        _mlproject("entry_points:\n  main:\n    command: python train.py {a}\n    parameters: {a: tensor}\n"),
        "MLproject: entry_points.main.parameters.a: type 'tensor' is not one of string, float, int, path,",
    ),
    "default of another type": (
        _mlproject(
            "entry_points:\n  main:\n    command: python train.py {a}\n"
            "    parameters: {a: {type: float, default: fast}}\n"
        ),
        "MLproject: entry_points.main.parameters.a.default: 'fast' is not a float",
    ),
    "undeclared placeholder": (
        _mlproject("entry_points:\n  main:\n    command: python train.py {epochs}\n"),
        "MLproject: entry_points.main.command: {epochs} names no declared parameter",
    ),
    "yaml aliases unfolding parameters": (
        _mlproject(_alias_bomb(codefiles.MAX_PARAMETERS + 1, 2)),
        f"MLproject: entry_points.e0.parameters: more than {codefiles.MAX_PARAMETERS}",
    ),
    "yaml aliases unfolding entry points": (
        _mlproject(_alias_bomb(1, codefiles.MAX_ENTRY_POINTS + 1)),
        f"MLproject: entry_points: more than {codefiles.MAX_ENTRY_POINTS}",
    ),
    "nul in a command": (
        _mlproject('entry_points: {main: {command: "python train.py \\0"}}\n'),
        "MLproject: entry_points.main.command: a NUL character",
    ),
    "nul in a default": (
        _mlproject(
            'entry_points: {main: {command: "python train.py {a}", '
            'parameters: {a: {type: string, default: "x\\0"}}}}\n'
        ),
        "MLproject: entry_points.main.parameters.a.default: a NUL character",
    ),
    "bidirectional control in an entry point's name": (
        _mlproject('entry_points: {"ma\\u202ein": {command: "python train.py"}}\n'),
        "MLproject: entry_points: 'ma\\u202ein' is not a name (1 to 100 printable characters)",
    ),
    "entry point name longer than a run may name": (
        _mlproject("entry_points: {" + "m" * 101 + ": {command: python train.py}}\n"),
        "MLproject: entry_points: '" + "m" * 100 + "' is not a name",
    ),
    "no entry point at all": (
        zip_of({"README.md": b"# hi\n"}),
        "no MLproject file and no top-level .py file to run",
    ),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_hostile_or_broken_archive_is_a_400_naming_what_is_wrong(
    settings, client_for, project, scientist, case
):
    settings.STEWARD_CODE_MAX_BYTES = 1_000_000
    data, message = HOSTILE[case]
    before = AuditEvent.objects.count()

    answer = upload(client_for(scientist), project.pk, data)

    assert answer.status_code == 400, answer.content
    [reason] = answer.json()["archive"]
    assert reason.startswith(message), reason
    assert CodeVersion.objects.count() == 0
    assert AuditEvent.objects.count() == before
    assert not (settings.ARTIFACT_ROOT / "code").exists()


def test_an_upload_larger_than_the_limit_is_refused_before_it_is_read(
    settings, client_for, project, scientist
):
    settings.STEWARD_CODE_MAX_BYTES = 1000

    answer = upload(client_for(scientist), project.pk, b"\x50" * 5000)

    assert answer.status_code == 400
    assert answer.json() == {"archive": ["the archive is larger than the limit of 1000 bytes"]}
    assert CodeVersion.objects.count() == 0


def test_a_folder_with_a_fifo_or_an_unreadable_file_is_refused(
    settings, client_for, project, scientist, tmp_path
):
    import os

    root = tmp_path / "root"
    settings.STEWARD_CODE_ROOTS = [root.resolve()]
    (root / "fifo").mkdir(parents=True)
    (root / "fifo" / "train.py").write_text("print(1)\n")
    os.mkfifo(root / "fifo" / "pipe")
    client = client_for(scientist)

    answer = client.post("/api/code-versions/", {"project": project.pk, "directory": "fifo"}, format="json")

    assert answer.status_code == 400
    assert answer.json() == {"directory": ["pipe: not a regular file"]}
    assert CodeVersion.objects.count() == 0


def test_unpack_refuses_a_folder_that_already_holds_something(tmp_path):
    """A planted link in the destination would redirect a write out of it."""
    destination = tmp_path / "run"
    destination.mkdir()
    (destination / "train.py").symlink_to(tmp_path / "elsewhere.py")

    with pytest.raises(codefiles.CodeError, match="is not empty"):
        codefiles.unpack(codefiles.pack(FILES).data, destination)
    assert not (tmp_path / "elsewhere.py").exists()


def test_a_folder_larger_than_the_limit_is_refused_before_its_files_are_read(
    settings, client_for, project, scientist, tmp_path
):
    root = tmp_path / "root"
    settings.STEWARD_CODE_ROOTS = [root.resolve()]
    settings.STEWARD_CODE_MAX_BYTES = 1000
    (root / "big").mkdir(parents=True)
    (root / "big" / "train.py").write_text("print(1)\n")
    with (root / "big" / "weights.bin").open("wb") as handle:
        handle.truncate(10 * 2**30)  # 10 GiB, sparse: reading it would take the test's memory

    answer = client_for(scientist).post(
        "/api/code-versions/", {"project": project.pk, "directory": "big"}, format="json"
    )

    assert answer.status_code == 400
    assert answer.json() == {"directory": ["the code is larger than 1000 bytes"]}
    assert CodeVersion.objects.count() == 0
