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

import difflib
import gzip
import hashlib
import io
import lzma
import math
import os
import re
import shlex
import stat
import tarfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

MAX_FILES = 5000
# Folders and files that are the tools' and not the code's.
SKIPPED_PARTS = frozenset({"__pycache__", ".git", ".hg", ".svn", ".ipynb_checkpoints", ".mypy_cache"})
SKIPPED_SUFFIXES = (".pyc", ".pyo")
PARAMETER_TYPES = ("string", "float", "int", "path", "uri")
# YAML aliases repeat a mapping for free: without these bounds a 100 KB MLproject whose entry points
# all alias one mapping of 2,000 parameters unfolded into 4 million of them (168 MB of JSON, 12 s).
MAX_ENTRY_POINTS = 100
MAX_PARAMETERS = 100
# A run names its entry point in at most this many characters (the jobs API's field).
ENTRY_POINT_MAX_CHARS = 100


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

    Tool folders (``SKIPPED_PARTS``) are not even walked. A symbolic link to a file inside
    ``root`` is read as that file; a linked folder is not followed. Raises CodeError naming the
    file for a symbolic link leading out of ``root``, a special file (fifo, device, socket), a
    file that cannot be read, more than ``MAX_FILES`` files or more than ``max_bytes`` in all.
    """
    root = root.resolve()
    if not root.is_dir():
        raise CodeError(f"{root} is not a directory")
    found: dict[str, bytes] = {}
    total = 0
    for folder, dirs, names in os.walk(root):
        here = Path(folder)
        # Pruned in place: os.walk then never enters .git or __pycache__.
        dirs[:] = sorted(name for name in dirs if name not in SKIPPED_PARTS)
        for name in sorted(names):
            path = here / name
            relative = PurePosixPath(path.relative_to(root).as_posix())
            if _skipped(relative):
                continue
            if path.is_symlink():
                target = path.resolve()
                if not target.is_relative_to(root):
                    raise CodeError(f"{relative}: a symbolic link out of the code's folder")
                if target.is_dir():
                    continue
            try:
                info = path.stat()
                if not stat.S_ISREG(info.st_mode):
                    raise CodeError(f"{relative}: not a regular file")
                # Refused before reading: a huge file in a root must not be loaded to find out.
                if total + info.st_size > max_bytes:
                    raise CodeError(f"the code is larger than {max_bytes} bytes")
                with path.open("rb") as handle:
                    data = handle.read(max_bytes - total + 1)
            except OSError as exc:
                raise CodeError(f"{relative}: cannot be read ({exc.strerror or exc})") from exc
            total += len(data)
            if total > max_bytes:  # the file grew while being read
                raise CodeError(f"the code is larger than {max_bytes} bytes")
            found[str(relative)] = data
            if len(found) > MAX_FILES:
                raise CodeError(f"the code has more than {MAX_FILES} files")
    if not found:
        raise CodeError("the code has no files")
    _check_layout(found)
    return found


def _check_layout(files: dict[str, bytes]) -> None:
    """Refuse a file whose path is also a folder of another file (``a`` and ``a/b``): such code
    cannot be written back to disk."""
    folders = {str(parent) for name in files for parent in PurePosixPath(name).parents if str(parent) != "."}
    clash = sorted(folders & set(files))
    if clash:
        raise CodeError(f"{clash[0]!r} is both a file and a folder")


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
    # "C:/x" is absolute on Windows, where a user may unpack the code too.
    if path.is_absolute() or ".." in path.parts or not path.parts or re.match(r"^[A-Za-z]:", name):
        raise CodeError(f"archive member {name[:200]!r}: a path outside the archive")
    if "\0" in name:
        raise CodeError(f"archive member {name[:200]!r}: a NUL character in its name")
    return str(path)


def read_archive(data: bytes, max_bytes: int, *, strip_top: bool = True) -> dict[str, bytes]:
    """The files of an uploaded ``.zip`` or ``.tar[.gz|.bz2|.xz]`` as {posix path: bytes}.

    With ``strip_top`` (uploads), a single top-level folder holding everything is taken off
    (``project/MLproject`` -> ``MLproject``), as archives of a folder usually have one; a stored
    canonical archive is read without it. Raises CodeError naming the member for an absolute or
    ``..`` path, a link, device or fifo, a member twice, a file that is also a folder, more than
    ``MAX_FILES`` files or ``max_bytes`` unpacked (counted while decompressing: the sizes an
    archive declares are not trusted), an archive with no file, or bytes that are neither.
    """
    files: dict[str, bytes] = {}
    budget = [max_bytes]
    members = [0]

    def add(name: str, reader: Any) -> None:
        members[0] += 1
        if members[0] > MAX_MEMBERS:
            raise CodeError(f"the archive has more than {MAX_MEMBERS} members")
        relative = _checked_member(name)
        content = _read_bounded(reader, budget, max_bytes)
        if _skipped(PurePosixPath(relative)):
            return
        if relative in files:
            raise CodeError(f"archive member {name[:200]!r} appears twice")
        files[relative] = content
        if len(files) > MAX_FILES:
            raise CodeError(f"the archive has more than {MAX_FILES} files")

    if zipfile.is_zipfile(io.BytesIO(data)):
        _read_zip(data, add)
    else:
        _read_tar(data, add, max_bytes)
    if not files:
        raise CodeError("the archive holds no files")
    tops = {name.split("/", 1)[0] for name in files}
    if strip_top and len(tops) == 1 and all("/" in name for name in files):
        (top,) = tops
        files = {name[len(top) + 1 :]: content for name, content in files.items()}
    _check_layout(files)
    return files


ONLY_FILES = "only regular files are accepted (no devices, fifos or sockets)"
# Members of any kind (folders and skipped files included) an archive may hold.
MAX_MEMBERS = 2 * MAX_FILES
_CHUNK = 1024 * 1024
_DAMAGED = (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError, zlib.error, lzma.LZMAError)


def _read_bounded(reader: Any, budget: list[int], max_bytes: int) -> bytes:
    """All of ``reader`` (a file object), taking its size from ``budget[0]``; CodeError past it."""
    parts = []
    while chunk := reader.read(min(_CHUNK, budget[0] + 1)):
        budget[0] -= len(chunk)
        if budget[0] < 0:
            raise CodeError(f"the archive unpacks to more than {max_bytes} bytes")
        parts.append(chunk)
    return b"".join(parts)


def _read_zip(data: bytes, add: Any) -> None:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            infos = archive.infolist()
            if len(infos) > MAX_MEMBERS:
                raise CodeError(f"the archive has more than {MAX_MEMBERS} members")
            for info in infos:
                if info.is_dir():
                    continue
                # The Unix mode sits in the high 16 bits of external_attr (0 when written elsewhere).
                kind = stat.S_IFMT(info.external_attr >> 16)
                if stat.S_ISLNK(kind):
                    raise CodeError(f"archive member {info.filename[:200]!r}: links are not accepted")
                if kind and not stat.S_ISREG(kind):
                    raise CodeError(f"archive member {info.filename[:200]!r}: {ONLY_FILES}")
                _checked_member(info.filename)
                with archive.open(info) as reader:
                    add(info.filename, reader)
    except CodeError:
        raise
    except (*_DAMAGED, RuntimeError, NotImplementedError) as exc:
        # RuntimeError: an encrypted member; NotImplementedError: a compression zipfile lacks.
        raise CodeError(f"the zip archive is damaged or unreadable: {_reason(exc)}") from exc


def _read_tar(data: bytes, add: Any, max_bytes: int) -> None:
    try:
        tar = tarfile.open(fileobj=io.BytesIO(data), mode="r:*")  # noqa: SIM115 - closed below
    except _DAMAGED as exc:
        raise CodeError("not a .zip or .tar(.gz/.bz2/.xz) archive") from exc
    try:
        with tar:
            declared = 0
            for member in tar:
                # Skipping a member's data decompresses it too: bound what headers declare.
                declared += max(member.size, 0)
                if declared > max_bytes:
                    raise CodeError(f"the archive unpacks to more than {max_bytes} bytes")
                if member.isdir():
                    continue
                _checked_member(member.name)
                if member.issym() or member.islnk():
                    raise CodeError(f"archive member {member.name[:200]!r}: links are not accepted")
                if not member.isfile():
                    raise CodeError(f"archive member {member.name[:200]!r}: {ONLY_FILES}")
                reader = tar.extractfile(member)
                add(member.name, reader or io.BytesIO())
    except CodeError:
        raise
    except _DAMAGED as exc:
        raise CodeError(f"the archive is damaged: {_reason(exc)}") from exc


def _reason(exc: BaseException) -> str:
    # An OSError's text may name a server path; its strerror alone says what failed.
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc)[:200] or type(exc).__name__


def unpack(data: bytes, destination: Path) -> list[str]:
    """Write the canonical archive ``data`` (from ``pack``) into ``destination``, which must be
    missing or an empty folder; returns the paths written, sorted. Members are checked as
    ``read_archive`` checks them (no top folder is taken off). Raises CodeError for a
    ``destination`` that holds anything (a planted link there would redirect a write)."""
    files = read_archive(data, max_bytes=2**40, strip_top=False)
    destination.mkdir(parents=True, exist_ok=True)
    if any(destination.iterdir()):
        raise CodeError(f"{destination} is not empty")
    for name, content in sorted(files.items()):
        target = destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
    return sorted(files)


def find_mlproject(files: dict[str, bytes]) -> str | None:
    """The name of the top-level ``MLproject`` file, matched without case as MLflow does."""
    found = [name for name in files if "/" not in name and name.lower() == "mlproject"]
    if len(found) > 1:
        raise CodeError(f"more than one MLproject file: {', '.join(sorted(found))}")
    return found[0] if found else None


_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


def _default(where: str, ptype: str, value: Any) -> Any:
    """A parameter's declared default, checked against its type (None: the run must give it)."""
    if value is None:
        return None
    if ptype == "float" and isinstance(value, int | float) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise CodeError(f"{where}.default: {value!r} is not a finite number")
        return value
    if ptype == "int" and isinstance(value, int) and not isinstance(value, bool):
        return value
    if (
        ptype in ("string", "path", "uri")
        and isinstance(value, str | int | float)
        and not isinstance(value, bool)
    ):
        return str(value)
    raise CodeError(f"{where}.default: {value!r} is not a {ptype}")


