"""Code runs (issue 17): a user's code version run by a worker in its sandbox, through the
worker's plain function ``execute_job``, with the real bike data."""

from __future__ import annotations

import pytest

from runners.code_runs import do_submit_code_run
from runners.execute import execute_job
from runners.models import Job, JobDatasetRole, JobLogChunk
from tests.runners.code_fixtures import make_code_version

PREPARE = {
    "MLproject": """
        name: bike-prep
        entry_points:
          prepare:
            parameters:
              hours: {type: path}
              min_cnt: {type: int, default: 1}
            command: "python prepare.py {hours} {min_cnt}"
    """,
    "prepare.py": """
        import os, sys
        import pandas as pd
        source, min_cnt = sys.argv[1], int(sys.argv[2])
        frame = pd.read_csv(source)
        print(f"read {len(frame)} rows from {os.path.basename(source)}")
        print("a warning on stderr", file=sys.stderr)
        daily = frame[frame["cnt"] >= min_cnt].groupby("dteday", as_index=False)["cnt"].sum()
        out = os.path.join(os.environ["STEWARD_OUTPUT_DIR"], "datasets")
        daily.to_csv(os.path.join(out, "bike-daily.csv"), index=False)
        print(f"wrote {len(daily)} days")
    """,
}


@pytest.mark.django_db
def test_data_preparation_run_registers_its_output(team, scientist, dataset_version):
    code = make_code_version(team, scientist, PREPARE)
    job = do_submit_code_run(
        code_version=code,
        entry_point="prepare",
        parameters={"hours": "hours"},
        inputs={"hours": dataset_version},
        outputs={"datasets": ["bike-daily"]},
        actor=scientist,
    )
    assert execute_job(job.pk) == "succeeded", Job.objects.get(pk=job.pk).error
    job.refresh_from_db()
    text = "".join(JobLogChunk.objects.filter(job=job).values_list("text", flat=True))
    assert "read 17379 rows from hours.csv\n" in text
    assert "a warning on stderr\n" in text
    output = job.datasets.get(role=JobDatasetRole.OUTPUT)
    assert output.name == "bike-daily"
    assert output.dataset_version.row_count == 731
