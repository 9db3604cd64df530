"""Batch inference: label every image of input ``data`` with a registered digits CNN
(``--model-uri models:/<name>/<version>``); writes the rows with a ``prediction`` column and the
model's ``confidence`` (its top softmax probability) to output dataset ``predictions``.

The model is loaded with ``mlflow.pytorch.load_model``, which unpickles it: this runs only as a
code run, inside its sandbox, never in Steward's web or worker processes."""

from __future__ import annotations

import argparse
import sys

from digits import images

from runners import workload_env


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model-uri", required=True)
    args = parser.parse_args(argv)
    workload_env.set_torch_threads()
    import mlflow.pytorch
    import torch

    try:
        rows = workload_env.read_input("data")
        x = images(rows)
    except (workload_env.WorkloadError, ValueError) as exc:
        return workload_env.fail(str(exc))
    model = mlflow.pytorch.load_model(args.model_uri, map_location="cpu")
    model.eval()
    with torch.no_grad():
        probabilities = torch.softmax(model(x), dim=1)
    output = rows.copy()
    output["prediction"] = probabilities.argmax(1).numpy()
    output["confidence"] = probabilities.max(1).values.numpy()
    path = workload_env.output_dataset("predictions")
    output.to_csv(path, index=False)
    print(f"wrote {len(output)} predictions to {path.name}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
