"""Drift of text and embedding columns (issue 11): MMD with a permutation test on raw rows, through
the drift-check API and the worker's check function, on the SpamAssassin corpus that ships in
``demo_data/`` (ham and spam e-mails), its texts and vectors made from them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from django.utils.html import escape

from governance.actions.datasets import do_create_dataset, do_register_dataset_version
from governance.actions.model_versions import do_register_model_version_from_artifact
from governance.actions.registered_models import do_create_registered_model
from governance.models import DatasetVersion
from monitoring.engine.embedding import as_vectors, compare_column, text_vectors
from monitoring.execute import execute_drift_check
from monitoring.models import DriftCheck

pytestmark = pytest.mark.django_db

SPAM = Path(__file__).resolve().parents[2] / "demo_data" / "spam-assassin" / "spam-assassin.csv"
ROWS = 300  # a side: enough for the test to see ham against spam, cheap enough for CI


@pytest.fixture(scope="module")
def mails() -> dict[str, pd.Series]:
    """Three disjoint sets of ROWS texts: two of ham, one of spam (seeded)."""
    frame = pd.read_csv(SPAM)
    ham = frame.loc[frame["label"] == "ham", "text"].sample(n=2 * ROWS, random_state=3).reset_index(drop=True)
    spam = frame.loc[frame["label"] == "spam", "text"].sample(n=ROWS, random_state=3).reset_index(drop=True)
    return {"ham": ham[:ROWS], "ham2": ham[ROWS:].reset_index(drop=True), "spam": spam}


def _register(dataset, frame: pd.DataFrame, path: Path, actor) -> DatasetVersion:
    if path.suffix == ".parquet":
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False)
    return do_register_dataset_version(
        dataset=dataset, file_path=path, filename=path.name, source=DatasetVersion.Source.UPLOAD, actor=actor
    )


def _model_on(reference: DatasetVersion, team, owner, scientist, tmp_path):
    """A model version trained on ``reference`` (its file is not read by a check without predictions)."""
    model = do_create_registered_model(team=team, name="spam-filter", owner=owner, actor=scientist)
    artifact = tmp_path / "model.txt"
    artifact.write_text("a text classifier\n")
    return do_register_model_version_from_artifact(
        model=model,
        artifact_path=artifact,
        source="test:spam-filter",
        training_dataset_version_id=reference.pk,
        actor=scientist,
    )


def _check(client, model_version, current: DatasetVersion, **options) -> DriftCheck:
    response = client.post(
        "/api/drift-checks/",
        {
            "model_version": model_version.pk,
            "current_dataset_version": current.pk,
            "make_report": False,
            **options,
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    execute_drift_check(response.json()["id"], make_report=False)
    return DriftCheck.objects.get(pk=response.json()["id"])


def _column(check: DriftCheck, name: str) -> dict:
    return next(result for result in check.results if result["column"] == name)


def test_a_text_column_drifts_from_ham_to_spam_and_not_between_two_ham_samples(
    mails, client, client_for, team, owner, scientist, tmp_path
):
    dataset = do_create_dataset(team=team, name="mail", actor=scientist)
    reference = _register(dataset, pd.DataFrame({"text": mails["ham"]}), tmp_path / "ham.csv", scientist)
    same = _register(dataset, pd.DataFrame({"text": mails["ham2"]}), tmp_path / "ham2.csv", scientist)
    spam = _register(dataset, pd.DataFrame({"text": mails["spam"]}), tmp_path / "spam.csv", scientist)
    model_version = _model_on(reference, team, owner, scientist, tmp_path)
    api = client_for(scientist)
    options = {"columns": ["text"], "column_kinds": {"text": "text"}}

    quiet = _check(api, model_version, same, **options)
    drifted = _check(api, model_version, spam, **options)

    assert (quiet.state, drifted.state) == ("succeeded", "succeeded")
    calm, moved = _column(quiet, "text"), _column(drifted, "text")
    assert (calm["kind"], calm["method"], calm["status"]) == ("text", "mmd", "ok")
    assert calm["score"] >= 0.05
    assert (moved["kind"], moved["method"], moved["status"]) == ("text", "mmd", "drift")
    assert moved["score"] < 0.05
    assert moved["threshold"] == 0.05
    assert "classifier AUC" in moved["message"]
    assert (moved["reference_count"], moved["current_count"]) == (ROWS, ROWS)
    # It counts in the dataset verdict like any column: 1 of 1 drifted.
    assert (drifted.drifted_count, drifted.is_dataset_drift, quiet.is_dataset_drift) == (1, True, False)
    # The page shows the text column's row: kind, method, verdict, the sample sizes in its message.
    client.force_login(scientist)
    page = client.get(drifted.get_absolute_url()).content.decode()
    assert "<td>text</td>" in page
    assert "<td>mmd</td>" in page
    assert "<strong>drifted</strong>" in page
    assert escape(moved["message"]) in page


def test_an_embedding_column_in_parquet_drifts_and_bad_vectors_are_the_columns_error(
    mails, client_for, team, owner, scientist, tmp_path
):
    # Vectors of the real texts (hashed TF-IDF + SVD, 64 dimensions), stored as Parquet lists.
    # One embedding space for all three sets (one fit), as a real embedding model would give.
    hams, spam = text_vectors([*mails["ham"], *mails["ham2"]], mails["spam"].tolist(), seed=0)
    ham, ham2 = hams[:ROWS], hams[ROWS:]
    dataset = do_create_dataset(team=team, name="mail-embeddings", actor=scientist)

    def frame(vectors: np.ndarray, texts: pd.Series) -> pd.DataFrame:
        return pd.DataFrame({"embedding": list(vectors), "chars": texts.str.len()})

    reference = _register(dataset, frame(ham, mails["ham"]), tmp_path / "ham.parquet", scientist)
    spam_version = _register(dataset, frame(spam, mails["spam"]), tmp_path / "spam.parquet", scientist)
    ragged = frame(spam, mails["spam"]).assign(
        embedding=[v[:10] if i == 7 else v for i, v in enumerate(spam)]
    )
    ragged_version = _register(dataset, ragged, tmp_path / "ragged.parquet", scientist)
    model_version = _model_on(reference, team, owner, scientist, tmp_path)
    client = client_for(scientist)
    options = {
        "columns": ["embedding", "chars"],
        "column_kinds": {"embedding": "embedding"},
        "min_sample_size": 100,
    }

    drifted = _check(client, model_version, spam_version, **options)
    broken = _check(client, model_version, ragged_version, **options)

    moved = _column(drifted, "embedding")
    assert (moved["status"], moved["method"]) == ("drift", "mmd")
    assert moved["score"] < 0.05
    assert _column(drifted, "chars")["method"] in ("ks", "wasserstein")  # tested as usual beside it
    bad = _column(broken, "embedding")
    assert broken.state == "succeeded"
    assert bad["status"] == "error"
    assert "10 dimensions where the first row has 64" in bad["message"]
    # The engine alone: two ham samples do not drift.
    assert compare_column("embedding", pd.Series(list(ham)), pd.Series(list(ham2))).status == "ok"


def test_vectors_are_read_from_lists_and_from_csv_text_and_refused_with_the_row():
    assert as_vectors(pd.Series(["[1, 2.5]", "3 4", [5, 6]])).tolist() == [[1.0, 2.5], [3.0, 4.0], [5.0, 6.0]]
    for cells, message in [
        (["[1, 2]", "[1, nan]"], "row 1: the vector holds NaN or infinite values"),
        (["[1, 2]", "one two"], "row 1: 'one two' is not a vector of numbers"),
        (["[1, 2]", "[]"], "row 1: an empty vector"),
        (["[1, 2]", "[1, 2, 3]"], "row 1: 3 dimensions where the first row has 2"),
    ]:
        with pytest.raises(ValueError, match=message.replace("[", r"\[")):
            as_vectors(pd.Series(cells))


def test_too_few_cells_is_insufficient_data_not_a_verdict():
    outcome = compare_column("text", pd.Series(["a b c"] * 10), pd.Series(["d e f"] * 500))

    assert outcome.status == "insufficient_data"
    assert outcome.message.startswith("not enough non-empty cells: 10 reference and 500 current")
