"""The PII detectors (``governance.pii``, a plain module) on a synthetic table with known ground
truth (precision and recall per kind, printed) and on the real adult census data (issue 12)."""

from __future__ import annotations

import random

import pandas as pd
import pytest
from faker import Faker

from governance import pii
from tests.conftest import ADULT

VALUE_KINDS = ("email", "phone", "credit_card", "iban", "us_ssn", "ip_address")
ROWS = 600


def synthetic() -> tuple[pd.DataFrame, list[list[set[str]]], dict[str, set[str]]]:
    """A seeded table: identifier columns, a free-text column mixing identifiers, special
    categories, quasi-identifiers and distractors (ids, amounts, timestamps, versions, SKUs).
    Returns the frame, each cell's true value kinds and each column's true kinds."""
    fake = Faker("en_US")
    Faker.seed(12)
    pick = random.Random(12)
    columns: dict[str, list[str]] = {name: [] for name in (
        "customer_email", "contact", "card", "account", "ssn", "client_ip", "date_of_birth", "first_name",
        "notes", "gender", "ethnicity", "religion", "zip_code", "age", "country", "job",
        "order_id", "amount", "created_at", "sku", "build", "comment",
    )}  # fmt: skip
    truth_cells: list[list[set[str]]] = []
    for _ in range(ROWS):
        row: dict[str, tuple[str, set[str]]] = {}
        row["customer_email"] = (fake.email(), {"email"})
        row["contact"] = (fake.phone_number(), {"phone"})
        row["card"] = (fake.credit_card_number(), {"credit_card"})
        row["account"] = (fake.iban(), {"iban"})
        row["ssn"] = (fake.ssn(), {"us_ssn"})
        row["client_ip"] = (fake.ipv4() if pick.random() < 0.7 else fake.ipv6(), {"ip_address"})
        row["date_of_birth"] = (fake.date_of_birth(minimum_age=18, maximum_age=90).isoformat(), set())
        row["first_name"] = (fake.first_name(), set())
        # Free text: a sentence, sometimes carrying one identifier.
        kind = pick.choice([None, None, "email", "phone", "us_ssn", "ip_address"])
        embedded = {
            None: "",
            "email": fake.email(),
            "phone": fake.phone_number(),
            "us_ssn": fake.ssn(),
            "ip_address": fake.ipv4(),
        }[kind]
        row["notes"] = (f"{fake.sentence(nb_words=6)} {embedded}".strip(), {kind} if kind else set())
        row["gender"] = (pick.choice(["Male", "Female", "Non-binary"]), set())
        row["ethnicity"] = (pick.choice(["White", "Black", "Asian", "Hispanic", "Other"]), set())
        row["religion"] = (pick.choice(["Christian", "Muslim", "Jewish", "Hindu", "None"]), set())
        row["zip_code"] = (fake.postcode(), set())
        row["age"] = (str(pick.randint(18, 90)), set())
        row["country"] = (pick.choice(["Germany", "France", "Mexico", "India", "Canada", "Japan"]), set())
        row["job"] = (fake.job(), set())
        row["order_id"] = (str(pick.randint(10**11, 10**12)), set())
        row["amount"] = (f"{pick.uniform(1, 5000):.2f}", set())
        row["created_at"] = (fake.date_time_this_decade().isoformat(sep=" "), set())
        row["sku"] = (f"{fake.bothify('??-####-??').upper()}", set())
        row["build"] = (f"{pick.randint(1, 9)}.{pick.randint(0, 20)}.{pick.randint(0, 99)}", set())
        row["comment"] = (fake.sentence(nb_words=10), set())
        for name, (value, _) in row.items():
            columns[name].append(value)
        truth_cells.append([kinds for _, kinds in row.values()])
    truth_columns = {
        "customer_email": {"email"},
        "contact": {"phone"},
        "card": {"credit_card"},
        "account": {"iban"},
        "ssn": {"us_ssn"},
        "client_ip": {"ip_address"},
        "date_of_birth": {"date_of_birth"},
        "first_name": {"person_name"},
        "notes": {"email", "phone", "us_ssn", "ip_address"},
        "gender": {"sex_gender"},
        "ethnicity": {"race_ethnicity"},
        "religion": {"religion"},
        "zip_code": {"postcode"},
        "age": {"age"},
        "country": {"native_country"},
        "job": {"occupation"},
    }
    return pd.DataFrame(columns), truth_cells, truth_columns


