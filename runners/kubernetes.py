"""Kubernetes manifests for a job (issue 16): documented and validated, not submitted by Steward.

A job on one process (or one GPU) is a ``batch/v1`` Job; a job asking for several GPUs is a
Kubeflow training-operator ``kubeflow.org/v1`` PyTorchJob whose pods run the child under
``torch.distributed.run`` (the operator sets ``PET_NNODES``, ``PET_NPROC_PER_NODE``,
``PET_NODE_RANK`` and ``MASTER_ADDR``/``MASTER_PORT``, which torchrun reads). Either way the
container runs the same child protocol as a local worker, ``python -m runners.child
/task/task.json``: the task file comes from a ConfigMap the submitter creates from the job's task
(``steward-job-<id>-task``), the dataset and artifacts from a shared volume (a PVC) mounted where
the workers keep them.

No Django import: ``ManifestInputs`` carries what the manifest needs, and tests validate the
output against the Kubernetes OpenAPI schemas (``kubernetes-validate``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import yaml

CHILD_COMMAND = ["python", "-m", "runners.child", "/task/task.json"]
DISTRIBUTED_COMMAND = ["python", "-m", "torch.distributed.run", "-m", "runners.child", "/task/task.json"]


class ManifestError(ValueError):
    """The job cannot be laid out as a manifest (e.g. GPUs that do not split evenly over nodes)."""


@dataclass(frozen=True)
class ManifestInputs:
    """What a job's manifest is made of.

    ``threads``: CPU cores requested and capped (cpu requests = limits); ``memory_mb``: the memory
    limit in MiB (None: none); ``wall_time_s``: ``activeDeadlineSeconds`` (None: none); ``gpus``:
    ``nvidia.com/gpu`` over the whole job; ``max_attempts``: tries in all (a Job's
    ``backoffLimit`` counts the retries, so it is one less); ``gpus_per_node``: the most GPUs one
    pod gets (a PyTorchJob spreads the rest over Worker pods).
    """

    job_id: int
    team: str
    kind: str
    image: str
    namespace: str
    artifacts_claim: str
    artifact_root: str
    threads: int
    memory_mb: int | None
    wall_time_s: int | None
    gpus: int
    max_attempts: int
    gpus_per_node: int = 8

    @property
    def name(self) -> str:
        return f"steward-job-{self.job_id}"

    @property
    def labels(self) -> dict[str, str]:
        return {
            "app.kubernetes.io/name": "steward-job",
            "app.kubernetes.io/managed-by": "steward",
            "steward.io/team": self.team[:63],
            "steward.io/job-id": str(self.job_id),
            "steward.io/kind": self.kind,
        }


def _resources(inputs: ManifestInputs, gpus: int) -> dict[str, dict[str, str]]:
    # Requests equal limits: the scheduler places the pod where the job's limits fit (Guaranteed
    # QoS), and Kubernetes requires a GPU's request to equal its limit.
    amounts = {"cpu": str(inputs.threads)}
    if inputs.memory_mb is not None:
        amounts["memory"] = f"{inputs.memory_mb}Mi"
    if gpus:
        amounts["nvidia.com/gpu"] = str(gpus)
    return {"requests": dict(amounts), "limits": dict(amounts)}


def _pod_template(
    inputs: ManifestInputs, container_name: str, command: list[str], gpus: int, restart_policy: str
) -> dict[str, Any]:
    """A core/v1 PodTemplateSpec running ``command`` with the task file and the artifacts mounted."""
    threads = str(inputs.threads)
    return {
        "metadata": {"labels": inputs.labels},
        "spec": {
            "restartPolicy": restart_policy,
            "containers": [
                {
                    "name": container_name,
                    "image": inputs.image,
                    "command": command,
                    # The same thread caps a local child gets (runners.launcher).
                    "env": [
                        {"name": "OMP_NUM_THREADS", "value": threads},
                        {"name": "MKL_NUM_THREADS", "value": threads},
                        {"name": "STEWARD_ARTIFACT_ROOT", "value": inputs.artifact_root},
                    ],
                    "resources": _resources(inputs, gpus),
                    "volumeMounts": [
                        {"name": "task", "mountPath": "/task", "readOnly": True},
                        {"name": "artifacts", "mountPath": inputs.artifact_root},
                    ],
                }
            ],
            "volumes": [
                {"name": "task", "configMap": {"name": f"{inputs.name}-task"}},
                {"name": "artifacts", "persistentVolumeClaim": {"claimName": inputs.artifacts_claim}},
            ],
        },
    }


def _metadata(inputs: ManifestInputs) -> dict[str, Any]:
    return {"name": inputs.name, "namespace": inputs.namespace, "labels": inputs.labels}


def batch_job(inputs: ManifestInputs) -> dict[str, Any]:
    """A ``batch/v1`` Job running the child once per attempt (restartPolicy Never, ``backoffLimit``
    retries), killed at ``activeDeadlineSeconds`` = the job's wall time."""
    spec: dict[str, Any] = {
        "backoffLimit": max(inputs.max_attempts - 1, 0),
        "template": _pod_template(inputs, "job", CHILD_COMMAND, inputs.gpus, "Never"),
    }
    if inputs.wall_time_s is not None:
        spec["activeDeadlineSeconds"] = inputs.wall_time_s
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": _metadata(inputs), "spec": spec}


def pytorch_job(inputs: ManifestInputs) -> dict[str, Any]:
    """A Kubeflow ``PyTorchJob``: one Master pod and ``nodes - 1`` Worker pods of
    ``nprocPerNode`` GPUs each (nodes = ceil(gpus / gpus_per_node)). Raises ManifestError when
    the GPUs do not split evenly over the nodes (torchrun runs the same count on each)."""
    per_node = min(inputs.gpus, inputs.gpus_per_node)
    nodes = math.ceil(inputs.gpus / per_node)
    if per_node * nodes != inputs.gpus:
        raise ManifestError(
            f"gpus: {inputs.gpus} GPUs do not split evenly over nodes of {inputs.gpus_per_node}; "
            f"ask for a multiple of {inputs.gpus_per_node}"
        )
    # The operator finds the container by its name, "pytorch"; a failed pod restarts in place,
    # counted against runPolicy.backoffLimit (the pod template says the same restart policy).
    replica = {
        "restartPolicy": "OnFailure",
        "template": _pod_template(inputs, "pytorch", DISTRIBUTED_COMMAND, per_node, "OnFailure"),
    }
    replicas: dict[str, Any] = {"Master": {"replicas": 1, **replica}}
    if nodes > 1:
        replicas["Worker"] = {"replicas": nodes - 1, **replica}
    run_policy: dict[str, Any] = {"backoffLimit": max(inputs.max_attempts - 1, 0), "cleanPodPolicy": "None"}
    if inputs.wall_time_s is not None:
        run_policy["activeDeadlineSeconds"] = inputs.wall_time_s
    return {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "metadata": _metadata(inputs),
        "spec": {"nprocPerNode": str(per_node), "runPolicy": run_policy, "pytorchReplicaSpecs": replicas},
    }


def manifest(inputs: ManifestInputs) -> dict[str, Any]:
    """The job's manifest: a PyTorchJob past one GPU, else a batch/v1 Job."""
    return pytorch_job(inputs) if inputs.gpus > 1 else batch_job(inputs)


def to_yaml(document: dict[str, Any]) -> str:
    """``document`` as YAML in the order written (what ``kubectl apply -f -`` reads)."""
    return yaml.safe_dump(document, sort_keys=False, default_flow_style=False)
