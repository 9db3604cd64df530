"""Code versions for code-run tests, made without the code versions' own actions (issue 17's
``codeversions`` work lands separately): the files are packed with ``runners.codefiles`` and the
archive written under ``ARTIFACT_ROOT``, as a registered version's is."""

from __future__ import annotations

import textwrap
from pathlib import Path

from django.conf import settings

from governance.names import name_key
from runners import codefiles
from runners.models import CodeProject, CodeVersion


def make_code_version(team, user, files: dict[str, str], project: str = "bike-code") -> CodeVersion:
    """A code version of ``team``'s project ``project`` holding ``files`` ({path: text},
    dedented); its entry points come from its ``MLproject`` (or its top-level .py files)."""
    contents = {path: textwrap.dedent(text).lstrip().encode() for path, text in files.items()}
    packed = codefiles.pack(contents)
    relative = Path("code") / f"{packed.sha256}.tar.gz"
    target = Path(settings.ARTIFACT_ROOT) / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(packed.data)
    code_project, _ = CodeProject.objects.get_or_create(
        team=team, name_key=name_key(project), defaults={"name": project, "created_by": user}
    )
    number = code_project.versions.count() + 1
    return CodeVersion.objects.create(
        project=code_project,
        version=number,
        sha256=packed.sha256,
        file=str(relative),
        size_bytes=len(packed.data),
        files=packed.files,
        entry_points=codefiles.entry_points(contents),
        created_by=user,
    )