def precision_recall(pairs: list[tuple[set[str], set[str]]], kinds) -> dict[str, tuple[float, float]]:
    """Per kind: (precision, recall) over (found, true) kind sets."""
    out = {}
    for kind in kinds:
        tp = sum(1 for found, true in pairs if kind in found and kind in true)
        fp = sum(1 for found, true in pairs if kind in found and kind not in true)
        fn = sum(1 for found, true in pairs if kind not in found and kind in true)
        precision = round(tp / (tp + fp), 3) if tp + fp else 1.0
        out[kind] = (precision, round(tp / (tp + fn), 3) if tp + fn else 1.0)
    return out


def test_value_detectors_precision_and_recall_per_kind_on_synthetic_cells():
    frame, truth_cells, _ = synthetic()
    pairs = [
        (pii.kinds_in_value(value), truth_cells[row][column])
        for row, values in enumerate(frame.itertuples(index=False))
        for column, value in enumerate(values)
    ]
    scores = precision_recall(pairs, VALUE_KINDS)
    print("\ncell-level precision / recall on", len(pairs), "synthetic cells:")
    for kind, (precision, recall) in scores.items():
        print(f"  {kind:12} precision {precision:.3f} recall {recall:.3f}")

    # Seeded data, so exact figures. Phone: Faker's bare 10-digit numbers are not counted without
    # a column name saying "phone" (the column test below counts them). Card: a few 12-digit order
    # ids have a Maestro prefix and pass Luhn by chance; the column threshold drops them.
    assert scores == {
        "email": (1.0, 1.0),
        "phone": (1.0, 0.903),
        "credit_card": (0.98, 1.0),
        "iban": (1.0, 1.0),
        "us_ssn": (1.0, 1.0),
        "ip_address": (1.0, 1.0),
    }


def test_column_findings_on_the_synthetic_table_match_the_ground_truth():
    frame, _, truth_columns = synthetic()
    report = pii.scan_frame(frame, pii.Limits())
    found: dict[str, set[str]] = {}
    for finding in report["findings"]:
        found.setdefault(finding["column"], set()).add(finding["kind"])
    pairs = [(found.get(column, set()), truth_columns.get(column, set())) for column in frame.columns]
    scores = precision_recall(pairs, pii.ALL_KINDS)
    print("\ncolumn-level precision / recall per kind:")
    for kind, (precision, recall) in scores.items():
        print(f"  {kind:18} precision {precision:.3f} recall {recall:.3f}")

    assert found == truth_columns
    assert report["special_categories"] == {
        "gender": "sex_gender",
        "ethnicity": "race_ethnicity",
        "religion": "religion",
    }
    assert report["quasi_identifiers"] == [
        "date_of_birth",
        "gender",
        "ethnicity",
        "zip_code",
        "age",
        "country",
        "job",
    ]
    assert report["k_anonymity"]["k"] == 1
    assert report["k_anonymity"]["unique_rows"] == ROWS


def test_report_examples_are_masked():
    frame, _, _ = synthetic()
    report = pii.scan_frame(frame, pii.Limits())
    raw = {value for column in frame.columns for value in frame[column]}
    examples = [example for finding in report["findings"] for example in finding["examples"]]

    assert examples
    assert not [example for example in examples if example in raw]
    card = next(f for f in report["findings"] if f["kind"] == "credit_card")
    assert all(set(example[:-4]) <= {"*", " ", "-"} for example in card["examples"])
    email = next(f for f in report["findings"] if f["column"] == "customer_email")
    assert all(example.count("***") == 2 for example in email["examples"])


def test_detectors_on_hand_picked_values():
    assert pii.kinds_in_value("4111 1111 1111 1111") == {"credit_card"}
    assert pii.kinds_in_value("4111 1111 1111 1112") == set()  # Luhn fails
    assert pii.kinds_in_value("DE89 3704 0044 0532 0130 00") == {"iban"}
    assert pii.kinds_in_value("DE89 3704 0044 0532 0130 01") == set()  # mod 97 fails
    assert pii.kinds_in_value("078-05-1120") == {"us_ssn"}
    assert pii.kinds_in_value("666-12-3456") == set()  # never issued
    assert pii.kinds_in_value("reach me at anna.k@example.org today") == {"email"}
    assert pii.kinds_in_value("2001:db8::1") == {"ip_address"}
    assert pii.kinds_in_value("999.1.1.1") == set()
    assert pii.kinds_in_value("12:30:45") == set()
    assert pii.kinds_in_value("2020-01-05 10:11:12") == set()
    assert pii.mask("078-05-1120", "us_ssn") == "***-**-1120"
    assert pii.mask("DE89 3704 0044 0532 0130 00", "iban") == "DE** **** **** **** **30 00"
    assert pii.mask("10.1.2.3", "ip_address") == "10.*.*.*"