def entry_points(files: dict[str, bytes]) -> dict[str, dict[str, Any]]:
    """The entry points of the code: ``{name: {"command", "parameters": {name: {"type",
    "default"}}}}`` from ``MLproject``, else one per top-level ``.py`` file.

    Follows MLflow Projects: parameters are ``{name: type}`` or ``{name: {type, default}}``,
    and a command names them as ``{name}``. Raises CodeError naming the field of ``MLproject``
    that is wrong: unreadable YAML, no ``entry_points`` mapping, more than ``MAX_ENTRY_POINTS``
    entry points or ``MAX_PARAMETERS`` parameters in one, a name longer than
    ``ENTRY_POINT_MAX_CHARS`` or holding a control or bidirectional character, an entry point
    without a command, an unknown parameter type, a default not of its type, a NUL in a command
    or default, or a placeholder in a command that names no declared parameter.
    """
    mlproject = find_mlproject(files)
    if mlproject is None:
        found = {
            name: {"command": f"python {shlex.quote(name)}", "parameters": {}}
            for name in sorted(files)
            if "/" not in name and name.endswith(".py")
        }
        if not found:
            raise CodeError("no MLproject file and no top-level .py file to run")
        return found
    try:
        project = yaml.safe_load(files[mlproject].decode("utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise CodeError(f"{mlproject}: not readable YAML ({str(exc)[:300]})") from exc
    if not isinstance(project, dict) or not isinstance(project.get("entry_points"), dict):
        raise CodeError(f"{mlproject}: needs an entry_points mapping")
    if len(project["entry_points"]) > MAX_ENTRY_POINTS:
        raise CodeError(f"{mlproject}: entry_points: more than {MAX_ENTRY_POINTS}")
    found = {}
    for name, raw in project["entry_points"].items():
        if (
            not isinstance(name, str)
            or not name.strip()
            or not name.isprintable()  # no control nor bidirectional character (Cc, Cf)
            or len(name) > ENTRY_POINT_MAX_CHARS
        ):
            raise CodeError(
                f"{mlproject}: entry_points: {str(name)[:ENTRY_POINT_MAX_CHARS]!r} is not a name "
                f"(1 to {ENTRY_POINT_MAX_CHARS} printable characters)"
            )
        where = f"{mlproject}: entry_points.{name}"
        if not isinstance(raw, dict) or not isinstance(raw.get("command"), str) or not raw["command"].strip():
            raise CodeError(f"{where}: needs a command")
        declared = raw.get("parameters") or {}
        if not isinstance(declared, dict):
            raise CodeError(f"{where}.parameters: a mapping of name to type")
        if len(declared) > MAX_PARAMETERS:
            raise CodeError(f"{where}.parameters: more than {MAX_PARAMETERS}")
        if "\x00" in raw["command"]:
            raise CodeError(f"{where}.command: a NUL character (no text field stores one)")
        parameters = {}
        for pname, spec in declared.items():
            pwhere = f"{where}.parameters.{pname}"
            if not isinstance(pname, str) or not pname.isidentifier():
                raise CodeError(f"{where}.parameters: {pname!r} is not a parameter name")
            if isinstance(spec, str):
                spec = {"type": spec}
            if not isinstance(spec, dict):
                raise CodeError(f"{pwhere}: a type or a mapping")
            ptype = spec.get("type", "string")
            if ptype not in PARAMETER_TYPES:
                raise CodeError(f"{pwhere}: type {ptype!r} is not one of {', '.join(PARAMETER_TYPES)}")
            default = _default(pwhere, ptype, spec.get("default"))
            if isinstance(default, str) and "\x00" in default:
                raise CodeError(f"{pwhere}.default: a NUL character (no text field stores one)")
            parameters[pname] = {"type": ptype, "default": default}
        unknown = sorted(set(_PLACEHOLDER.findall(raw["command"])) - set(parameters))
        if unknown:
            raise CodeError(f"{where}.command: {{{unknown[0]}}} names no declared parameter")
        found[name] = {"command": raw["command"], "parameters": parameters}
    if not found:
        raise CodeError(f"{mlproject}: entry_points is empty")
    return found


def is_text(content: bytes) -> bool:
    """Whether ``content`` reads as text: UTF-8 with no NUL byte (git's test for binary)."""
    if b"\0" in content[:8192]:
        return False
    try:
        content.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


# Files past this size are compared by hash only: difflib is quadratic in the worst case.
DIFF_MAX_BYTES = 512 * 1024


def compare(a: dict[str, bytes], b: dict[str, bytes]) -> list[dict[str, Any]]:
    """Two versions' files compared, one row per path of either, sorted by path:
    ``{"path", "status": added | removed | changed | same, "size_a", "size_b", "diff"}``.

    ``diff`` is unified diff text (``difflib.unified_diff``, 3 lines of context) for a changed
    text file, else None; ``note`` says why a changed file has no diff (binary, too large).
    """
    rows = []
    for path in sorted(set(a) | set(b)):
        old, new = a.get(path), b.get(path)
        row: dict[str, Any] = {
            "path": path,
            "size_a": None if old is None else len(old),
            "size_b": None if new is None else len(new),
            "diff": None,
            "note": "",
        }
        if old is None:
            row["status"] = "added"
        elif new is None:
            row["status"] = "removed"
        elif old == new:
            row["status"] = "same"
        else:
            row["status"] = "changed"
            if not (is_text(old) and is_text(new)):
                row["note"] = "binary file: not shown"
            elif max(len(old), len(new)) > DIFF_MAX_BYTES:
                row["note"] = f"larger than {DIFF_MAX_BYTES} bytes: not shown"
            else:
                row["diff"] = "".join(
                    difflib.unified_diff(
                        old.decode("utf-8").splitlines(keepends=True),
                        new.decode("utf-8").splitlines(keepends=True),
                        fromfile=f"a/{path}",
                        tofile=f"b/{path}",
                    )
                )
        rows.append(row)
    return rows
