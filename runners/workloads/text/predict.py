"""Batch inference: classify column ``--text-column`` of input ``data`` with a registered text
classifier (``--model-uri models:/<name>/<version>``); writes the rows with ``chars``, ``tokens``
(the monitored features), ``prediction`` and ``confidence`` to output dataset ``predictions``.

The model is loaded with ``mlflow.pyfunc.load_model``, which unpickles it: this runs only as a
code run, inside its sandbox, never in Steward's web or worker processes."""

from __future__ import annotations

import argparse
import sys

from runners import workload_env


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model-uri", required=True)
    parser.add_argument("--text-column", default="text")
    args = parser.parse_args(argv)
    workload_env.set_torch_threads()
    import mlflow.pyfunc
    from textclf import text_features

    try:
        rows = workload_env.read_input("data")
        if args.text_column not in rows.columns:
            raise ValueError(f"text_column: column {args.text_column!r} is not in the dataset")
    except (workload_env.WorkloadError, ValueError) as exc:
        return workload_env.fail(str(exc))
    # The registered wrapper (textclf.TextClassifier): its network's probabilities give the
    # confidence that the pyfunc's predict (the label alone) does not.
    model = mlflow.pyfunc.load_model(args.model_uri).unwrap_python_model().model
    probabilities = model.probabilities(rows[args.text_column].fillna("").astype(str).tolist())
    output = text_features(rows, args.text_column)
    output["prediction"] = [model.classes[i] for i in probabilities.argmax(1).tolist()]
    output["confidence"] = probabilities.max(1).values.numpy()
    path = workload_env.output_dataset("predictions")
    output.to_csv(path, index=False)
    print(f"wrote {len(output)} predictions to {path.name}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