@pytest.fixture(scope="module")
def adult_frame() -> pd.DataFrame:
    return pd.read_csv(ADULT, low_memory=False)


def test_adult_special_categories_quasi_identifiers_and_k_anonymity(adult_frame):
    report = pii.scan_frame(adult_frame, pii.Limits(k_threshold=5))

    assert report["special_categories"] == {"race": "race_ethnicity", "sex": "sex_gender"}
    assert report["quasi_identifiers"] == [
        "age",
        "marital-status",
        "occupation",
        "race",
        "sex",
        "native-country",
    ]
    kinds = {(f["column"], f["kind"], f["signal"]) for f in report["findings"]}
    assert kinds == {
        ("age", "age", "name+values"),
        ("marital-status", "marital_status", "name+values"),
        ("occupation", "occupation", "name"),
        ("race", "race_ethnicity", "name+values"),
        ("sex", "sex_gender", "name+values"),
        ("native-country", "native_country", "name+values"),
    }
    # No identifier in the census data: no e-mail, phone, card, ... found.
    assert [f for f in report["findings"] if f["category"] == "identifier"] == []
    # Computed independently with pandas: group sizes over the same columns.
    columns = report["quasi_identifiers"]
    sizes = adult_frame[columns].astype(str).apply(lambda s: s.str.strip()).groupby(columns).size()
    assert report["k_anonymity"] == {
        "quasi_identifiers": columns,
        "k": 1,
        "threshold": 5,
        "groups": len(sizes),
        "rows": 32561,
        "rows_below_threshold": int(sizes[sizes < 5].sum()),
        "share_below_threshold": round(int(sizes[sizes < 5].sum()) / 32561, 4),
        "unique_rows": int((sizes == 1).sum()),
    }
    print("\nadult k-anonymity:", report["k_anonymity"])


def test_a_large_table_is_sampled_the_same_way_each_time(adult_frame):
    limits = pii.Limits(max_rows=1000, seed=pii.seed_of("ab" * 32))
    first, second = pii.scan_frame(adult_frame, limits), pii.scan_frame(adult_frame, limits)

    assert (first["rows_scanned"], first["rows_total"], first["is_sampled"]) == (1000, 32561, True)
    assert first["k_anonymity"] == second["k_anonymity"]
    assert first["k_anonymity"]["rows"] == 1000


def test_the_time_limit_stops_a_scan_between_columns(adult_frame):
    with pytest.raises(pii.ScanTimeout) as stopped:
        pii.scan_frame(adult_frame, pii.Limits(time_limit_s=1e-9))
    assert str(stopped.value) == "time limit of 1e-09 s reached after 0 of 15 columns"


def test_column_names_as_a_signal():
    names = {
        "customer_email": {"email"},
        "dateOfBirth": {"date_of_birth"},
        "first_name": {"person_name"},
        "name": {"person_name"},
        "native-country": {"native_country"},
        "ssn": {"us_ssn"},
        "job": {"occupation"},
        # Words that are part of other names are not findings.
        "job_id": set(),
        "filename": set(),
        "hostname": set(),
        "cell_type": set(),
        "weather_condition": set(),
    }
    assert {name: pii.kinds_by_name(name) for name in names} == names
    # A name alone is reported (signal "name") even when no value matches.
    findings = pii.scan_column("ssn", pd.Series(["n/a", "unknown", "withheld"]))
    assert [(f["kind"], f["signal"], f["count"]) for f in findings] == [("us_ssn", "name", 0)]


def test_the_time_limit_stops_a_scan_within_a_long_column():
    """A column of 200,000 distinct free-text cells: the limit holds inside it, not only between
    columns (the first column starts well inside the limit)."""
    notes = pd.DataFrame(
        {"note": [f"visit {i}: patient reached at +44 20 7946 {i:04d}" for i in range(200_000)]}
    )

    with pytest.raises(pii.ScanTimeout) as stopped:
        pii.scan_frame(notes, pii.Limits(time_limit_s=0.05, max_rows=200_000))

    message = str(stopped.value)
    assert message.startswith("time limit of 0.05 s reached within column 'note', after ")
    assert message.endswith(" of 200,000 distinct values")
