"""The code pages (issue 17): projects, a version with its entry points, files and lineage, one
file, and two versions' diff with added and removed lines marked."""

from __future__ import annotations

import html
import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from governance.models import AuditEvent
from lineage.actions import do_record_edges
from lineage.nodes import NodeRef
from runners.code_versions import do_create_code_project, do_register_code_version
from runners.models import CodeProject, CodeVersion, Job, JobDataset, JobDatasetRole
from tests.runners.code_helpers import FILES, write_tree, zip_of


@pytest.fixture
def project(team, scientist) -> CodeProject:
    return do_create_code_project(team=team, name="bike-trainer", actor=scientist)


@pytest.fixture
def templates(settings, tmp_path):
    settings.STEWARD_CODE_TEMPLATES_DIR = write_tree(tmp_path / "templates" / "tabular", FILES).parent
    return settings.STEWARD_CODE_TEMPLATES_DIR


def test_a_data_scientist_creates_a_project_from_the_list_page(client, team, scientist, viewer):
    client.force_login(scientist)

    created = client.post(
        reverse("code_project_list"), {"team": team.pk, "name": "trainer", "description": ""}
    )

    project = CodeProject.objects.get(name="trainer")
    assert (created.status_code, created["Location"]) == (302, f"/code/{project.pk}/")
    assert AuditEvent.objects.filter(action="code_project.create", object_id=str(project.pk)).count() == 1
    client.force_login(viewer)
    page = client.get(reverse("code_project_list")).content.decode()
    assert f'<a href="/code/{project.pk}/">trainer</a>' in page
    assert "New code project" not in page  # a viewer creates nothing


def test_the_project_page_registers_an_archive_or_a_template(client, project, scientist, templates):
    client.force_login(scientist)
    url = reverse("code_project_detail", args=[project.pk])

    uploaded = client.post(url, {"archive": SimpleUploadedFile("code.zip", zip_of(FILES)), "template": ""})
    again = client.post(url, {"template": "tabular", "description": "the template"})
    neither = client.post(url, {"template": "", "description": ""})

    assert uploaded.status_code == 302
    version = CodeVersion.objects.get(project=project)
    assert uploaded["Location"] == f"/code-versions/{version.pk}/"
    # The template holds the same files as v1: refused, named, nothing registered.
    assert again.status_code == 400
    assert html.escape(f"the same files as {version}") in again.content.decode()
    assert neither.status_code == 400
    assert "give exactly one of archive, directory or template, not 0" in neither.content.decode()
    assert CodeVersion.objects.filter(project=project).count() == 1
    page = client.get(url).content.decode()
    assert f'<a href="/code-versions/{version.pk}/">v1</a>' in page
    assert '<option value="tabular">tabular</option>' in page


def test_a_viewer_gets_no_upload_form_and_a_post_is_refused(client, project, viewer):
    client.force_login(viewer)
    url = reverse("code_project_detail", args=[project.pk])

    assert "Register a new version" not in client.get(url).content.decode()
    refused = client.post(url, {"archive": SimpleUploadedFile("code.zip", zip_of(FILES)), "template": ""})
    assert refused.status_code == 403
    assert CodeVersion.objects.count() == 0


