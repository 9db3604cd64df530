"""Code versions (issue 17): a team's own code registered from an archive, a server folder or a
template; read, compared and materialized through the API and the actions. Hostile input:
test_code_hostile.py; the pages: test_code_pages.py."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import pytest
from django.db import connection

from governance.models import AuditEvent
from runners import code_versions, codefiles
from runners.code_versions import (
    ArtifactChanged,
    do_create_code_project,
    do_register_code_version,
    materialize,
)
from runners.models import CodeProject, CodeVersion
from tests.runners.code_helpers import FILES, tar_of, upload, write_tree, zip_of


@pytest.fixture
def code_root(settings, tmp_path) -> Path:
    """The one allowed code root of these tests, and a templates folder with ``tabular``."""
    root = tmp_path / "code-root"
    root.mkdir()
    settings.STEWARD_CODE_ROOTS = [root.resolve()]
    templates = tmp_path / "templates"
    write_tree(templates / "tabular", FILES)
    write_tree(templates / "broken", {"MLproject": b"entry_points: [1, 2]\n"})
    settings.STEWARD_CODE_TEMPLATES_DIR = templates
    return root


@pytest.fixture
def project(team, scientist) -> CodeProject:
    return do_create_code_project(team=team, name="bike-trainer", description="our MLP", actor=scientist)


def _events(action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action).order_by("id"))


# Projects ---------------------------------------------------------------------------------------


def test_a_data_scientist_creates_a_project_audited_and_names_are_unique_per_team(
    client_for, team, other_team, scientist, outsider
):
    client = client_for(scientist)

    created = client.post("/api/code-projects/", {"team": team.pk, "name": "Trainer"}, format="json")
    twin = client.post("/api/code-projects/", {"team": team.pk, "name": "\uff54rainer"}, format="json")
    elsewhere = client_for(outsider).post(
        "/api/code-projects/", {"team": other_team.pk, "name": "trainer"}, format="json"
    )

    assert created.status_code == 201, created.json()
    body = created.json()
    assert (body["name"], body["team"], body["created_by"], body["version_count"]) == (
        "Trainer",
        team.pk,
        "dana",
        0,
    )
    assert twin.status_code == 400
    assert "already has a code project named" in twin.json()["name"][0]
    assert elsewhere.status_code == 201
    [event, _other] = _events("code_project.create")
    assert (event.actor, event.team_id, event.object_id, event.before) == (
        scientist,
        team.pk,
        str(body["id"]),
        None,
    )
    assert event.after == {"team_id": team.pk, "name": "Trainer", "description": ""}
    listed = client.get("/api/code-projects/", {"name": "Trainer"}).json()["results"]
    assert [row["id"] for row in listed] == [body["id"]]


def test_viewers_and_approvers_may_not_create_and_outsiders_do_not_see_the_team(
    client_for, team, viewer, approver, outsider
):
    body = {"team": team.pk, "name": "mine"}
    answers = [
        client_for(user).post("/api/code-projects/", body, format="json") for user in (viewer, approver)
    ]
    hidden = client_for(outsider).post("/api/code-projects/", body, format="json")

    assert [answer.status_code for answer in answers] == [403, 403]
    assert hidden.status_code == 400
    assert hidden.json() == {"team": [f'Invalid pk "{team.pk}" - object does not exist.']}
    assert CodeProject.objects.count() == 0
    assert _events("code_project.create") == []


# Registering versions ---------------------------------------------------------------------------


def test_a_zip_a_tar_gz_and_a_folder_of_the_same_files_give_the_same_sha256(
    client_for, team, scientist, code_root
):
    client = client_for(scientist)
    projects = [do_create_code_project(team=team, name=f"p{i}", actor=scientist) for i in range(3)]
    write_tree(code_root / "trainer", FILES)

    from_zip = upload(client, projects[0].pk, zip_of(FILES, top="trainer/"))
    from_tar = upload(client, projects[1].pk, tar_of(FILES), name="code.tar.gz")
    from_folder = client.post(
        "/api/code-versions/", {"project": projects[2].pk, "directory": "trainer"}, format="json"
    )

    answers = [from_zip, from_tar, from_folder]
    assert [answer.status_code for answer in answers] == [201, 201, 201], [a.json() for a in answers]
    expected = codefiles.pack(FILES)
    assert {answer.json()["sha256"] for answer in answers} == {expected.sha256}
    assert [answer.json()["source"] for answer in answers] == ["upload", "upload", "directory"]
    assert from_folder.json()["source_path"] == str((code_root / "trainer").resolve())
    body = from_zip.json()
    assert body["version"] == 1
    assert body["files"] == [
        {"path": path, "size": len(FILES[path]), "sha256": hashlib.sha256(FILES[path]).hexdigest()}
        for path in ["MLproject", "evaluate.py", "lib/features.py", "train.py"]
    ]
    assert body["entry_points"] == {
        "main": {
            "command": "python train.py --epochs {epochs} --lr {lr} --data {data}",
            "parameters": {
                "epochs": {"type": "int", "default": 3},
                "lr": {"type": "float", "default": 0.01},
                "data": {"type": "path", "default": None},
            },
        },
        "evaluate": {"command": "python evaluate.py", "parameters": {}},
    }
    # The archive is in the store under its sha256, with the bytes the row vouches for.
    version = CodeVersion.objects.get(pk=body["id"])
    assert hashlib.sha256(version.path.read_bytes()).hexdigest() == expected.sha256
    assert version.size_bytes == len(expected.data)


def test_registering_is_audited_and_numbers_versions_in_order(client_for, project, scientist):
    client = client_for(scientist)

    first = upload(client, project.pk, zip_of(FILES))
    second = upload(client, project.pk, zip_of({**FILES, "train.py": b"print('v2')\n"}), description="faster")

    assert [first.json()["version"], second.json()["version"]] == [1, 2]
    events = _events("code_version.register")
    assert [(e.actor, e.team_id, e.object_type, e.object_id) for e in events] == [
        (scientist, project.team_id, "codeversion", str(first.json()["id"])),
        (scientist, project.team_id, "codeversion", str(second.json()["id"])),
    ]
    assert events[1].before is None
    assert events[1].after["version"] == 2
    assert events[1].after["sha256"] == second.json()["sha256"]
    assert events[1].after["entry_points"] == second.json()["entry_points"]
    listed = client.get("/api/code-versions/", {"project": project.pk}).json()["results"]
    assert [(row["version"], row["file_count"], row["description"]) for row in listed] == [
        (2, 4, "faster"),
        (1, 4, ""),
    ]
    assert "files" not in listed[0]
    assert client.get(f"/api/code-projects/{project.pk}/").json()["latest_version"] == 2


def test_the_same_files_as_the_latest_version_are_refused_naming_it(client_for, project, scientist):
    client = client_for(scientist)
    first = upload(client, project.pk, zip_of(FILES))

    again = upload(client, project.pk, tar_of(FILES), name="again.tar.gz")

    assert again.status_code == 400
    assert again.json()["archive"] == [
        f"the same files as bike-trainer v1 (sha256 {first.json()['sha256']}); nothing registered: "
        "change a file or use that version"
    ]
    assert CodeVersion.objects.filter(project=project).count() == 1
    assert len(_events("code_version.register")) == 1


def test_exactly_one_source_is_required(client_for, project, scientist, code_root):
    write_tree(code_root / "trainer", FILES)
    client = client_for(scientist)

    none = client.post("/api/code-versions/", {"project": project.pk}, format="json")
    two = client.post(
        "/api/code-versions/",
        {"project": project.pk, "directory": "trainer", "template": "tabular"},
        format="json",
    )

    assert (none.status_code, none.json()) == (
        400,
        {"detail": ["give exactly one of archive, directory or template, not 0"]},
    )
    assert (two.status_code, two.json()) == (
        400,
        {"detail": ["give exactly one of archive, directory or template, not 2"]},
    )
    assert CodeVersion.objects.count() == 0


def test_a_template_is_registered_from_its_folder_and_listed_with_its_entry_points(
    client_for, project, scientist, viewer, code_root
):
    client = client_for(scientist)

    registered = client.post(
        "/api/code-versions/", {"project": project.pk, "template": "tabular"}, format="json"
    )
    unknown = client.post(
        "/api/code-versions/", {"project": project.pk, "template": "../tabular"}, format="json"
    )
    templates = client_for(viewer).get("/api/code-templates/")

    assert registered.status_code == 201, registered.json()
    assert (registered.json()["source"], registered.json()["source_path"]) == ("template", "tabular")
    assert registered.json()["sha256"] == codefiles.pack(FILES).sha256
    assert unknown.status_code == 400
    assert unknown.json() == {"template": ["no template '../tabular'; templates: broken, tabular"]}
    assert templates.status_code == 200
    assert [(row["name"], sorted(row["entry_points"]), row["error"]) for row in templates.json()] == [
        ("broken", [], "MLproject: needs an entry_points mapping"),
        ("tabular", ["evaluate", "main"], ""),
    ]


def test_a_folder_outside_the_code_roots_or_escaping_through_a_link_is_refused(
    client_for, project, scientist, code_root, tmp_path
):
    outside = write_tree(tmp_path / "elsewhere", FILES)
    (code_root / "escape").symlink_to(outside, target_is_directory=True)
    leaky = write_tree(code_root / "leaky", FILES)
    (tmp_path / "secret.txt").write_text("DATABASE_URL=postgres://...")
    (leaky / "secret.txt").symlink_to(tmp_path / "secret.txt")
    client = client_for(scientist)

    answers = {
        raw: client.post("/api/code-versions/", {"project": project.pk, "directory": raw}, format="json")
        for raw in [str(outside), "escape", "../elsewhere", "leaky", "missing"]
    }

    for raw in [str(outside), "escape", "../elsewhere", "missing"]:
        assert answers[raw].status_code == 400, raw
        assert answers[raw].json() == {
            "directory": [f"{raw!r} is not a folder under the allowed code roots ({code_root.resolve()})"]
        }
    assert answers["leaky"].status_code == 400
    assert answers["leaky"].json() == {"directory": ["secret.txt: a symbolic link out of the code's folder"]}
    assert CodeVersion.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_concurrent_registrations_number_versions_1_to_n(team, scientist):
    project = do_create_code_project(team=team, name="racy", actor=scientist)
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def register(i: int) -> None:
        try:
            barrier.wait()
            do_register_code_version(
                project, archive=zip_of({"run.py": f"print({i})\n".encode()}), actor=scientist
            )
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=register, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert sorted(CodeVersion.objects.filter(project=project).values_list("version", flat=True)) == [
        1,
        2,
        3,
        4,
    ]
    assert AuditEvent.objects.filter(action="code_version.register").count() == 4


# Permissions ------------------------------------------------------------------------------------


def test_viewers_read_but_may_not_register_and_outsiders_see_nothing(
    client_for, project, scientist, owner, viewer, approver, outsider
):
    version = do_register_code_version(project, archive=zip_of(FILES), actor=scientist)
    by_owner = upload(client_for(owner), project.pk, zip_of({**FILES, "evaluate.py": b"print(2)\n"}))
    refused = [upload(client_for(user), project.pk, zip_of({"x.py": b"1\n"})) for user in (viewer, approver)]
    hidden = upload(client_for(outsider), project.pk, zip_of({"x.py": b"1\n"}))
    viewer_client, outsider_client = client_for(viewer), client_for(outsider)

    assert by_owner.status_code == 201
    assert [answer.status_code for answer in refused] == [403, 403]
    assert hidden.status_code == 400
    assert hidden.json() == {"project": [f'Invalid pk "{project.pk}" - object does not exist.']}
    assert CodeVersion.objects.count() == 2
    assert len(_events("code_version.register")) == 2
    for url in [
        f"/api/code-projects/{project.pk}/",
        f"/api/code-versions/{version.pk}/",
        f"/api/code-versions/{version.pk}/files/train.py",
    ]:
        assert viewer_client.get(url).status_code == 200, url
        assert outsider_client.get(url).status_code == 404, url
    assert outsider_client.get("/api/code-projects/").json()["results"] == []
    assert outsider_client.get("/api/code-versions/").json()["results"] == []
    assert (
        outsider_client.get(f"/api/code-versions/compare/?a={version.pk}&b={version.pk}").status_code == 404
    )


def test_unknown_query_parameters_are_refused(client_for, project, viewer):
    client = client_for(viewer)

    answers = [
        client.get("/api/code-versions/", {"projet": project.pk}),
        client.get("/api/code-projects/", {"nam": "x"}),
        client.get("/api/code-templates/", {"all": "1"}),
    ]

    assert [answer.status_code for answer in answers] == [400, 400, 400]
    assert answers[0].json()["detail"].startswith("unknown query parameter(s): projet; known: ")


# Files and comparisons --------------------------------------------------------------------------


def test_a_files_text_a_binary_note_and_an_unknown_path_named(client_for, project, scientist, viewer):
    files = {**FILES, "weights.bin": b"\x00\x01\x02\xff"}
    version = do_register_code_version(project, archive=zip_of(files), actor=scientist)
    client = client_for(viewer)

    nested = client.get(f"/api/code-versions/{version.pk}/files/lib/features.py")
    binary = client.get(f"/api/code-versions/{version.pk}/files/weights.bin")
    unknown = client.get(f"/api/code-versions/{version.pk}/files/lib/missing.py")

    assert nested.status_code == 200
    assert nested.json() == {
        "path": "lib/features.py",
        "size": len(files["lib/features.py"]),
        "sha256": hashlib.sha256(files["lib/features.py"]).hexdigest(),
        "is_text": True,
        "text": files["lib/features.py"].decode(),
        "note": "",
    }
    assert (binary.json()["is_text"], binary.json()["text"], binary.json()["note"]) == (
        False,
        None,
        "binary file: its text is not shown",
    )
    assert unknown.status_code == 404
    assert unknown.json() == {"detail": "code version bike-trainer v1 has no file 'lib/missing.py'"}


def test_compare_two_versions_file_by_file_with_a_unified_diff(client_for, project, scientist, viewer):
    old = do_register_code_version(project, archive=zip_of(FILES), actor=scientist)
    changed = {name: content for name, content in FILES.items() if name != "evaluate.py"}
    changed["train.py"] = FILES["train.py"].replace(b'print("training for"', b'print("epochs:"')
    changed["lib/metrics.py"] = b"def rmse(a, b):\n    return 0\n"
    new = do_register_code_version(project, archive=zip_of(changed), actor=scientist)

    answer = client_for(viewer).get("/api/code-versions/compare/", {"a": old.pk, "b": new.pk})

    assert answer.status_code == 200
    body = answer.json()
    assert (body["a"]["version"], body["b"]["version"]) == (1, 2)
    assert body["counts"] == {"added": 1, "removed": 1, "changed": 1, "same": 2}
    statuses = {row["path"]: row["status"] for row in body["files"]}
    assert statuses == {
        "MLproject": "same",
        "evaluate.py": "removed",
        "lib/features.py": "same",
        "lib/metrics.py": "added",
        "train.py": "changed",
    }
    [train] = [row for row in body["files"] if row["path"] == "train.py"]
    assert train["diff"].splitlines()[:2] == ["--- a/train.py", "+++ b/train.py"]
    assert '-print("training for", args.epochs, "epochs")' in train["diff"].splitlines()
    assert '+print("epochs:", args.epochs, "epochs")' in train["diff"].splitlines()
    assert [row["diff"] for row in body["files"] if row["status"] != "changed"] == [None] * 4


def test_compare_refuses_unknown_parameters_and_needs_both_ids(client_for, project, scientist, viewer):
    version = do_register_code_version(project, archive=zip_of(FILES), actor=scientist)
    client = client_for(viewer)

    extra = client.get("/api/code-versions/compare/", {"a": version.pk, "b": version.pk, "c": 1})
    missing = client.get("/api/code-versions/compare/", {"a": version.pk})

    assert (extra.status_code, extra.json()) == (
        400,
        {"detail": "unknown query parameter(s): c; known: a, b"},
    )
    assert (missing.status_code, missing.json()) == (400, {"b": ["This field is required."]})


# Materializing for a run ------------------------------------------------------------------------


def test_materialize_writes_the_files_and_refuses_a_tampered_archive(project, scientist, tmp_path):
    version = do_register_code_version(project, archive=tar_of(FILES), actor=scientist)

    written = materialize(version, tmp_path / "run-1")

    assert {
        path.relative_to(written).as_posix(): path.read_bytes()
        for path in written.rglob("*")
        if path.is_file()
    } == FILES
    tampered = codefiles.pack({**FILES, "train.py": b"import os; print(os.environ)\n"})
    version.path.write_bytes(tampered.data)
    with pytest.raises(ArtifactChanged) as refused:
        materialize(version, tmp_path / "run-2")
    assert str(refused.value) == (
        f"the archive of code version bike-trainer v1 has sha256 {tampered.sha256}, not {version.sha256} "
        "as registered: it was changed after registration; not used"
    )
    assert not (tmp_path / "run-2").exists()


def test_a_tampered_archive_is_not_shown_by_the_api(client_for, project, scientist, viewer):
    version = do_register_code_version(project, archive=zip_of(FILES), actor=scientist)
    version.path.write_bytes(codefiles.pack({**FILES, "train.py": b"evil\n"}).data)

    answer = client_for(viewer).get(f"/api/code-versions/{version.pk}/files/train.py")

    assert answer.status_code == 409
    assert answer.json()["detail"].startswith("the archive of code version bike-trainer v1 has sha256 ")


def test_an_uploads_top_folder_is_taken_off_once(client_for, project, scientist):
    """An archive of a folder loses that folder (and only it): code nested one level deeper has
    no top-level file to run."""
    from_zip = do_register_code_version(project, archive=zip_of(FILES, top="pkg/"), actor=scientist)
    nested = upload(client_for(scientist), project.pk, zip_of(FILES, top="outer/pkg/"))

    assert code_versions.version_files(from_zip) == FILES
    assert nested.status_code == 400
    assert nested.json() == {"archive": ["no MLproject file and no top-level .py file to run"]}


def test_the_lists_take_a_fixed_number_of_queries(
    client_for, project, scientist, viewer, django_assert_num_queries
):
    for i in range(3):
        do_register_code_version(
            project, archive=zip_of({"run.py": f"print({i})\n".encode()}), actor=scientist
        )
        do_create_code_project(team=project.team, name=f"other-{i}", actor=scientist)
    client = client_for(viewer)

    # 1: the viewer's platform roles and memberships; 2: the page (projects with their version
    # count and latest version as subqueries; versions joined to their project and creator).
    with django_assert_num_queries(2):
        projects = client.get("/api/code-projects/")
    with django_assert_num_queries(2):
        versions = client.get("/api/code-versions/", {"project": project.pk})

    assert [row["name"] for row in projects.json()["results"]] == [
        "bike-trainer",
        "other-0",
        "other-1",
        "other-2",
    ]
    assert [row["version"] for row in versions.json()["results"]] == [3, 2, 1]
