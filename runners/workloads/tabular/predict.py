"""Batch inference with a tabular model version on input ``data`` (issue 17's tabular template).

Reads the version's artifact through Steward's MLflow API (``--model-uri models:/<name>/<version>``
or ``models:/<name>@<alias>``), predicts every row with ``runners.inference`` (the built-in
inference job's code, ``torch.load(weights_only=True)``) and writes the rows with a ``prediction``
column to output dataset ``predictions``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from runners import workload_env


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model-uri", required=True)
    args = parser.parse_args(argv)
    workload_env.set_torch_threads()
    import mlflow

    from runners import inference
    from runners.training import TrainingError

    try:
        rows = workload_env.read_input("data")
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(mlflow.artifacts.download_artifacts(args.model_uri, dst_path=tmp))
            files = [local] if local.is_file() else sorted(p for p in local.rglob("*.pt") if p.is_file())
            if len(files) != 1:
                return workload_env.fail(f"--model-uri: {args.model_uri} is not one Steward tabular artifact")
            model = inference.load_model(files[0].read_bytes())
        output = rows.copy()
        output[inference.PREDICTION_COLUMN] = inference.predict(rows, model)
    except (workload_env.WorkloadError, inference.ArtifactError, TrainingError, ValueError) as exc:
        return workload_env.fail(str(exc))
    path = workload_env.output_dataset("predictions")
    output.to_csv(path, index=False)
    print(f"wrote {len(output)} predictions to {path.name}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
