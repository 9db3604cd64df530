"""The plain training and inference engines on the real bike-sharing and adult data (no Django rows)."""

from __future__ import annotations

import io
import math
import pickle

import numpy as np
import pandas as pd
import pytest
import torch

from governance import datafiles
from runners import inference, specs, training
from tests.conftest import ADULT, BIKE_FEATURES, small_training_spec

REGRESSION_METRICS = {"loss", "rmse", "mae", "r2", "train_rows", "validation_rows"}


@pytest.fixture(scope="module")
def adult_frame() -> pd.DataFrame:
    return datafiles.read_frame(ADULT, "csv")


@pytest.fixture(scope="module")
def adult_result(adult_frame):
    features = [c for c in adult_frame.columns if c != "label"]
    spec = specs.parse_spec({"target": "label", "features": features, "epochs": 2}, list(adult_frame.columns))
    return training.train(adult_frame, spec)


def _spec(frame: pd.DataFrame, **changes) -> specs.TrainingSpec:
    return specs.parse_spec(small_training_spec() | changes, list(frame.columns))


def test_regression_on_the_2011_rows(bike_training_result):
    result = bike_training_result

    assert [record["epoch"] for record in result.history] == [1, 2, 3]
    assert {frozenset(record) for record in result.history} == {
        frozenset({"epoch", "train_loss", "val_loss", "val_rmse", "val_mae", "val_r2"})
    }
    assert set(result.metrics) == REGRESSION_METRICS
    # 8,645 rows of 2011: a fifth (1,729) held out for validation.
    assert (result.metrics["train_rows"], result.metrics["validation_rows"]) == (6916.0, 1729.0)
    assert result.metrics["rmse"] == result.history[-1]["val_rmse"]
    assert result.metrics["r2"] == result.history[-1]["val_r2"]
    assert all(math.isfinite(value) for record in result.history for value in record.values())
    assert result.metrics["r2"] > 0
    assert result.signature == {
        "task": "regression",
        "target": "cnt",
        "features": BIKE_FEATURES,
        "categorical": ["season", "weathersit"],
    }
    assert result.device == str(training.select_device())


def test_artifact_loads_without_unpickling_code(bike_training_result, bike_frame):
    payload = torch.load(io.BytesIO(bike_training_result.artifact), weights_only=True)

    assert set(payload) == {"format", "architecture", "state_dict", "preprocessing", "signature"}
    assert payload["format"] == "steward.tabular_mlp/1"
    categories = payload["preprocessing"]["categorical"]
    assert categories["season"] == ["1", "2", "3", "4"]
    assert categories["weathersit"] == sorted(
        str(v) for v in bike_frame[bike_frame["yr"] == 0]["weathersit"].unique()
    )
    width = 9 + len(categories["season"]) + len(categories["weathersit"])
    assert payload["architecture"] == {"input_dim": width, "hidden_layers": [64, 32], "output_dim": 1}
    assert {name: tuple(t.shape) for name, t in payload["state_dict"].items()} == {
        "net.0.weight": (64, width),
        "net.0.bias": (64,),
        "net.2.weight": (32, 64),
        "net.2.bias": (32,),
        "net.4.weight": (1, 32),
        "net.4.bias": (1,),
    }
    assert set(payload["preprocessing"]["numeric"]) == set(BIKE_FEATURES) - {"season", "weathersit"}
    assert payload["preprocessing"]["target"]["task"] == "regression"


def test_predict_returns_one_value_per_row(bike_training_result, bike_frame):
    rows = bike_frame[bike_frame["yr"] == 1]
    model = inference.load_model(bike_training_result.artifact)

    predictions = inference.predict(rows, model)

    assert len(predictions) == 8734
    assert predictions.index.equals(rows.index)
    assert predictions.name == "prediction"
    assert predictions.dtype == np.float64
    assert bool(np.isfinite(predictions).all())


def test_predict_in_batches_gives_the_same_values(bike_training_result, bike_frame):
    rows = bike_frame.head(1000)
    model = inference.load_model(bike_training_result.artifact)

    whole = inference.predict(rows, model)
    batched = inference.predict(rows, model, batch_size=7)

    assert np.allclose(whole.to_numpy(), batched.to_numpy(), rtol=0, atol=1e-4)


