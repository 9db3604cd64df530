"""The Kubernetes backend (issue 16): manifests rendered per job, validated against the
Kubernetes OpenAPI schemas, never submitted (there is no cluster here).

``kubernetes-validate`` ships the schemas of the built-in kinds only: a Kubeflow PyTorchJob is a
custom resource it has no schema for (it raises SchemaNotFoundError, asserted below), so each of its
replicas' pod templates is validated as a core/v1 PodTemplate instead, and the PyTorchJob's own
fields are asserted as values. No GPU here either: the jobs' ``gpus`` is set on the row, as the
resource-class submission would set it.
"""

from __future__ import annotations

import kubernetes_validate
import pytest
import yaml

from governance.models import AuditEvent
from runners import tasks
from runners.actions import do_submit_job
from runners.models import Job, JobBackend, JobState

K8S_VERSION = "1.33"


@pytest.fixture
def job(dataset_version, registered_model, scientist, training_spec) -> Job:
    spec = training_spec | {"limits": {"wall_time_s": 7200, "memory_mb": 4096, "threads": 2}}
    return do_submit_job(
        kind="train",
        dataset_version=dataset_version,
        registered_model=registered_model,
        spec=spec,
        actor=scientist,
    )


def _manifest(client, job_id: int) -> dict:
    response = client.get(f"/api/jobs/{job_id}/kubernetes-manifest/")
    assert (response.status_code, response["Content-Type"]) == (200, "application/yaml"), response.content
    return yaml.safe_load(response.content)


def _as_pod_template(template: dict) -> dict:
    return {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "check"}, "template": template}


def test_a_one_process_job_is_a_valid_batch_v1_job_with_its_limits(client_for, viewer, job, team, settings):
    settings.STEWARD_JOB_MAX_ATTEMPTS = 3
    manifest = _manifest(client_for(viewer), job.pk)

    assert kubernetes_validate.validate(manifest, K8S_VERSION, strict=True) == K8S_VERSION
    assert (manifest["apiVersion"], manifest["kind"], manifest["metadata"]["name"]) == (
        "batch/v1",
        "Job",
        f"steward-job-{job.pk}",
    )
    assert manifest["metadata"]["labels"]["steward.io/team"] == team.slug
    assert manifest["metadata"]["labels"]["steward.io/job-id"] == str(job.pk)
    spec = manifest["spec"]
    assert (spec["activeDeadlineSeconds"], spec["backoffLimit"]) == (7200, 2)
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["restartPolicy"] == "Never"
    assert container["command"] == ["python", "-m", "runners.child", "/task/task.json"]
    assert container["resources"] == {
        "requests": {"cpu": "2", "memory": "4096Mi"},
        "limits": {"cpu": "2", "memory": "4096Mi"},
    }


def test_a_job_on_one_gpu_asks_for_it_in_its_job(client_for, scientist, job):
    Job.objects.filter(pk=job.pk).update(gpus=1)  # test set-up: the resource class's GPU count

    manifest = _manifest(client_for(scientist), job.pk)

    kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)
    (container,) = manifest["spec"]["template"]["spec"]["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert container["resources"]["requests"]["nvidia.com/gpu"] == "1"


def test_a_multi_gpu_job_is_a_pytorchjob_whose_pod_templates_are_valid(client_for, scientist, job, settings):
    settings.STEWARD_KUBERNETES_GPUS_PER_NODE = 4
    Job.objects.filter(pk=job.pk).update(gpus=8)

    manifest = _manifest(client_for(scientist), job.pk)

    with pytest.raises(kubernetes_validate.SchemaNotFoundError):
        kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)  # a CRD: no schema shipped
    assert (manifest["apiVersion"], manifest["kind"]) == ("kubeflow.org/v1", "PyTorchJob")
    spec = manifest["spec"]
    assert spec["nprocPerNode"] == "4"
    assert spec["runPolicy"]["activeDeadlineSeconds"] == 7200
    replicas = spec["pytorchReplicaSpecs"]
    assert {name: replica["replicas"] for name, replica in replicas.items()} == {"Master": 1, "Worker": 1}
    for replica in replicas.values():
        kubernetes_validate.validate(_as_pod_template(replica["template"]), K8S_VERSION, strict=True)
        (container,) = replica["template"]["spec"]["containers"]
        assert container["name"] == "pytorch"  # the training operator looks for this name
        assert container["command"][:4] == ["python", "-m", "torch.distributed.run", "-m"]
        assert container["resources"]["limits"]["nvidia.com/gpu"] == "4"


def test_gpus_that_do_not_split_over_nodes_are_a_400(client_for, scientist, job, settings):
    settings.STEWARD_KUBERNETES_GPUS_PER_NODE = 4
    Job.objects.filter(pk=job.pk).update(gpus=6)

    response = client_for(scientist).get(f"/api/jobs/{job.pk}/kubernetes-manifest/")

    assert (response.status_code, response.json()) == (
        400,
        {"gpus": ["gpus: 6 GPUs do not split evenly over nodes of 4; ask for a multiple of 4"]},
    )


def test_the_manifest_is_for_those_who_may_view_the_job(client_for, outsider, job):
    assert client_for(outsider).get(f"/api/jobs/{job.pk}/kubernetes-manifest/").status_code == 404


def test_submitting_to_kubernetes_is_refused_unless_the_deployment_enables_it(
    client_for, scientist, dataset_version, registered_model, training_spec
):
    body = {
        "kind": "train",
        "dataset_version": dataset_version.pk,
        "registered_model": registered_model.pk,
        "spec": training_spec | {"backend": "kubernetes"},
    }

    response = client_for(scientist).post("/api/jobs/", body, format="json")

    assert (response.status_code, response.json()) == (
        400,
        {
            "spec": [
                "backend: 'kubernetes': this deployment does not submit to Kubernetes "
                "(STEWARD_KUBERNETES_SUBMIT is off); use 'local' or 'ray' (GET /api/jobs/<id>/kubernetes-"
                "manifest/ shows the manifest of any job)"
            ]
        },
    )
    assert not Job.objects.exists()
    assert not AuditEvent.objects.filter(object_type="job").exists()


def test_an_enabled_kubernetes_job_is_left_to_its_submitter_never_sent_to_celery(
    client_for, scientist, dataset_version, registered_model, training_spec, settings,
    django_capture_on_commit_callbacks,
):  # fmt: skip
    settings.STEWARD_KUBERNETES_SUBMIT = True
    body = {
        "kind": "train",
        "dataset_version": dataset_version.pk,
        "registered_model": registered_model.pk,
        "spec": training_spec | {"backend": "kubernetes"},
    }

    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(scientist).post("/api/jobs/", body, format="json")

    assert (response.status_code, response.json()["backend"]) == (201, "kubernetes")
    assert tasks.redispatch_queued_jobs() == []
    job = Job.objects.get()
    assert (job.backend, job.state, job.dispatch_count) == (JobBackend.KUBERNETES, JobState.QUEUED, 0)
    assert "backend" not in job.spec  # the job's, not the computation's


def test_a_bad_backend_is_a_400_naming_it(
    client_for, scientist, dataset_version, registered_model, training_spec
):
    body = {
        "kind": "train",
        "dataset_version": dataset_version.pk,
        "registered_model": registered_model.pk,
        "spec": training_spec | {"backend": "slurm"},
    }

    response = client_for(scientist).post("/api/jobs/", body, format="json")

    assert (response.status_code, response.json()) == (
        400,
        {"spec": ["backend: one of local, ray, kubernetes; got 'slurm'"]},
    )
