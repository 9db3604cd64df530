"""Code projects and their versions (issue 17): a team's own code as a governed, versioned artifact.

A code version is one canonical archive (``runners.codefiles.pack``) in the artifact store,
content-addressed and written before its row; its manifest and the entry points of its
``MLproject`` are read once, at registration. Versions of a project are numbered 1..n without
gaps, under the project's row lock, like dataset and model versions. Registering the same files
as the project's latest version is refused (``SameCodeAsLatest`` names that version): a new
number for unchanged code would only blur which runs ran what.

``materialize`` writes a version back into a folder for a code run, after checking the
archive's sha256 against the row (``ArtifactChanged`` otherwise); the worker calls it.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.exceptions import ObjectDoesNotExist, ValidationError
from django.db import transaction
from django.utils import timezone

from governance import artifacts
from governance.actions.checks import SAME_NAME, checked_name, ensure_can, next_version
from governance.audit import record_audit_event, snapshot
from governance.limits import checked_description
from governance.models import Team
from governance.names import name_key
from governance.permissions import CHANGE
from runners import codefiles
from runners.models import CodeProject, CodeSource, CodeVersion

if TYPE_CHECKING:
    from django.contrib.auth.models import User

# A template is a plain folder name under STEWARD_CODE_TEMPLATES_DIR.
TEMPLATE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
SOURCES = ("archive", "directory", "template")


class ArtifactChanged(Exception):
    """A code version's stored archive no longer has the sha256 its row records."""


class SameCodeAsLatest(ValidationError):
    """The files are those of the project's latest version (``existing``); nothing registered."""

    def __init__(self, field: str, existing: CodeVersion):
        self.existing = existing
        super().__init__(
            {
                field: f"the same files as {existing} (sha256 {existing.sha256}); nothing registered: "
                "change a file or use that version"
            }
        )


def _creator(actor: User | None, on_behalf_of: User | None) -> User:
    # created_by is required: the system registers code only on someone's behalf.
    creator = actor or on_behalf_of
    if creator is None:
        raise ValueError("the system acts on behalf of a user here: pass on_behalf_of")
    return creator


def do_create_code_project(
    *, team: Team, name: str, description: str = "", actor: User | None, on_behalf_of: User | None = None
) -> CodeProject:
    """Register a code project name for ``team``. Raises ValidationError on ``name`` when it
    breaks the name rule (``governance.names``) or the team has it under NFKC case folding, on
    ``description`` past ``limits.DESCRIPTION_MAX``; PermissionDenied unless the actor may change
    the team's objects (model owners, data scientists, platform admins)."""
    name = checked_name(name, noun="code project name")
    description = checked_description(description)
    with transaction.atomic():
        ensure_can(actor, CHANGE, team.pk)
        key = name_key(name)
        if CodeProject.objects.filter(team=team, name_key=key).exists():
            raise ValidationError(
                {"name": f"team {team.name} already has a code project named {name!r}{SAME_NAME}"}
            )
        project = CodeProject.objects.create(
            team=team,
            name=name,
            name_key=key,
            description=description,
            created_by=_creator(actor, on_behalf_of),
        )
        record_audit_event(
            actor=actor,
            on_behalf_of=on_behalf_of,
            action="code_project.create",
            obj=project,
            after=snapshot(project),
        )
    return project


def resolve_code_directory(raw: str) -> Path:
    """The folder ``raw`` names, resolved (links followed), if it lies inside one of
    ``STEWARD_CODE_ROOTS``; a relative path is taken under each root in turn.

    Raises ValidationError on ``directory`` naming the roots otherwise (a link leading out of
    a root is outside it), or when it is not a folder.
    """
    roots = list(settings.STEWARD_CODE_ROOTS)
    refusal = ValidationError(
        {
            "directory": f"{str(raw)[:200]!r} is not a folder under the allowed code roots "
            f"({', '.join(str(root) for root in roots) or 'none configured'})"
        }
    )
    if not isinstance(raw, str) or not raw.strip() or "\0" in raw:
        raise refusal
    path = Path(raw).expanduser()
    candidates = [path] if path.is_absolute() else [Path(root) / path for root in roots]
    for candidate in candidates:
        try:
            resolved = candidate.resolve()
        except (OSError, RuntimeError):  # a loop of links, a name too long
            continue
        if any(resolved.is_relative_to(Path(root).resolve()) for root in roots) and resolved.is_dir():
            return resolved
    raise refusal