def test_predict_tolerates_unseen_categories_and_missing_numbers(bike_training_result, bike_frame):
    rows = bike_frame.head(3).copy()
    rows["season"] = [9, 9, 9]
    rows["hum"] = [np.nan, np.inf, 0.5]
    model = inference.load_model(bike_training_result.artifact)

    predictions = inference.predict(rows, model)

    assert len(predictions) == 3
    assert bool(np.isfinite(predictions).all())


def test_predict_names_a_missing_feature(bike_training_result, bike_frame):
    model = inference.load_model(bike_training_result.artifact)

    with pytest.raises(
        training.TrainingError, match=r"^column\(s\) 'hum', 'windspeed' missing from the data$"
    ):
        inference.predict(bike_frame.drop(columns=["hum", "windspeed"]), model)
    with pytest.raises(training.TrainingError, match=r"^no rows to predict on$"):
        inference.predict(bike_frame.head(0), model)


def test_same_seed_gives_identical_artifact_and_metrics(bike_frame):
    rows = bike_frame[bike_frame["yr"] == 0]

    # Both runs here, under one torch thread count: the session's fixture may have trained under
    # another (a test before this one may set it), and the float sums then differ in the last bit.
    first = training.train(rows, _spec(bike_frame))
    again = training.train(rows, _spec(bike_frame))
    other_seed = training.train(rows, _spec(bike_frame, seed=2))

    assert again.artifact == first.artifact
    assert again.metrics == first.metrics
    assert again.history == first.history
    assert other_seed.artifact != first.artifact


def test_on_epoch_sees_every_epoch_and_can_stop_training(bike_frame):
    rows = bike_frame[bike_frame["yr"] == 0].head(500)
    seen = []

    def stop_after_two(epoch, epochs, record):
        seen.append((epoch, epochs, record["epoch"]))
        if epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        training.train(rows, _spec(bike_frame, epochs=5), stop_after_two)

    assert seen == [(1, 5, 1), (2, 5, 2)]


def test_classification_on_the_adult_data(adult_result, adult_frame):
    """Leading spaces are kept in labels and categories; '?' is a category of its own."""
    result = adult_result
    payload = torch.load(io.BytesIO(result.artifact), weights_only=True)

    assert result.signature["task"] == "classification"
    assert result.signature["categorical"] == [
        "education",
        "marital-status",
        "native-country",
        "occupation",
        "race",
        "relationship",
        "sex",
        "workclass",
    ]
    assert payload["preprocessing"]["target"] == {"task": "classification", "classes": [" <=50K", " >50K"]}
    assert " ?" in payload["preprocessing"]["categorical"]["workclass"]
    assert " ?" in payload["preprocessing"]["categorical"]["native-country"]
    assert set(result.metrics) == {"loss", "accuracy", "log_loss", "train_rows", "validation_rows"}
    assert (result.metrics["train_rows"], result.metrics["validation_rows"]) == (26049.0, 6512.0)
    assert result.metrics["log_loss"] == result.metrics["loss"]
    assert 0 <= result.metrics["accuracy"] <= 1
    assert [record["epoch"] for record in result.history] == [1, 2]


def test_classifier_predicts_labels_for_every_row(adult_result, adult_frame):
    predictions = inference.predict(adult_frame, inference.load_model(adult_result.artifact))

    assert len(predictions) == 32561
    assert set(predictions.unique()) <= {" <=50K", " >50K"}


TEMP = {"target": "cnt", "features": ["temp"]}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("cnt", "spec: expected a JSON object"),
        (TEMP | {"target": 3}, "target: required, the name of the column to predict"),
        (TEMP | {"features": "temp"}, "features: required, a non-empty list of column names"),
        (TEMP | {"validation_fraction": 0.6}, "validation_fraction: must be between 0.05 and 0.5, got 0.6"),
        (TEMP | {"batch_size": 0}, "batch_size: must be between 1 and 65536, got 0"),
        (TEMP | {"seed": -1}, "seed: must be between 0 and 2147483647, got -1"),
        (TEMP | {"hidden_layers": []}, "hidden_layers: 1 to 8 layer widths, each an integer from 1 to 4096"),
        (
            TEMP | {"hidden_layers": [True]},
            "hidden_layers: 1 to 8 layer widths, each an integer from 1 to 4096",
        ),
        (TEMP | {"categorical": "temp"}, "categorical: must be a list of names taken from features"),
        (TEMP | {"where": ["yr", 0]}, "where: expected an object of column -> value, got ['yr', 0]"),
        (TEMP | {"where": {"yr": {"gt": 0}}}, "where: 'yr' needs a value or a non-empty list of values"),
    ],
)
def test_spec_errors_name_the_field(bike_frame, raw, message):
    with pytest.raises(specs.SpecError) as raised:
        specs.parse_spec(raw, list(bike_frame.columns))

    assert str(raised.value) == message


