"""Train the bag-of-words text classifier on input ``train``, evaluate it and register it
(issue 17's text template).

Logs its parameters, per-epoch training loss and validation accuracy (the epoch is the step),
the final evaluation (accuracy, log loss, macro F1, per-class precision and recall), registers the
model as an MLflow pyfunc that takes the text column and answers the label
(``textclf.TextClassifier``, its code logged beside it) and writes the validation rows
with ``chars``, ``tokens`` and ``prediction`` as output dataset ``reference`` (a drift monitor's
reference data).
"""

from __future__ import annotations

import argparse
import sys

from runners import workload_env


def arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--text-column", default="text")
    parser.add_argument("--label-column", default="label")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=0.01)
    parser.add_argument("--buckets", type=int, default=65536)
    parser.add_argument("--dimensions", type=int, default=32)
    parser.add_argument("--validation-fraction", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model-name", default="text-classifier")
    return parser.parse_args(argv)


def evaluate(truth: list[int], predicted: list[int], classes: list[str]) -> dict[str, float]:
    """Accuracy, macro F1 and each class's precision and recall (0 where undefined)."""
    metrics: dict[str, float] = {}
    f1s = []
    for index, name in enumerate(classes):
        hits = sum(1 for t, p in zip(truth, predicted, strict=True) if t == p == index)
        said = sum(1 for p in predicted if p == index)
        real = sum(1 for t in truth if t == index)
        precision, recall = (hits / said if said else 0.0), (hits / real if real else 0.0)
        metrics[f"precision_{name}"], metrics[f"recall_{name}"] = precision, recall
        f1s.append(2 * precision * recall / (precision + recall) if precision + recall else 0.0)
    metrics["accuracy"] = sum(1 for t, p in zip(truth, predicted, strict=True) if t == p) / len(truth)
    metrics["macro_f1"] = sum(f1s) / len(f1s)
    return metrics


def main(argv: list[str]) -> int:
    args = arguments(argv)
    threads = workload_env.set_torch_threads()
    import mlflow
    import mlflow.pyfunc
    import torch
    from mlflow.models import infer_signature
    from textclf import BagOfWords, TextClassifier, batch, text_features
    from torch import nn

    if min(args.epochs, args.batch_size, args.dimensions) < 1 or not 16 <= args.buckets <= 2**22:
        return workload_env.fail("epochs, batch_size, dimensions must be positive; buckets 16 to 4194304")
    try:
        frame = workload_env.read_input("train")
        for role, column in (("text_column", args.text_column), ("label_column", args.label_column)):
            if column not in frame.columns:
                raise ValueError(f"{role}: column {column!r} is not in the dataset")
        frame = frame[frame[args.label_column].notna()].reset_index(drop=True)
        classes = sorted({str(label) for label in frame[args.label_column]})
        if not 2 <= len(classes) <= 1000:
            raise ValueError(f"label_column: {len(classes)} classes; a classifier needs 2 to 1000")
    except (workload_env.WorkloadError, ValueError) as exc:
        return workload_env.fail(str(exc))
    texts = frame[args.text_column].fillna("").astype(str).tolist()
    index = {name: i for i, name in enumerate(classes)}
    y = torch.tensor([index[str(label)] for label in frame[args.label_column]])

    torch.manual_seed(args.seed)
    order = torch.randperm(len(texts))
    n_val = max(1, round(len(texts) * args.validation_fraction))
    val, train = order[:n_val].tolist(), order[n_val:]
    val_ids, val_offsets = batch([texts[i] for i in val], args.buckets)
    model = BagOfWords(args.buckets, args.dimensions, classes)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.learning_rate)
    loss_fn = nn.CrossEntropyLoss()
    print(f"training on {len(train)} texts of {len(classes)} classes, {threads} thread(s)", flush=True)

    with mlflow.start_run():
        mlflow.log_params({**vars(args), "threads": threads, "classes": ",".join(classes)[:500]})
        for epoch in range(1, args.epochs + 1):
            model.train()
            total = 0.0
            for rows in train[torch.randperm(len(train))].split(args.batch_size):
                ids, offsets = batch([texts[i] for i in rows.tolist()], args.buckets)
                optimizer.zero_grad()
                loss = loss_fn(model(ids, offsets), y[rows])
                loss.backward()
                optimizer.step()
                total += float(loss) * len(rows)
            model.eval()
            with torch.no_grad():
                logits = model(val_ids, val_offsets)
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
        predicted = logits.argmax(1).tolist()
        mlflow.log_metrics({"log_loss": record["val_loss"], **evaluate(y[val].tolist(), predicted, classes)})
        # A pyfunc that takes the text COLUMN (not tensors): served and inferred on plain rows,
        # tokenized and hashed by this template's own code, logged beside it.
        classifier = TextClassifier(model, args.text_column)
        example = frame[[args.text_column]].iloc[:5].fillna("").astype(str)
        mlflow.pyfunc.log_model(
            name="model",
            python_model=classifier,
            registered_model_name=args.model_name,
            signature=infer_signature(example, classifier.predict(None, example)),
            code_paths=["textclf.py"],  # the wrapper, the class and the tokenizer
            # Stated, not inferred: inferring loads the model in yet another process.
            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"],
        )
        reference = text_features(frame.iloc[val], args.text_column)
        reference["prediction"] = [classes[i] for i in predicted]
        path = workload_env.output_dataset("reference")
        reference.to_csv(path, index=False)
        print(f"registered {args.model_name}; wrote {len(reference)} reference rows", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
