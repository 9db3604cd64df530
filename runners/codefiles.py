"""Code versions' files (issue 17): packing, safe unpacking and the ``MLproject`` file. No Django.

A code version is stored as one canonical archive: a gzipped tar of its regular files, sorted by
path, with fixed owner, mode and time, so the same files always give the same bytes and sha256,
whether they came as a zip, a tar or a directory. Uploaded archives are unpacked into a fresh
folder with every member checked first (no absolute paths, no ``..``, no links or devices, size
and count bounded), then packed canonically.

``MLproject`` follows MLflow Projects' convention: ``entry_points: {name: {command, parameters:
{name: {type, default} | type}}}``, parameter types ``string``, ``float``, ``path``, ``uri``
(and ``int``). Without an ``MLproject``, each top-level ``.py`` file is an entry point named
after it, run as ``python <file>`` (MLflow's rule for ``-e script.py``).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import shlex
import stat
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

MAX_FILES = 5000
# Folders and files that are the tools' and not the code's.
SKIPPED_PARTS = frozenset({"__pycache__", ".git", ".hg", ".svn", ".ipynb_checkpoints", ".mypy_cache"})
SKIPPED_SUFFIXES = (".pyc", ".pyo")
PARAMETER_TYPES = ("string", "float", "int", "path", "uri")


class CodeError(ValueError):
    """The code cannot be a code version; the message names the file or field."""


@dataclass(frozen=True)
class Packed:
    """A canonical archive: ``data`` (tar.gz bytes), its hex ``sha256`` and the manifest
    ``files`` ([{path, size, sha256}] sorted by path)."""

    data: bytes
    sha256: str
    files: list[dict[str, Any]]


def _skipped(relative: PurePosixPath) -> bool:
    return any(part in SKIPPED_PARTS for part in relative.parts) or relative.name.endswith(SKIPPED_SUFFIXES)


def collect(root: Path, max_bytes: int) -> dict[str, bytes]:
    """The regular files under ``root`` as {posix relative path: bytes}, skipping tool folders.

    Raises CodeError for a symbolic link leading out of ``root``, a special file, more than
    ``MAX_FILES`` files or more than ``max_bytes`` in all.
    """
    root = root.resolve()
    if not root.is_dir():
        raise CodeError(f"{root} is not a directory")
    found: dict[str, bytes] = {}
    total = 0
    for path in sorted(root.rglob("*")):
        relative = PurePosixPath(path.relative_to(root).as_posix())
        if _skipped(relative):
            continue
        if path.is_symlink():
            target = path.resolve()
            if not target.is_relative_to(root):
                raise CodeError(f"{relative}: a symbolic link out of the code's folder")
        mode = path.stat().st_mode
        if stat.S_ISDIR(mode):
            continue
        if not stat.S_ISREG(mode):
            raise CodeError(f"{relative}: not a regular file")
        data = path.read_bytes()
        total += len(data)
        if total > max_bytes:
            raise CodeError(f"the code is larger than {max_bytes} bytes")
        found[str(relative)] = data
        if len(found) > MAX_FILES:
            raise CodeError(f"the code has more than {MAX_FILES} files")
    if not found:
        raise CodeError("the code has no files")
    return found


def pack(files: dict[str, bytes]) -> Packed:
    """The canonical archive of ``files`` ({posix relative path: bytes})."""
    raw = io.BytesIO()
    # mtime=0 in the gzip header too: the same files, the same bytes.
    with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz, tarfile.open(fileobj=gz, mode="w") as tar:
        for name in sorted(files):
            info = tarfile.TarInfo(name)
            info.size = len(files[name])
            info.mode = 0o644
            info.mtime = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(files[name]))
    data = raw.getvalue()
    manifest = [
        {"path": name, "size": len(files[name]), "sha256": hashlib.sha256(files[name]).hexdigest()}
        for name in sorted(files)
    ]
    return Packed(data, hashlib.sha256(data).hexdigest(), manifest)


def _checked_member(name: str) -> str:
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or not path.parts:
        raise CodeError(f"archive member {name!r}: a path outside the archive")
    return str(path)


def read_archive(data: bytes, max_bytes: int) -> dict[str, bytes]:
    """The files of an uploaded ``.zip`` or ``.tar[.gz|.bz2|.xz]`` as {posix path: bytes}.

    A single top-level folder holding everything is taken off (``project/MLproject`` ->
    ``MLproject``), as archives of a folder usually have one. Raises CodeError naming the member
    for an absolute or ``..`` path, a link or device, too many files or bytes (``max_bytes``
    unpacked), or an archive that is neither.
    """
    files: dict[str, bytes] = {}

    def add(name: str, content: bytes) -> None:
        relative = _checked_member(name)
        if _skipped(PurePosixPath(relative)):
            return
        if relative in files:
            raise CodeError(f"archive member {name!r} appears twice")
        files[relative] = content
        if len(files) > MAX_FILES:
            raise CodeError(f"the archive has more than {MAX_FILES} files")

    total = 0
    if zipfile.is_zipfile(io.BytesIO(data)):
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            for info in archive.infolist():
                if info.is_dir():
                    continue
                if stat.S_ISLNK(info.external_attr >> 16):
                    raise CodeError(f"archive member {info.filename!r}: links are not accepted")
                total += info.file_size
                if total > max_bytes:
                    raise CodeError(f"the archive unpacks to more than {max_bytes} bytes")
                add(info.filename, archive.read(info))
    else:
        try:
            tar = tarfile.open(fileobj=io.BytesIO(data), mode="r:*")  # noqa: SIM115 - closed below
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise CodeError("not a .zip or .tar(.gz/.bz2/.xz) archive") from exc
        with tar:
            try:
                for member in tar:
                    if member.isdir():
                        continue
                    if not member.isfile():
                        raise CodeError(f"archive member {member.name!r}: only regular files are accepted")
                    total += member.size
                    if total > max_bytes:
                        raise CodeError(f"the archive unpacks to more than {max_bytes} bytes")
                    extracted = tar.extractfile(member)
                    add(member.name, extracted.read() if extracted else b"")
            except (tarfile.TarError, EOFError, OSError, zlib_error()) as exc:
                raise CodeError(f"the archive is damaged: {exc}") from exc
    if not files:
        raise CodeError("the archive holds no files")
    tops = {name.split("/", 1)[0] for name in files}
    if len(tops) == 1 and all("/" in name for name in files):
        (top,) = tops
        files = {name[len(top) + 1 :]: content for name, content in files.items()}
    return files


def zlib_error() -> type[Exception]:
    import zlib

    return zlib.error


def unpack(data: bytes, destination: Path) -> None:
    """Write the canonical archive ``data`` (from ``pack``) into ``destination`` (created)."""
    files = read_archive(data, max_bytes=2**40)
    destination.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        target = destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)


def entry_points(files: dict[str, bytes]) -> dict[str, dict[str, Any]]:
    """The entry points of the code: ``{name: {"command", "parameters": {name: {"type",
    "default"}}}}`` from ``MLproject``, else one per top-level ``.py`` file.

    Raises CodeError naming the field of ``MLproject`` that is wrong.
    """
    if "MLproject" not in files:
        found = {
            name: {"command": f"python {shlex.quote(name)}", "parameters": {}}
            for name in sorted(files)
            if "/" not in name and name.endswith(".py")
        }
        if not found:
            raise CodeError("no MLproject file and no top-level .py file to run")
        return found
    try:
        project = yaml.safe_load(files["MLproject"].decode("utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise CodeError(f"MLproject: not readable YAML ({exc})") from exc
    if not isinstance(project, dict) or not isinstance(project.get("entry_points"), dict):
        raise CodeError("MLproject: needs an entry_points mapping")
    found = {}
    for name, raw in project["entry_points"].items():
        if not isinstance(raw, dict) or not isinstance(raw.get("command"), str) or not raw["command"].strip():
            raise CodeError(f"MLproject: entry_points.{name}: needs a command")
        parameters = {}
        for pname, spec in (raw.get("parameters") or {}).items():
            if isinstance(spec, str):
                spec = {"type": spec}
            if not isinstance(spec, dict):
                raise CodeError(f"MLproject: entry_points.{name}.parameters.{pname}: a type or a mapping")
            ptype = spec.get("type", "string")
            if ptype not in PARAMETER_TYPES:
                raise CodeError(
                    f"MLproject: entry_points.{name}.parameters.{pname}: type {ptype!r} is not one of "
                    f"{', '.join(PARAMETER_TYPES)}"
                )
            parameters[str(pname)] = {"type": ptype, "default": spec.get("default")}
        found[str(name)] = {"command": raw["command"], "parameters": parameters}
    if not found:
        raise CodeError("MLproject: entry_points is empty")
    return found