def test_spec_round_trips_with_defaults(bike_frame):
    spec = specs.parse_spec({"target": "cnt", "features": ["temp", "hr"]}, list(bike_frame.columns))

    assert spec.as_dict() == {
        "target": "cnt",
        "features": ["temp", "hr"],
        "task": "auto",
        "categorical": None,
        "epochs": 20,
        "batch_size": 256,
        "learning_rate": 0.001,
        "seed": 0,
        "hidden_layers": [64, 32],
        "validation_fraction": 0.2,
        "where": {},
        "checkpoint_every": 1,
        "limits": {},
        "resources": {},
    }
    assert specs.parse_spec(spec.as_dict(), list(bike_frame.columns)) == spec


def test_missing_targets_are_named_by_their_data_row(bike_frame):
    """Rows keep their labels through a row filter: the message points into the file."""
    rows = bike_frame[bike_frame["yr"] == 1].copy()
    rows["cnt"] = rows["cnt"].astype("float64")
    rows.loc[[9000, 9049], "cnt"] = np.nan

    with pytest.raises(training.TrainingError) as raised:
        training.train(rows, _spec(bike_frame, where={"yr": 1}))

    assert str(raised.value) == "target column 'cnt' has 2 missing value(s) (first at data row 9001)"


def test_infinite_feature_is_named_by_its_data_row(bike_frame):
    rows = bike_frame.iloc[[120, 105, 140, 103, 111]].copy()
    rows.loc[[105, 103], "temp"] = np.inf

    with pytest.raises(training.TrainingError) as raised:
        training.fit_preprocessing(rows, _spec(bike_frame))

    assert str(raised.value) == "feature 'temp' has an infinite value (data row 104)"


def test_data_that_cannot_be_trained_on(bike_frame):
    rows = bike_frame[bike_frame["yr"] == 0]
    cases = [
        (rows.head(9), _spec(bike_frame), "need at least 10 training rows, got 9"),
        (
            rows,
            _spec(bike_frame, task="classification"),
            f"target column 'cnt' has {rows['cnt'].nunique()} classes; classification needs 2 to 50",
        ),
        (
            rows.assign(flag="yes"),
            _spec(bike_frame.assign(flag=""), target="flag", features=["temp"], categorical=None),
            "target column 'flag' has 1 classes; classification needs 2 to 50",
        ),
        (
            rows.assign(windspeed=np.nan),
            _spec(bike_frame),
            "feature 'windspeed' has no values in the training rows",
        ),
    ]
    for frame, spec, message in cases:
        with pytest.raises(training.TrainingError) as raised:
            training.train(frame, spec)
        assert str(raised.value) == message


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"not a zip", "not a loadable model artifact"),
        (pickle.dumps({"format": "steward.tabular_mlp/1"}), "not a loadable model artifact"),
    ],
)
def test_load_model_refuses_what_is_not_an_artifact(data, message):
    with pytest.raises(inference.ArtifactError, match=rf"^{message}"):
        inference.load_model(data)


def test_load_model_refuses_another_format():
    buffer = io.BytesIO()
    torch.save({"format": "other/2", "state_dict": {}}, buffer)

    with pytest.raises(inference.ArtifactError, match=r"^artifact format is not steward.tabular_mlp/1$"):
        inference.load_model(buffer.getvalue())


class _Payload:
    """Arbitrary code on unpickling: ``weights_only=True`` must refuse it."""

    def __reduce__(self):
        return (print, ("unpickled code ran",))


def test_load_model_refuses_pickled_code(capsys):
    buffer = io.BytesIO()
    torch.save({"format": "steward.tabular_mlp/1", "payload": _Payload()}, buffer)

    with pytest.raises(inference.ArtifactError, match=r"^not a loadable model artifact"):
        inference.load_model(buffer.getvalue())

    assert "unpickled code ran" not in capsys.readouterr().out
