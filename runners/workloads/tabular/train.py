"""Train Steward's tabular MLP on input ``train`` and register it (issue 17's tabular template).

The model, its preprocessing and its training loop are ``runners.training``'s (one definition,
the built-in training job's): this script only reads the run's environment, logs to the job's
MLflow run (parameters, per-epoch metrics with their step, the validation metrics) and registers
the artifact, so the version is flavor ``steward_tabular`` (``torch.load(weights_only=True)``).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from runners import workload_env


def arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--target", required=True)
    parser.add_argument("--features", required=True, help="comma-separated column names")
    parser.add_argument("--categorical", default="")
    parser.add_argument("--task", default="auto")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--hidden-layers", default="64,32")
    parser.add_argument("--validation-fraction", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model-name", default="tabular-mlp")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = arguments(argv)
    threads = workload_env.set_torch_threads()
    # The run's values are sent by a thread of their own, over the standard library: training
    # waits neither for the server nor for ``import mlflow`` (issue 17's runner overhead).
    try:
        log = workload_env.BackgroundRunLog()
    except workload_env.WorkloadError as exc:
        return workload_env.fail(str(exc))

    from runners import training
    from runners.specs import SpecError, parse_spec

    try:
        frame = workload_env.read_input("train")
        categorical = workload_env.names(args.categorical, "categorical")
        raw = {
            "target": args.target,
            "features": workload_env.names(args.features, "features"),
            "categorical": categorical or None,
            "task": args.task,
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "learning_rate": args.learning_rate,
            "hidden_layers": workload_env.integers(args.hidden_layers, "hidden_layers"),
            "validation_fraction": args.validation_fraction,
            "seed": args.seed,
            "checkpoint_every": 0,
        }
        spec = parse_spec(raw, list(frame.columns))
    except (workload_env.WorkloadError, SpecError, ValueError) as exc:
        return workload_env.fail(str(exc))
    print(f"training on {len(frame)} rows, {len(spec.features)} features, {threads} thread(s)", flush=True)
    log.log_params(
        {
            "target": spec.target,
            "features": ",".join(spec.features),
            "categorical": ",".join(spec.categorical or []),
            "task": spec.task,
            "epochs": spec.epochs,
            "batch_size": spec.batch_size,
            "learning_rate": spec.learning_rate,
            "hidden_layers": ",".join(map(str, spec.hidden_layers)),
            "validation_fraction": spec.validation_fraction,
            "seed": spec.seed,
            "threads": threads,
        }
    )

    def on_epoch(epoch: int, epochs: int, record: dict[str, float]) -> None:
        metrics = {key: value for key, value in record.items() if key != "epoch"}
        log.log_metrics(metrics, step=epoch)
        print(f"epoch {epoch}/{epochs} " + " ".join(f"{k}={v:.4g}" for k, v in metrics.items()), flush=True)

    try:
        result = training.train(frame, spec, on_epoch)
    except (training.TrainingError, workload_env.TrackingError) as exc:
        return workload_env.fail(str(exc))
    try:
        # The evaluation on the validation rows, in the target's units (rmse, mae, r2 or accuracy).
        log.log_metrics(result.metrics, step=0)
        api, run_id = log.finish()
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "model.pt"
            path.write_bytes(result.artifact)
            api.upload(run_id, path)
        version = api.register(args.model_name, run_id, "model.pt")
        api.finish_run(run_id)
    except workload_env.TrackingError as exc:
        return workload_env.fail(f"Steward's MLflow API: {exc}")
    print(f"registered {args.model_name} version {version}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
