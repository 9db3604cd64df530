"""Train the digits CNN on input ``train``, evaluate it and register it (issue 17's vision template).

Logs its parameters, per-epoch training loss and validation accuracy (with the epoch as step),
the final evaluation (accuracy, log loss, per-class recall) and registers the model
under ``--model-name`` as an MLflow pyfunc that takes the pixel columns p0..p63 and answers the
digit (``digits.DigitsClassifier``, its code logged beside it).
"""

from __future__ import annotations

import argparse
import sys

from digits import LABEL, PIXELS, DigitsClassifier, images, network

from runners import workload_env


def arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=0.003)
    parser.add_argument("--validation-fraction", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model-name", default="digits-cnn")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = arguments(argv)
    threads = workload_env.set_torch_threads()
    import mlflow
    import mlflow.pyfunc
    import torch
    from mlflow.models import infer_signature
    from torch import nn

    if args.epochs < 1 or args.batch_size < 1 or not 0.05 <= args.validation_fraction <= 0.5:
        return workload_env.fail("epochs and batch_size must be positive, validation_fraction 0.05 to 0.5")
    try:
        frame = workload_env.read_input("train")
        if LABEL not in frame.columns:
            raise ValueError(f"column {LABEL!r} missing: the digit each image shows")
        x = images(frame)
        y = torch.tensor(frame[LABEL].to_numpy(dtype="int64"))
        if y.min() < 0 or y.max() > 9:
            raise ValueError(f"column {LABEL!r}: digits are 0 to 9")
    except (workload_env.WorkloadError, ValueError) as exc:
        return workload_env.fail(str(exc))

    torch.manual_seed(args.seed)
    order = torch.randperm(len(x))
    n_val = max(1, round(len(x) * args.validation_fraction))
    val, train = order[:n_val], order[n_val:]
    model = network()
    optimizer = torch.optim.Adam(model.parameters(), lr=args.learning_rate)
    loss_fn = nn.CrossEntropyLoss()
    print(f"training on {len(train)} images, validating on {n_val}, {threads} thread(s)", flush=True)

    with mlflow.start_run() as run:
        mlflow.log_params(
            {**vars(args), "threads": threads, "train_rows": len(train), "validation_rows": n_val}
        )
        for epoch in range(1, args.epochs + 1):
            model.train()
            total = 0.0
            for batch in train[torch.randperm(len(train))].split(args.batch_size):
                optimizer.zero_grad()
                loss = loss_fn(model(x[batch]), y[batch])
                loss.backward()
                optimizer.step()
                total += float(loss) * len(batch)
            model.eval()
            with torch.no_grad():
                logits = model(x[val])
            record = {
                "train_loss": total / len(train),
                "val_loss": float(loss_fn(logits, y[val])),
                "val_accuracy": float((logits.argmax(1) == y[val]).float().mean()),
            }
            mlflow.log_metrics(record, step=epoch, synchronous=False)
            print(
                f"epoch {epoch}/{args.epochs} " + " ".join(f"{k}={v:.4g}" for k, v in record.items()),
                flush=True,
            )
        mlflow.flush_async_logging()
        predicted = logits.argmax(1)
        evaluation = {"accuracy": record["val_accuracy"], "log_loss": record["val_loss"]}
        for digit in range(10):
            shown = y[val] == digit
            if shown.any():
                evaluation[f"recall_{digit}"] = float((predicted[shown] == digit).float().mean())
        mlflow.log_metrics(evaluation)
        # A pyfunc that takes the pixel COLUMNS (not a tensor): served and inferred on plain
        # rows, its signature names the 64 features. Example rows are real images, as floats so
        # integer and fractional intensities both pass the signature.
        classifier = DigitsClassifier(model)
        example = frame[PIXELS].iloc[:5].astype("float64")
        mlflow.pyfunc.log_model(
            name="model",
            python_model=classifier,
            registered_model_name=args.model_name,
            signature=infer_signature(example, classifier.predict(None, example)),
            code_paths=["digits.py"],  # the wrapper and the network, for whoever loads it
            # Stated, not inferred: inferring loads the model in yet another process.
            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"],
        )
        print(f"registered {args.model_name} from run {run.info.run_id}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