def template_names() -> list[str]:
    """The shipped templates: the folders under ``STEWARD_CODE_TEMPLATES_DIR``, sorted."""
    root = Path(settings.STEWARD_CODE_TEMPLATES_DIR)
    if not root.is_dir():
        return []
    return sorted(
        item.name
        for item in root.iterdir()
        if item.is_dir() and not item.is_symlink() and TEMPLATE_NAME.fullmatch(item.name)
    )


def template_directory(name: str) -> Path:
    """The folder of template ``name``; ValidationError on ``template`` naming the templates."""
    known = template_names()
    if not isinstance(name, str) or name not in known:
        raise ValidationError(
            {"template": f"no template {str(name)[:100]!r}; templates: {', '.join(known) or 'none'}"}
        )
    return Path(settings.STEWARD_CODE_TEMPLATES_DIR) / name


def templates() -> list[dict[str, Any]]:
    """Every template as ``{"name", "entry_points", "error"}``: its entry points, or why its
    folder is not valid code (``error``, entry points empty)."""
    found = []
    for name in template_names():
        try:
            files = codefiles.collect(
                Path(settings.STEWARD_CODE_TEMPLATES_DIR) / name, settings.STEWARD_CODE_MAX_BYTES
            )
            found.append({"name": name, "entry_points": codefiles.entry_points(files), "error": ""})
        except codefiles.CodeError as exc:
            found.append({"name": name, "entry_points": {}, "error": str(exc)})
    return found


def _read_source(
    archive: bytes | None, directory: Path | str | None, template: str | None
) -> tuple[str, dict[str, bytes], str, str]:
    """``(field, files, source, source_path)`` of exactly one of the three sources."""
    given = [
        name for name, value in zip(SOURCES, (archive, directory, template), strict=True) if value is not None
    ]
    if len(given) != 1:
        raise ValidationError(
            {"detail": f"give exactly one of archive, directory or template, not {len(given)}"}
        )
    limit = settings.STEWARD_CODE_MAX_BYTES
    field = given[0]
    try:
        if archive is not None:
            if len(archive) > limit:
                raise codefiles.CodeError(f"the archive is larger than the limit of {limit} bytes")
            return field, codefiles.read_archive(archive, limit), CodeSource.UPLOAD, ""
        if directory is not None:
            folder = resolve_code_directory(str(directory))
            return field, codefiles.collect(folder, limit), CodeSource.DIRECTORY, str(folder)
        assert template is not None
        folder = template_directory(template)
        return field, codefiles.collect(folder, limit), CodeSource.TEMPLATE, template
    except codefiles.CodeError as exc:
        raise ValidationError({field: str(exc)}) from exc


def do_register_code_version(
    project: CodeProject,
    *,
    archive: bytes | None = None,
    directory: Path | str | None = None,
    template: str | None = None,
    description: str = "",
    actor: User | None,
    on_behalf_of: User | None = None,
) -> CodeVersion:
    """Register the next version of ``project`` from exactly one source: an uploaded ``archive``
    (.zip or .tar[.gz|.bz2|.xz] bytes), a ``directory`` under ``STEWARD_CODE_ROOTS``, or a
    shipped ``template`` (a folder name under ``STEWARD_CODE_TEMPLATES_DIR``).

    The files are packed canonically (same files, same sha256, whatever the source), stored
    before the row, and the entry points read from ``MLproject``. Raises ValidationError naming
    the source field (``archive``, ``directory``, ``template``) for unsafe or unreadable code or
    a broken ``MLproject`` (the member or field named), ``SameCodeAsLatest`` when nothing changed
    since the latest version, PermissionDenied unless the actor may change the project's team.
    """
    description = checked_description(description)
    # Early refusal before reading and storing anything; re-checked fresh under the lock below.
    ensure_can(actor, CHANGE, project.team_id, fresh=False)
    field, files, source, source_path = _read_source(archive, directory, template)
    try:
        points = codefiles.entry_points(files)
    except codefiles.CodeError as exc:
        raise ValidationError({field: str(exc)}) from exc
    packed = codefiles.pack(files)
    stored = artifacts.store_bytes(packed.data, packed.sha256, "code", ".tar.gz")
    with transaction.atomic():
        # The parent's lock numbers racing registrations 1..n without gaps (as dataset versions).
        project = CodeProject.objects.select_for_update().select_related("team").get(pk=project.pk)
        ensure_can(actor, CHANGE, project.team_id)
        latest = CodeVersion.objects.filter(project=project).order_by("-version").first()
        if latest is not None and latest.sha256 == packed.sha256:
            raise SameCodeAsLatest(field, latest)
        version = CodeVersion.objects.create(
            project=project,
            version=next_version(CodeVersion, "project", project),
            sha256=packed.sha256,
            file=stored,
            size_bytes=len(packed.data),
            source=source,
            source_path=source_path[:1000],
            files=packed.files,
            entry_points=points,
            description=description,
            created_by=_creator(actor, on_behalf_of),
            created_at=timezone.now(),
        )
        record_audit_event(
            actor=actor,
            on_behalf_of=on_behalf_of,
            action="code_version.register",
            obj=version,
            team_id=project.team_id,
            after=snapshot(version),
        )
    return version