def test_the_version_page_shows_sha_entry_points_files_and_the_runs_that_used_it(
    client, project, scientist, viewer, dataset_version, registered_model
):
    from runners.actions import do_submit_job  # imports torch; this test alone needs a job

    version = do_register_code_version(project, archive=zip_of(FILES), actor=scientist)
    other = do_register_code_version(
        project, archive=zip_of({**FILES, "train.py": b"pass\n"}), actor=scientist
    )
    job = do_submit_job(
        kind="train",
        dataset_version=dataset_version,
        registered_model=registered_model,
        spec={"target": "cnt", "features": ["temp", "hr"], "epochs": 1},
        actor=scientist,
    )
    # What the code-run work records when a run starts: code version -> job.
    do_record_edges([(NodeRef.of(version), NodeRef.of(job), "input")])
    client.force_login(viewer)

    page = client.get(version.get_absolute_url()).content.decode()

    assert f"<code>{version.sha256}</code>" in page
    assert "<h3><code>main</code></h3>" in page
    assert "<code>python train.py --epochs {epochs} --lr {lr} --data {data}</code>" in page
    assert "<tr><td><code>epochs</code></td><td>int</td><td><code>3</code></td></tr>" in page
    assert (
        '<tr><td><code>data</code></td><td>path</td><td><span class="muted">required</span></td></tr>' in page
    )
    assert (
        f'<a href="/code-versions/{version.pk}/files/lib/features.py"><code>lib/features.py</code></a>'
        in page
    )
    # From v1, the newer v2 is on the right (b); from v2, the older v1 is on the left (a).
    compare = reverse("code_version_compare")
    assert f'<a href="{compare}?a={version.pk}&amp;b={other.pk}">v2</a>' in page
    newer = client.get(other.get_absolute_url()).content.decode()
    assert f'<a href="{compare}?a={version.pk}&amp;b={other.pk}">v1</a>' in newer
    assert f'<a href="{job.get_absolute_url()}">{job}</a>' in page  # downstream in the lineage panel


def test_the_file_page_shows_text_and_an_unknown_file_is_a_404(client, project, scientist, viewer, outsider):
    version = do_register_code_version(project, archive=zip_of(FILES), actor=scientist)
    client.force_login(viewer)

    page = client.get(reverse("code_version_file", args=[version.pk, "train.py"])).content.decode()
    missing = client.get(reverse("code_version_file", args=[version.pk, "nope.py"]))
    client.force_login(outsider)
    hidden = client.get(reverse("code_version_file", args=[version.pk, "train.py"]))

    assert f'<pre class="log">{html.escape(FILES["train.py"].decode())}</pre>' in page
    assert missing.status_code == 404
    assert hidden.status_code == 404


def test_the_diff_page_marks_added_removed_and_changed_files_and_lines(client, project, scientist, viewer):
    old = do_register_code_version(project, archive=zip_of(FILES), actor=scientist)
    files = {name: content for name, content in FILES.items() if name != "evaluate.py"}
    files["train.py"] = FILES["train.py"].replace(b'print("training for"', b'print("epochs:"')
    files["lib/metrics.py"] = b"def rmse(a, b):\n    return 0\n"
    new = do_register_code_version(project, archive=zip_of(files), actor=scientist)
    client.force_login(viewer)

    page = client.get(reverse("code_version_compare"), {"a": old.pk, "b": new.pk}).content.decode()
    bad = client.get(reverse("code_version_compare"), {"a": old.pk})

    assert "<p>1 added, 1 removed, 1 changed, 2 the same.</p>" in page
    assert '<span class="badge badge-added">added</span>' in page
    assert '<span class="badge badge-removed">removed</span>' in page
    assert '<span class="badge badge-changed">changed</span>' in page
    removed_line = html.escape('-print("training for", args.epochs, "epochs")')
    added_line = html.escape('+print("epochs:", args.epochs, "epochs")')
    assert f'<tr class="diff-removed"><td class="line">{removed_line}</td></tr>' in page
    assert f'<tr class="diff-added"><td class="line">{added_line}</td></tr>' in page
    assert bad.status_code == 400
    assert "missing or not an id: b" in bad.content.decode()


