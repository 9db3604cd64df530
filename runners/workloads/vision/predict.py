"""Batch inference: label every image of input ``data`` with a registered digits CNN
(``--model-uri models:/<name>/<version>``); writes the rows with a ``prediction`` column and the
model's ``confidence`` (its top softmax probability) to output dataset ``predictions``.

The model is loaded with ``mlflow.pyfunc.load_model``, which unpickles it: this runs only as a
code run, inside its sandbox, never in Steward's web or worker processes."""

from __future__ import annotations

import argparse
import sys

from runners import workload_env


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model-uri", required=True)
    args = parser.parse_args(argv)
    workload_env.set_torch_threads()
    import mlflow.pyfunc

    try:
        rows = workload_env.read_input("data")
    except workload_env.WorkloadError as exc:
        return workload_env.fail(str(exc))
    # The registered wrapper (digits.DigitsClassifier): its probabilities give the confidence
    # that the pyfunc's predict (the label alone) does not.
    classifier = mlflow.pyfunc.load_model(args.model_uri).unwrap_python_model()
    try:
        probabilities = classifier.probabilities(rows)
    except ValueError as exc:
        return workload_env.fail(str(exc))
    output = rows.copy()
    output["prediction"] = probabilities.argmax(1).numpy()
    output["confidence"] = probabilities.max(1).values.numpy()
    path = workload_env.output_dataset("predictions")
    output.to_csv(path, index=False)
    print(f"wrote {len(output)} predictions to {path.name}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
