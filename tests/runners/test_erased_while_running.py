"""A job whose input is erased while it runs (GDPR Art. 17, issue 12) registers nothing made from
it: the job fails naming the erasure. The erasure "while it ran" is made by wrapping the real
child launch (the training runs for real, then the input is erased before the worker registers
the result): the exact moment cannot be reached otherwise in a test."""

from __future__ import annotations

from governance.actions.datasets import do_erase_dataset_version
from governance.models import ModelVersion
from runners import execute
from tests.conftest import small_training_spec, submit_training


def test_a_training_whose_input_is_erased_while_it_runs_registers_nothing(
    monkeypatch, dataset_version, registered_model, scientist, owner
):
    launch = execute._launch

    def launch_then_erase(job, *args, **kwargs):
        result = launch(job, *args, **kwargs)
        do_erase_dataset_version(dataset_version=job.dataset_version, reason="subject request", actor=owner)
        return result

    monkeypatch.setattr(execute, "_launch", launch_then_erase)
    job = submit_training(dataset_version, registered_model, scientist, small_training_spec())

    assert execute.execute_job(job.pk) == "failed"

    job.refresh_from_db()
    assert f"its input {dataset_version} was erased while it ran" in job.error
    assert not ModelVersion.objects.filter(model=registered_model).exists()