def test_a_scientist_runs_a_version_from_its_page_and_errors_land_on_the_form(
    client, project, scientist, dataset_version
):
    version = do_register_code_version(project, archive=zip_of(FILES), actor=scientist)
    client.force_login(scientist)
    url = version.get_absolute_url()

    page = client.get(url).content.decode()
    # The first entry point's defaults are prefilled; "data" has none and is left out.
    assert html.escape('{"epochs": 3, "lr": 0.01}') in page
    missing = client.post(url, {"entry_point": "main", "parameters": '{"epochs": 2}'})
    unknown = client.post(
        url, {"entry_point": "main", "parameters": '{"data": "bike"}', "inputs": '{"bike": 0}'}
    )
    ran = client.post(
        url,
        {
            "entry_point": "main",
            "parameters": '{"epochs": 2, "data": "bike"}',
            "inputs": json.dumps({"bike": dataset_version.pk}),
            "outputs": "cleaned, features",
            "experiment_name": "from-the-page",
        },
    )

    assert missing.status_code == 400
    assert "missing parameter(s) data (no default)" in missing.content.decode()
    assert unknown.status_code == 400
    assert html.escape("bike: expected an id (a positive integer), got 0") in unknown.content.decode()
    job = Job.objects.get()
    assert (ran.status_code, ran["Location"]) == (302, job.get_absolute_url())
    assert (job.kind, job.code_version, job.entry_point, job.state) == (
        "code",
        version,
        "main",
        "queued",
    )
    assert job.spec["parameters"] == {"epochs": 2, "lr": 0.01, "data": "bike"}
    assert job.spec["inputs"] == {"bike": dataset_version.pk}
    assert job.spec["outputs"] == {"datasets": ["cleaned", "features"]}
    assert job.experiment.name == "from-the-page"


def test_a_viewer_sees_no_run_form_and_a_post_is_refused(client, project, scientist, viewer, dataset_version):
    version = do_register_code_version(project, archive=zip_of(FILES), actor=scientist)
    client.force_login(viewer)

    assert "<h2>Run</h2>" not in client.get(version.get_absolute_url()).content.decode()
    refused = client.post(
        version.get_absolute_url(),
        {"entry_point": "evaluate", "inputs": json.dumps({"bike": dataset_version.pk})},
    )
    assert refused.status_code == 403
    assert Job.objects.count() == 0


def test_the_job_page_of_a_code_run_shows_what_it_read_and_wrote(
    client,
    project,
    scientist,
    viewer,
    dataset_version,
    current_dataset_version,
    registered_version,
    bike_training_result,
):
    from governance.actions.model_versions import do_register_model_version
    from runners.code_runs import do_submit_code_run

    version = do_register_code_version(project, archive=zip_of(FILES), actor=scientist)
    job = do_submit_code_run(
        code_version=version,
        entry_point="main",
        parameters={"data": "bike", "epochs": 2},
        inputs={"bike": dataset_version},
        models={"base": registered_version},
        outputs={"datasets": ["cleaned", "features"]},
        actor=scientist,
    )
    # What the run's work records when it succeeds: one output written, one version registered.
    JobDataset.objects.create(
        job=job, role=JobDatasetRole.OUTPUT, name="cleaned", dataset_version=current_dataset_version
    )
    produced = do_register_model_version(
        model=registered_version.model,
        artifact_bytes=bike_training_result.artifact,
        metrics=bike_training_result.metrics,
        signature=bike_training_result.signature,
        training_spec=registered_version.training_spec,
        training_dataset_version=dataset_version,
        source_job_id=job.pk,
        actor=None,
        on_behalf_of=scientist,
    )
    client.force_login(viewer)

    page = client.get(job.get_absolute_url()).content.decode()

    assert f'<dd><a href="{version.get_absolute_url()}">{version}</a></dd>' in page
    assert "<dt>Entry point</dt><dd><code>main</code></dd>" in page
    assert "<code>data=bike</code>, <code>epochs=2</code>, <code>lr=0.01</code>" in page
    assert (
        f'<dt>Input <code>bike</code></dt><dd><a href="{dataset_version.get_absolute_url()}">'
        f"{dataset_version}</a></dd>" in page
    )
    assert (
        f'<dt>Model <code>base</code></dt><dd><a href="{registered_version.get_absolute_url()}">'
        f"{registered_version}</a></dd>" in page
    )
    assert (
        f'<dt>Output <code>cleaned</code></dt><dd><a href="{current_dataset_version.get_absolute_url()}">'
        f"{current_dataset_version}</a></dd>" in page
    )
    assert '<dt>Output <code>features</code></dt><dd><span class="muted">not written yet</span></dd>' in page
    assert f'<dt>Registered</dt><dd><a href="{produced.get_absolute_url()}">{produced}</a></dd>' in page
