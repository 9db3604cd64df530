"""Code versions for code-run tests, registered through the code versions' own actions (an
archive upload, as a user's would be)."""

from __future__ import annotations

import textwrap

from governance.names import name_key
from runners import codefiles
from runners.code_versions import do_create_code_project, do_register_code_version
from runners.models import CodeProject, CodeVersion


def make_code_version(team, user, files: dict[str, str], project: str = "bike-code") -> CodeVersion:
    """A new version of ``team``'s code project ``project`` (created if absent) holding ``files``
    ({path: text}, dedented), registered by ``user`` from an uploaded archive; its entry points
    come from its ``MLproject`` (or its top-level .py files)."""
    contents = {path: textwrap.dedent(text).lstrip().encode() for path, text in files.items()}
    code_project = CodeProject.objects.filter(team=team, name_key=name_key(project)).first()
    if code_project is None:
        code_project = do_create_code_project(team=team, name=project, actor=user)
    return do_register_code_version(code_project, archive=codefiles.pack(contents).data, actor=user)
