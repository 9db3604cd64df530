"""Code pages (issue 17): code projects, their versions, one file, and two versions compared.

Like every page: objects come through ``restrict`` (another team's is a 404), changes through
``runners.code_versions``' actions, refusals re-render the page with their status.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.exceptions import ObjectDoesNotExist
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from governance.keyset import MAX_BIGINT
from governance.permissions import CHANGE, can
from governance.queries import by_name_with_versions
from governance.views.helpers import filtered_list, form_view, may_create_in_any_team, visible_or_404
from runners import code_runs, code_versions, codefiles
from runners.code_forms import CodeProjectForm, CodeRunForm, CodeVersionForm
from runners.filtersets import CodeProjectFilterSet
from runners.models import CodeProject, CodeVersion, Job

SECTION = "code"


@login_required
def code_project_list(request: HttpRequest) -> HttpResponse:
    """Code projects the user may view, by team and name; POST creates one."""

    def page() -> dict[str, Any]:
        queryset = by_name_with_versions(CodeProject.objects.restrict(request.user).select_related("team"))
        return {
            "section": SECTION,
            **filtered_list(request, CodeProjectFilterSet, queryset),
            "may_create": may_create_in_any_team(request.user),
        }

    return form_view(
        request,
        CodeProjectForm(request.POST or None, user=request.user),
        lambda data: code_versions.do_create_code_project(
            team=data["team"], name=data["name"], description=data["description"], actor=request.user
        ),
        success_message=lambda project: f"Created code project {project.name}.",
        template="runners/code_project_list.html",
        context=page,
    )


@login_required
def code_project_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """A project's versions; POST registers an uploaded archive or a template as the next one."""
    project = visible_or_404(request, CodeProject.objects.select_related("team", "created_by"), pk)

    def register(data: dict[str, Any]) -> CodeVersion:
        upload = data["archive"]
        return code_versions.do_register_code_version(
            project,
            archive=code_versions.read_upload(upload) if upload else None,
            template=data["template"] or None,
            description=data["description"],
            actor=request.user,
        )

    def page() -> dict[str, Any]:
        return {
            "section": SECTION,
            "project": project,
            "versions": CodeVersion.objects.restrict(request.user)
            .filter(project=project)
            .select_related("created_by"),
            "may_change": can(request.user, CHANGE, project.team_id),
        }

    return form_view(
        request,
        CodeVersionForm(request.POST or None, request.FILES or None),
        register,
        success_message=lambda version: f"Registered {version} ({len(version.files)} files).",
        template="runners/code_project_detail.html",
        context=page,
    )


def _version(request: HttpRequest, pk: int) -> CodeVersion:
    return visible_or_404(request, CodeVersion.objects.select_related("project__team", "created_by"), pk)


@login_required
def code_version_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """One immutable version: sha256, source, entry points and their parameters, files, lineage,
    the other versions of its project to compare it with and, for those who may change the team,
    a form to run it; POST queues the run (``do_submit_code_run``, as the API) and redirects to
    the job page, or shows the refusal on the form (400, 403)."""
    version = _version(request, pk)

    def submit(data: dict[str, Any]) -> Job:
        return code_runs.do_submit_code_run(
            code_version=version,
            entry_point=data["entry_point"],
            parameters=data["parameters"],
            inputs=data["inputs"],
            models=data["models"],
            outputs=data["outputs"],
            experiment_name=data["experiment_name"],
            actor=request.user,
        )

    def page() -> dict[str, Any]:
        # Older versions first, so "compare with" reads a (this one) -> b (the chosen one) either way.
        others = (
            CodeVersion.objects.restrict(request.user)
            .filter(project=version.project_id)
            .exclude(pk=version.pk)
            .only("id", "version", "project")
            .order_by("version")
        )
        return {
            "section": SECTION,
            "version": version,
            "others": others,
            "may_run": can(request.user, CHANGE, version.project.team_id),
        }

    return form_view(
        request,
        CodeRunForm(request.POST or None, version=version, user=request.user),
        submit,
        success_message=lambda job: f"Queued {job}.",
        template="runners/code_version_detail.html",
        context=page,
    )


@login_required
def code_version_file(request: HttpRequest, pk: int, path: str) -> HttpResponse:
    """One file of a version: its text, or a note for a binary file; an unknown path is a 404."""
    version = _version(request, pk)
    context: dict[str, Any] = {"section": SECTION, "version": version, "path": path}
    try:
        context["file"] = code_versions.file_content(version, path)
    except ObjectDoesNotExist as exc:
        raise Http404(str(exc)) from exc
    except code_versions.ArtifactChanged as exc:
        return render(request, "runners/code_file.html", {**context, "error": str(exc)}, status=409)
    return render(request, "runners/code_file.html", context)


def _version_id(raw: str | None) -> int | None:
    if raw and raw.isascii() and raw.isdigit() and len(raw) <= 19 and 1 <= int(raw) <= MAX_BIGINT:
        return int(raw)
    return None


def diff_lines(diff: str | None) -> list[tuple[str, str]]:
    """``(css class, line)`` for each line of a unified diff after its two file headers:
    ``diff-added``, ``diff-removed``, ``muted`` (``@@`` lines) or ``""`` (context)."""
    if not diff:
        return []
    kinds = {"+": "diff-added", "-": "diff-removed", "@": "muted"}
    return [(kinds.get(line[:1], ""), line) for line in diff.splitlines()[2:]]


@login_required
def code_version_compare(request: HttpRequest) -> HttpResponse:
    """``?a=<id>&b=<id>``: two versions file by file, a unified diff per changed text file with
    added and removed lines marked. Either invisible is a 404; a missing id a 400 page."""
    ids = {side: _version_id(request.GET.get(side)) for side in ("a", "b")}
    bad = [side for side, pk in ids.items() if pk is None]
    if bad:
        error = f"Choose two code versions (missing or not an id: {', '.join(bad)})."
        return render(request, "runners/code_compare.html", {"section": SECTION, "error": error}, status=400)
    a, b = _version(request, ids["a"] or 0), _version(request, ids["b"] or 0)
    try:
        comparison = code_versions.compared(a, b)
    except code_versions.ArtifactChanged as exc:
        context = {"section": SECTION, "a": a, "b": b, "error": str(exc)}
        return render(request, "runners/code_compare.html", context, status=409)
    rows = [dict(row, lines=diff_lines(row["diff"])) for row in comparison["files"]]
    context = {
        "section": SECTION,
        "a": a,
        "b": b,
        "counts": comparison["counts"],
        "rows": rows,
        "diff_max_bytes": codefiles.DIFF_MAX_BYTES,
    }
    return render(request, "runners/code_compare.html", context)