def read_checked(version: CodeVersion) -> bytes:
    """The stored archive of ``version`` after checking it against the row's sha256.

    Raises ArtifactChanged naming the version when the file is missing or its bytes changed."""
    try:
        data = version.path.read_bytes()
    except OSError as exc:
        raise ArtifactChanged(f"the archive of code version {version} ({version.file}) is missing") from exc
    actual = hashlib.sha256(data).hexdigest()
    if actual != version.sha256:
        raise ArtifactChanged(
            f"the archive of code version {version} has sha256 {actual}, not {version.sha256} as "
            "registered: it was changed after registration; not used"
        )
    return data


def version_files(version: CodeVersion) -> dict[str, bytes]:
    """``{path: bytes}`` of every file of ``version`` (archive checked: ArtifactChanged)."""
    return codefiles.read_archive(read_checked(version), max_bytes=2**40, strip_top=False)


def version_file(version: CodeVersion, path: str) -> bytes:
    """The bytes of the file ``path`` of ``version``; ObjectDoesNotExist naming it when the
    version has no such file (its manifest is consulted before the archive is read)."""
    if not any(entry["path"] == path for entry in version.files):
        raise ObjectDoesNotExist(f"code version {version} has no file {path[:300]!r}")
    return version_files(version)[path]


def materialize(version: CodeVersion, destination: Path) -> Path:
    """Write the files of ``version`` into ``destination`` (missing or an empty folder) for a
    code run, and return it. The archive is checked against the row's sha256 first
    (ArtifactChanged naming the version otherwise) and the files written are the manifest's."""
    data = read_checked(version)
    written = codefiles.unpack(data, destination)
    if written != [entry["path"] for entry in version.files]:
        raise ArtifactChanged(f"the archive of code version {version} does not hold its manifest's files")
    return destination


def read_upload(uploaded: Any) -> bytes:
    """An uploaded archive's bytes (a Django ``UploadedFile``), refused with a ValidationError
    on ``archive`` past ``STEWARD_CODE_MAX_BYTES`` before the rest is read."""
    limit = settings.STEWARD_CODE_MAX_BYTES
    parts, size = [], 0
    for chunk in uploaded.chunks():
        size += len(chunk)
        if size > limit:
            raise ValidationError({"archive": f"the archive is larger than the limit of {limit} bytes"})
        parts.append(chunk)
    return b"".join(parts)


def file_content(version: CodeVersion, path: str) -> dict[str, Any]:
    """``{"path", "size", "sha256", "is_text", "text", "note"}`` of a version's file: its text
    when it reads as UTF-8, else None and a note. ObjectDoesNotExist for an unknown path,
    ArtifactChanged for a tampered archive."""
    content = version_file(version, path)
    entry = next(entry for entry in version.files if entry["path"] == path)
    text = codefiles.is_text(content)
    return {
        "path": path,
        "size": entry["size"],
        "sha256": entry["sha256"],
        "is_text": text,
        "text": content.decode("utf-8") if text else None,
        "note": "" if text else "binary file: its text is not shown",
    }


def compared(a: CodeVersion, b: CodeVersion) -> dict[str, Any]:
    """Two versions file by file, for the API and the diff page: ``{"a": {id, project, version,
    sha256}, "b": ..., "counts": {added, removed, changed, same}, "files": rows}`` with rows from
    ``codefiles.compare``. ArtifactChanged when either archive was tampered with."""
    rows = codefiles.compare(version_files(a), version_files(b))
    counts = dict.fromkeys(("added", "removed", "changed", "same"), 0)
    for row in rows:
        counts[row["status"]] += 1

    def side(version: CodeVersion) -> dict[str, Any]:
        return {
            "id": version.pk,
            "project": version.project.name,
            "version": version.version,
            "sha256": version.sha256,
        }

    return {"a": side(a), "b": side(b), "counts": counts, "files": rows}
