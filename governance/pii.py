"""Personal data detection in a table (issue 12): which columns hold identifiers, special-category
attributes (GDPR Art. 9) and quasi-identifiers, and how re-identifiable the rows are. No Django import.

Kinds:

- identifiers found in the values (each cell searched, so free text counts too): ``email``,
  ``phone``, ``credit_card`` (13-19 digits, a card network's prefix and the Luhn check, ISO/IEC
  7812-1), ``iban`` (ISO 13616: country length and the mod-97 check of ISO 7064), ``us_ssn``
  (AAA-GG-SSSS with the SSA's never-issued areas, groups and serials excluded), ``ip_address``
  (IPv4/IPv6 as Python's ``ipaddress`` parses them); by column name and values: ``date_of_birth``
  (a birth-date name and values that parse as past dates), ``person_name`` (a person-name column
  name; values shaped like names confirm it).
- special categories (GDPR Art. 9), by column name or by values (most rows in a known vocabulary):
  ``race_ethnicity``, ``sex_gender``, ``religion``, ``health``, ``sexual_orientation``,
  ``union_membership``.
- quasi-identifiers (Sweeney 2002, "k-anonymity: a model for protecting privacy"), by name or
  values: ``age``, ``postcode``, ``native_country``, ``occupation``, ``marital_status``;
  ``date_of_birth``, ``sex_gender`` and ``race_ethnicity`` count as quasi-identifiers too.

The column name alone is a signal (``signal: "name"``): a column called ``ssn`` is reported even
when its values are formatted in a way the detectors do not know. Examples in a report are always
masked (``mask``). Only the standard library and pandas: python-stdnum (IBAN, Luhn) and
phonenumbers would be the libraries to validate with, and Presidio's recognizers for free text;
none is installed in this project (see the closing note of the PII change).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pandas as pd

IDENTIFIER_KINDS = (
    "email",
    "phone",
    "credit_card",
    "iban",
    "us_ssn",
    "ip_address",
    "date_of_birth",
    "person_name",
)
SPECIAL_CATEGORIES = (
    "race_ethnicity",
    "sex_gender",
    "religion",
    "health",
    "sexual_orientation",
    "union_membership",
)
QUASI_IDENTIFIER_KINDS = ("age", "postcode", "native_country", "occupation", "marital_status")
# Every kind a finding may have, and so every kind a team's policy may name.
ALL_KINDS = IDENTIFIER_KINDS + SPECIAL_CATEGORIES + QUASI_IDENTIFIER_KINDS
# Attributes an attacker can usually learn elsewhere: the columns k-anonymity groups rows by.
QUASI_IDENTIFYING = frozenset(QUASI_IDENTIFIER_KINDS) | {"date_of_birth", "sex_gender", "race_ethnicity"}

# A column is reported for a kind found in its values when at least this share of its non-empty
# cells hold one (free text with an address here and there still counts through MIN_CELLS).
MIN_SHARE = 0.05
MIN_CELLS = 3
# Share of non-empty cells in a category's vocabulary for a column to be flagged by values alone.
VOCABULARY_SHARE = 0.8
MAX_EXAMPLES = 3
MISSING = "<missing>"


class ScanTimeout(Exception):
    """The scan ran past its time limit; the message says how far it got."""


# --- value detectors -----------------------------------------------------------------------

_EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,24}\b")
_CARD = re.compile(r"(?<![\d-])\d(?:[ -]?\d){11,18}(?![\d-])")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b")
_SSN = re.compile(r"(?<![\d-])(\d{3})-(\d{2})-(\d{4})(?![\d-])")
_IPV4 = re.compile(r"(?<![\d.])\d{1,3}(?:\.\d{1,3}){3}(?![\d.])")
_IPV6 = re.compile(r"(?<![\w:])[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?![\w:])")
_PHONE = re.compile(
    r"(?<![\w+])(?:\+|00)?\d{0,3}[ .-]?(?:\(\d{1,4}\)[ .-]?)?\d{2,4}(?:[ .-]\d{2,5}){1,4}"
    r"(?:\s*(?:x|ext\.?)\s*\d{1,5})?(?![\w])"
    r"|(?<![\w+])\+\d{9,14}(?!\w)"
)
# ISO 13616 lengths of the countries most IBANs come from; another country's must be 15-34 long.
_BARE_PHONE = re.compile(r"\+?\d{10,15}")
_IBAN_LENGTHS = {
    "AT": 20, "BE": 16, "BG": 22, "CH": 21, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "EE": 20,
    "ES": 24, "FI": 18, "FR": 27, "GB": 22, "GR": 27, "HR": 21, "HU": 28, "IE": 22, "IS": 26,
    "IT": 27, "LT": 20, "LU": 20, "LV": 21, "MT": 31, "NL": 18, "NO": 15, "PL": 28, "PT": 25,
    "RO": 24, "SE": 24, "SI": 19, "SK": 24, "TR": 26,
}  # fmt: skip


def luhn_ok(digits: str) -> bool:
    """Whether ``digits`` (only 0-9) passes the Luhn check (ISO/IEC 7812-1 annex B)."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def _card_network(digits: str) -> bool:
    # Issuer prefixes (ISO/IEC 7812 IINs) and lengths of Visa, Mastercard (51-55, 2221-2720),
    # Amex (34, 37), Diners (30, 36, 38), Discover (6011, 64-65), JCB (35, 2131, 1800), UnionPay
    # (62) and Maestro (50, 56-58, 63, 67, 0604; 12-19 digits).
    length, two, four = len(digits), int(digits[:2]), int(digits[:4])
    if digits[0] == "4":
        return length in (13, 16, 19)
    if 51 <= two <= 55 or 2221 <= four <= 2720:
        return length == 16
    if two in (34, 37):
        return length == 15
    if four in (2131, 1800):
        return length == 15
    if two in (30, 36, 38, 35, 62, 64, 65) or four == 6011:
        return 14 <= length <= 19
    return (two in (50, 56, 57, 58, 63, 67) or digits.startswith("0604")) and 12 <= length <= 19


def is_credit_card(text: str) -> bool:
    """Whether ``text`` (digits, spaces or dashes) is a payment card number: 13-19 digits, a
    network's prefix and a valid Luhn check digit."""
    digits = re.sub(r"[ -]", "", text)
    return digits.isdigit() and 12 <= len(digits) <= 19 and _card_network(digits) and luhn_ok(digits)


def is_iban(text: str) -> bool:
    """Whether ``text`` is an IBAN (spaces allowed): the country's length (ISO 13616) and the
    mod-97 check (ISO 7064: the rearranged number as digits, mod 97, equals 1)."""
    compact = text.replace(" ", "").upper()
    if not re.fullmatch(r"[A-Z]{2}\d{2}[A-Z0-9]{11,30}", compact):
        return False
    expected = _IBAN_LENGTHS.get(compact[:2])
    if expected is not None and len(compact) != expected:
        return False
    rearranged = compact[4:] + compact[:4]
    number = "".join(str(int(char, 36)) for char in rearranged)
    return int(number) % 97 == 1


def is_us_ssn(area: str, group: str, serial: str) -> bool:
    """Whether AAA-GG-SSSS could be an issued US Social Security number: the SSA never issues
    area 000, 666 or 900-999, group 00 or serial 0000."""
    return area not in ("000", "666") and not area.startswith("9") and group != "00" and serial != "0000"


def _is_ip(text: str) -> bool:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return False
    # "1.2.3.4"-shaped version numbers are ruled out by the column threshold; "::" alone is no address.
    return not (address.version == 6 and address.is_unspecified)


def _is_phone(text: str) -> bool:
    base = re.split(r"\s*(?:x|ext\.?)\s*", text)[0]
    digits = re.sub(r"\D", "", base)
    if not 10 <= len(digits) <= 15:
        return False
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}.*", base) or is_credit_card(base) or _IPV4.fullmatch(base.strip()):
        return False
    # Bare digit runs are ids and amounts more often than phone numbers: ask for a + or separators.
    return base.startswith(("+", "(")) or bool(re.search(r"[ .()-]", base.strip()))


def kinds_in_value(value: str) -> set[str]:
    """The identifier kinds found anywhere in one cell's text: a subset of email, phone,
    credit_card, iban, us_ssn, ip_address (the kinds a value alone reveals)."""
    found: set[str] = set()
    if "@" in value and _EMAIL.search(value):
        found.add("email")
    for match in _SSN.finditer(value):
        if is_us_ssn(*match.groups()):
            found.add("us_ssn")
            break
    if any(is_credit_card(match.group()) for match in _CARD.finditer(value)):
        found.add("credit_card")
    if any(is_iban(match.group()) for match in _IBAN.finditer(value.upper())):
        found.add("iban")
    if any(_is_ip(match.group()) for match in _IPV4.finditer(value)) or (
        ":" in value and any(_is_ip(match.group()) for match in _IPV6.finditer(value))
    ):
        found.add("ip_address")
    if any(_is_phone(match.group()) for match in _PHONE.finditer(value)):
        found.add("phone")
    return found


# --- masking -------------------------------------------------------------------------------


# Where each kind found in values sits inside a cell: in free text, only these spans keep the
# kind's masked shape and every other letter and digit is hidden.
_SPANS: dict[str, tuple[re.Pattern[str], ...]] = {
    "email": (_EMAIL,),
    "us_ssn": (_SSN,),
    "credit_card": (_CARD,),
    "iban": (re.compile(_IBAN.pattern, re.IGNORECASE),),
    "ip_address": (_IPV4, _IPV6),
    "phone": (_PHONE,),
}


def _hidden(text: str) -> str:
    return "".join("*" if char.isalnum() else char for char in text)


def mask(value: str, kind: str) -> str:
    """``value`` with what identifies a person hidden, keeping its shape so a reader sees what
    was found: ``j***@e***.com``, ``***-**-6789``, ``DE** **** **** **** **30 00`` (the last four
    characters of numbers), ``192.*.*.*``, ``J*** D***``; dates keep their separators only. In
    free text (a cell holding more than the identifier) the identifiers are masked so and every
    other letter and digit is hidden: ``*** ** ***: a***@e***.com``. NUL characters (which a
    Parquet cell may hold and PostgreSQL's jsonb refuses) are dropped."""
    value = value.replace("\x00", "").strip()[:80]
    spans = sorted(
        match.span()
        for pattern in _SPANS.get(kind, ())
        for match in pattern.finditer(value)
        if match.group() and kind in kinds_in_value(match.group())
    )
    if not spans and kind in _SPANS and " " in value:
        return _hidden(value)  # free text where no match stands alone (a name run into an IBAN)
    if spans and spans[0] != (0, len(value)):
        pieces, position = [], 0
        for start, end in spans:
            if start < position:
                continue  # overlapping matches (IPv4 inside IPv6): the first one masks them
            pieces += [_hidden(value[position:start]), _mask_whole(value[start:end], kind)]
            position = end
        return "".join(pieces) + _hidden(value[position:])
    return _mask_whole(value, kind)


def _mask_whole(value: str, kind: str) -> str:
    if kind == "email" and "@" in value:
        local, _, domain = value.partition("@")
        host, _, tld = domain.rpartition(".")
        return f"{local[:1]}***@{host[:1]}***.{tld}"
    if kind == "ip_address":
        separator = ":" if ":" in value else "."
        head = value.split(separator)[0]
        return separator.join([head] + ["*"] * (len(value.split(separator)) - 1))
    if kind in ("person_name",) or kind in SPECIAL_CATEGORIES or kind in QUASI_IDENTIFIER_KINDS:
        return " ".join(f"{word[:1]}***" for word in value.split())
    if kind == "date_of_birth":
        return _hidden(value)  # every letter and digit, not only ASCII ones (Cyrillic, Arabic digits)
    # Numbers (card, IBAN, SSN, phone): every letter or digit but the last four hidden; an
    # IBAN keeps its country code.
    keep_head = 2 if kind == "iban" else 0
    positions = [i for i, char in enumerate(value) if char.isalnum()]
    hidden = set(positions[keep_head : max(keep_head, len(positions) - 4)])
    return "".join("*" if i in hidden else char for i, char in enumerate(value))


# --- column names --------------------------------------------------------------------------


def name_tokens(column: str) -> list[str]:
    """``column`` split into lower-case words: ``dateOfBirth`` and ``date-of-birth`` -> date, of, birth."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", column)
    return [token for token in re.split(r"[^a-zA-Z0-9]+", spaced.lower()) if token]


_NAME_SIGNALS: dict[str, tuple[frozenset[str], tuple[str, ...]]] = {
    # kind: (single words that name it, joined words that name it)
    "email": (frozenset({"email"}), ("emailaddress",)),
    "phone": (frozenset({"phone", "telephone", "mobile", "tel", "fax"}), ("phonenumber",)),
    "credit_card": (frozenset(), ("creditcard", "cardnumber", "ccnumber", "cardno")),
    "iban": (frozenset({"iban"}), ("bankaccount", "accountnumber")),
    "us_ssn": (frozenset({"ssn"}), ("socialsecurity", "socialsecuritynumber")),
    "ip_address": (frozenset({"ip", "ipv4", "ipv6"}), ("ipaddress", "ipaddr", "clientip")),
    "date_of_birth": (frozenset({"dob", "birthdate", "birthday"}), ("dateofbirth", "birthdate", "borndate")),
    "person_name": (
        frozenset({"surname", "forename", "firstname", "lastname", "fullname", "givenname", "familyname"}),
        ("firstname", "lastname", "fullname", "givenname", "familyname", "middlename", "maidenname",
         "customername", "patientname", "personname", "employeename", "contactname", "clientname"),
    ),
    "race_ethnicity": (frozenset({"race", "ethnicity", "ethnic", "ethnicgroup"}), ("ethnicgroup",)),
    "sex_gender": (frozenset({"sex", "gender"}), ()),
    "religion": (frozenset({"religion", "religious", "faith", "denomination"}), ()),
    "health": (
        frozenset({"health", "diagnosis", "disease", "illness", "disability", "medical", "medication",
                   "icd", "icd10", "symptoms", "bmi", "hiv", "pregnant", "pregnancy"}),
        ("bloodtype", "medicalcondition", "healthstatus"),
    ),
    "sexual_orientation": (frozenset({"orientation", "sexuality"}), ("sexualorientation",)),
    "union_membership": (frozenset({"union"}), ("tradeunion", "unionmember", "unionmembership")),
    "age": (frozenset({"age"}), ("ageyears",)),
    "postcode": (frozenset({"zip", "zipcode", "postcode", "postal"}), ("postalcode", "zipcode")),
    "native_country": (
        frozenset({"country", "nationality", "citizenship", "birthplace"}),
        ("nativecountry", "countryofbirth", "countryoforigin"),
    ),
    "occupation": (frozenset({"occupation", "profession", "jobtitle"}), ("jobtitle", "job")),
    "marital_status": (frozenset({"marital"}), ("maritalstatus", "civilstatus")),
}  # fmt: skip


def kinds_by_name(column: str) -> set[str]:
    """The kinds a column's name alone suggests (``native-country`` -> native_country)."""
    tokens = name_tokens(column)
    joined = "".join(tokens)
    found = set()
    for kind, (words, joins) in _NAME_SIGNALS.items():
        # A joined name matches whole ("job" is a job, "job_id" is not), or inside a longer name
        # when it is long enough not to be a word of something else ("customer_firstname").
        if words & set(tokens) or joined in joins or any(join in joined for join in joins if len(join) > 8):
            found.add(kind)
    # A column called just "name" (or "<something> name" naming a person) is a person's name;
    # "file name", "host name", "dataset name" are not.
    if tokens == ["name"] or (tokens[-1:] == ["name"] and tokens[0] in {"first", "last", "full", "middle"}):
        found.add("person_name")
    if "date_of_birth" in found or ("birth" in tokens and "date" in tokens):
        found.add("date_of_birth")
    return found


# --- vocabularies (values) -----------------------------------------------------------------

_VOCABULARIES: dict[str, frozenset[str]] = {
    "race_ethnicity": frozenset(
        {"white", "black", "asian", "hispanic", "latino", "latina", "latinx", "caucasian",
         "african american", "african-american", "black or african american", "native american",
         "american indian", "amer-indian-eskimo", "asian-pac-islander", "pacific islander",
         "native hawaiian", "alaska native", "mixed", "multiracial", "two or more races", "arab",
         "middle eastern", "indigenous", "other"}
    ),
    "sex_gender": frozenset(
        {"male", "female", "m", "f", "man", "woman", "men", "women", "non-binary", "nonbinary",
         "transgender", "intersex", "other"}
    ),
    "religion": frozenset(
        {"christian", "christianity", "muslim", "islam", "jewish", "judaism", "hindu", "hinduism",
         "buddhist", "buddhism", "sikh", "catholic", "protestant", "orthodox", "atheist", "agnostic",
         "none", "other"}
    ),
    "sexual_orientation": frozenset(
        {"heterosexual", "homosexual", "gay", "lesbian", "bisexual", "straight", "asexual", "queer",
         "pansexual", "other"}
    ),
    "health": frozenset(
        {"diabetes", "cancer", "asthma", "hiv", "aids", "depression", "hypertension", "anxiety",
         "schizophrenia", "epilepsy", "covid-19", "dementia", "obesity", "stroke", "healthy", "none"}
    ),
    "marital_status": frozenset(
        {"married", "single", "divorced", "widowed", "separated", "never-married", "never married",
         "married-civ-spouse", "married-spouse-absent", "married-af-spouse", "domestic partnership"}
    ),
    "native_country": frozenset(
        {"united-states", "united states", "usa", "us", "mexico", "philippines", "germany", "canada",
         "puerto-rico", "el-salvador", "india", "cuba", "england", "jamaica", "south", "china", "italy",
         "dominican-republic", "vietnam", "guatemala", "japan", "poland", "columbia", "colombia",
         "taiwan", "haiti", "iran", "portugal", "nicaragua", "peru", "greece", "france", "ecuador",
         "ireland", "hong", "hong kong", "trinadad&tobago", "cambodia", "thailand", "laos",
         "yugoslavia", "outlying-us(guam-usvi-etc)", "hungary", "honduras", "scotland",
         "holand-netherlands", "netherlands", "united kingdom", "uk", "spain", "brazil",
         "argentina", "chile", "australia", "new zealand", "russia", "ukraine", "turkey", "egypt",
         "nigeria", "kenya", "south africa", "pakistan", "bangladesh", "indonesia", "korea",
         "south korea", "sweden", "norway", "denmark", "finland", "belgium", "austria",
         "switzerland", "czech republic", "romania", "morocco", "algeria", "israel", "saudi arabia"}
    ),
}  # fmt: skip
# A single token like "m" or "other" is too weak to flag a column: at least this many of the
# column's distinct values must be in the vocabulary, and not only these neutral ones.
_NEUTRAL = frozenset({"other", "none", "m", "f", "us", "south", "single"})
_MIN_DISTINCT_KNOWN = 2
_UK_POSTCODE = re.compile(r"[A-Z]{1,2}\d[A-Z\d]? ?\d[A-Z]{2}")
_NAME_VALUE = re.compile(r"(?:[A-Z][a-z'\u2019-]+\.?)(?: [A-Z][a-z'\u2019-]+\.?){0,3}")


def _normalized(value: str) -> str:
    return " ".join(value.strip().lower().split())


def vocabulary_kind(values: pd.Series) -> tuple[str, float] | None:
    """``(kind, share)`` when most non-empty cells (``VOCABULARY_SHARE``) fall in one category's
    vocabulary (race, sex, religion, health, sexual orientation, marital status, country) with
    at least two distinct known values that are not neutral tokens; else None."""
    counts = values.map(_normalized).value_counts()
    total = int(counts.sum())
    if total == 0:
        return None
    best: tuple[str, float] | None = None
    for kind, vocabulary in _VOCABULARIES.items():
        known = [value for value in counts.index if value in vocabulary]
        informative = [value for value in known if value not in _NEUTRAL]
        share = float(counts[known].sum()) / total if known else 0.0
        enough = share >= VOCABULARY_SHARE and len(informative) >= _MIN_DISTINCT_KNOWN
        if enough and (best is None or share > best[1]):
            best = (kind, share)
    return best


def _is_age(values: pd.Series) -> bool:
    numbers = pd.to_numeric(values, errors="coerce")
    return bool(numbers.notna().mean() >= 0.95 and numbers.between(0, 120).mean() >= 0.95)


def _birth_dates(values: pd.Series, today: pd.Timestamp) -> float:
    dates = pd.to_datetime(values, errors="coerce", format="mixed")
    plausible = dates.notna() & (dates >= pd.Timestamp("1900-01-01")) & (dates <= today)
    return float(plausible.mean())


# --- the scan ------------------------------------------------------------------------------


@dataclass
class Limits:
    """How much one scan may read: ``max_rows`` rows (a seeded sample of larger tables) within
    ``time_limit_s`` seconds; ``k_threshold``: the group size below which rows count as at risk."""

    max_rows: int = 100_000
    time_limit_s: float = 300.0
    k_threshold: int = 5
    seed: int = 0


def _finding(
    column: str, kind: str, signal: str, count: int, total: int, examples: Iterable[str] = ()
) -> dict[str, Any]:
    category = (
        "special_category"
        if kind in SPECIAL_CATEGORIES
        else "quasi_identifier"
        if kind in QUASI_IDENTIFIER_KINDS
        else "identifier"
    )
    return {
        "column": column,
        "kind": kind,
        "category": category,
        "signal": signal,
        "count": count,
        "share": round(count / total, 4) if total else 0.0,
        "examples": [mask(example, kind) for example in list(examples)[:MAX_EXAMPLES]],
        "is_quasi_identifier": kind in QUASI_IDENTIFYING,
    }


# How many distinct values are read between two looks at the clock.
_DEADLINE_EVERY = 256


def scan_column(
    name: str, values: pd.Series, today: pd.Timestamp | None = None, *, deadline: float | None = None
) -> list[dict[str, Any]]:
    """The findings of one column (``values`` as text, missing cells dropped by the caller):
    ``[{"column", "kind", "category": identifier|special_category|quasi_identifier, "signal":
    name|values|name+values, "count": cells, "share": of non-empty cells, "examples": masked,
    "is_quasi_identifier"}]``, one per kind. ScanTimeout once ``time.monotonic()`` passes
    ``deadline`` while its distinct values are read (a free-text column can hold millions)."""
    today = today or pd.Timestamp.now()
    total = len(values)
    by_name = kinds_by_name(name)
    # Each distinct value is read once (categorical columns repeat a few values many times).
    counts: dict[str, int] = {}
    examples: dict[str, list[str]] = {}
    distinct = values.value_counts(sort=False)
    for index, (value, count) in enumerate(distinct.items()):
        if deadline is not None and index % _DEADLINE_EVERY == 0 and time.monotonic() > deadline:
            raise ScanTimeout(
                f"within column {name[:100]!r}, after {index:,} of {len(distinct):,} distinct values"
            )
        kinds = kinds_in_value(value)
        if "phone" in by_name and _BARE_PHONE.fullmatch(value):
            kinds.add("phone")  # a bare digit run is a phone number where the column says so
        for kind in kinds:
            counts[kind] = counts.get(kind, 0) + int(count)
            examples.setdefault(kind, []).append(value)
    findings = []
    for kind in IDENTIFIER_KINDS:
        hits = counts.get(kind, 0)
        enough = hits >= MIN_CELLS and hits / max(total, 1) >= MIN_SHARE
        if kind == "phone" and counts.get("credit_card", 0) >= hits:
            enough = False  # card numbers with separators look like long phone numbers
        if enough or (hits and kind in by_name):
            signal = "name+values" if kind in by_name else "values"
            findings.append(_finding(name, kind, signal, hits, total, examples[kind]))
        elif kind in by_name and kind not in ("date_of_birth", "person_name"):
            findings.append(_finding(name, kind, "name", hits, total, examples.get(kind, [])))
    if "date_of_birth" in by_name:
        share = _birth_dates(values, today) if total else 0.0
        signal = "name+values" if share >= 0.8 else "name"
        count = round(share * total)
        findings.append(_finding(name, "date_of_birth", signal, count, total, dict.fromkeys(values)))
    if "person_name" in by_name:
        shaped = values[values.str.fullmatch(_NAME_VALUE)] if total else values
        signal = "name+values" if total and len(shaped) / total >= 0.8 else "name"
        findings.append(_finding(name, "person_name", signal, len(shaped), total, dict.fromkeys(shaped)))
    vocabulary = vocabulary_kind(values) if total else None
    flagged = {finding["kind"] for finding in findings}
    for kind in SPECIAL_CATEGORIES + QUASI_IDENTIFIER_KINDS:
        from_values = vocabulary is not None and vocabulary[0] == kind
        if kind == "age" and kind in by_name:
            from_values = _is_age(values)
        if kind == "postcode" and total:
            share = values.str.upper().str.fullmatch(_UK_POSTCODE.pattern).mean()
            from_values = bool(share >= VOCABULARY_SHARE) or (
                kind in by_name and bool(values.str.fullmatch(r"\d{5}(?:-\d{4})?").mean() >= VOCABULARY_SHARE)
            )
        if kind in flagged or not (from_values or kind in by_name):
            continue
        signal = "name+values" if from_values and kind in by_name else "values" if from_values else "name"
        count = (
            round(vocabulary[1] * total)
            if vocabulary is not None and vocabulary[0] == kind
            else total
            if from_values
            else 0
        )
        findings.append(_finding(name, kind, signal, count, total, ()))
    return findings


def k_anonymity(frame: pd.DataFrame, columns: list[str], threshold: int) -> dict[str, Any] | None:
    """k-anonymity of ``frame`` over ``columns`` (Sweeney 2002): rows grouped by their values
    there (a missing value is a value); ``k`` the smallest group's size, ``rows_below_threshold``
    the rows in groups smaller than ``threshold`` and their share, ``unique_rows`` those alone in
    their group. None without columns or rows."""
    if not columns or frame.empty:
        return None
    keys = frame[columns].astype("string").fillna(MISSING)
    sizes = keys.groupby(columns, dropna=False).size()
    below = int(sizes[sizes < threshold].sum())
    return {
        "quasi_identifiers": columns,
        "k": int(sizes.min()),
        "threshold": threshold,
        "groups": len(sizes),
        "rows": len(frame),
        "rows_below_threshold": below,
        "share_below_threshold": round(below / len(frame), 4),
        "unique_rows": int(sizes[sizes == 1].sum()),
    }


def scan_frame(frame: pd.DataFrame, limits: Limits, *, rows_total: int | None = None) -> dict[str, Any]:
    """Scan ``frame`` (as read from the data file) for personal data within ``limits``; the report:

    ``{"rows_total", "rows_scanned", "is_sampled", "seed", "columns_scanned", "findings": [...]
    (``scan_column``), "special_categories": {column: kind}, "quasi_identifiers": [columns],
    "k_anonymity": (``k_anonymity``) or None, "duration_s"}``. A table longer than
    ``limits.max_rows`` is sampled with ``limits.seed`` (the same rows each time); ``rows_total``:
    the rows of the whole table when ``frame`` is already a sample of it.

    Raises ScanTimeout when ``limits.time_limit_s`` passes, between two columns or within one.
    """
    started = time.monotonic()
    rows_total = len(frame) if rows_total is None else rows_total
    sample = frame
    if len(frame) > limits.max_rows:
        sample = frame.sample(n=limits.max_rows, random_state=limits.seed).sort_index()
    today = pd.Timestamp.now()
    findings: list[dict[str, Any]] = []
    for position, column in enumerate(sample.columns, 1):
        if time.monotonic() - started > limits.time_limit_s:
            raise ScanTimeout(
                f"time limit of {limits.time_limit_s:g} s reached after {position - 1} of "
                f"{sample.shape[1]} columns"
            )
        raw = sample[column]
        values = raw[raw.notna()].astype(str).str.strip()
        values = values[(values != "") & (values != "?")]
        try:
            findings.extend(scan_column(str(column), values, today, deadline=started + limits.time_limit_s))
        except ScanTimeout as exc:
            raise ScanTimeout(f"time limit of {limits.time_limit_s:g} s reached {exc}") from None
    special = {f["column"]: f["kind"] for f in findings if f["category"] == "special_category"}
    quasi = list(dict.fromkeys(f["column"] for f in findings if f["is_quasi_identifier"]))
    risk = k_anonymity(sample.astype("string").apply(lambda s: s.str.strip()), quasi, limits.k_threshold)
    return {
        "rows_total": int(rows_total),
        "rows_scanned": len(sample),
        "is_sampled": len(sample) < rows_total,
        "seed": limits.seed,
        "columns_scanned": int(sample.shape[1]),
        "findings": findings,
        "special_categories": special,
        "quasi_identifiers": quasi,
        "k_anonymity": risk,
        "duration_s": round(time.monotonic() - started, 3),
    }


def seed_of(sha256: str) -> int:
    """A sampling seed from a file's SHA-256 hex: the same file is sampled the same way."""
    return int(sha256[:8], 16) if sha256 else 0


# --- protection (a team's mask, hash and drop rules) ---------------------------------------

# Kinds whose values have a fixed format: a mask keeps the separators (``***-**-****``) since the
# length says nothing about the person. Other values (names, emails, categories) become MASK
# whole: a length would tell "White" from "Asian-Pac-Islander".
_FORMATTED_KINDS = frozenset({"us_ssn", "credit_card", "iban", "phone", "ip_address", "date_of_birth"})
MASK = "***"
# How much each rule hides, to pick one per column holding several kinds and to tell whether a
# protected copy still satisfies a tightened policy.
PROTECTION_STRENGTH = {"hash": 1, "mask": 2, "drop": 3}


def mask_value(value: str, kind: str) -> str:
    """``value`` masked whole for a protected copy: every letter and digit hidden in a cell that
    is just a formatted identifier (``***-**-****``), ``MASK`` otherwise. Unlike ``mask`` (report
    examples) nothing of the value is kept."""
    whole = kind == "date_of_birth" or any(pattern.fullmatch(value) for pattern in _SPANS.get(kind, ()))
    # Free text holding an identifier is masked whole too: its hidden words would keep their lengths.
    return _hidden(value) if kind in _FORMATTED_KINDS and whole else MASK


def hash_value(value: str, key: bytes) -> str:
    """HMAC-SHA256 of ``value`` (UTF-8) under ``key`` (RFC 2104), as 64 hex digits: the same value
    hashes the same under the same key, so a hashed column still joins across files."""
    return hmac.new(key, value.encode("utf-8"), hashlib.sha256).hexdigest()


def protect_frame(frame: pd.DataFrame, plan: dict[str, tuple[str, str]], key: bytes) -> pd.DataFrame:
    """A copy of ``frame`` with ``plan`` applied, ``{column: (rule, kind)}``: ``drop`` removes the
    column; ``mask`` (``mask_value``) and ``hash`` (``hash_value``) rewrite every non-missing cell
    of it as text (the scan samples rows, so a column is protected whole, not the cells it saw);
    a hashed value is stripped first, as the scan reads it. Missing cells and empty strings stay.
    Columns not in ``plan`` are untouched."""
    protected = frame.drop(columns=[column for column, (rule, _) in plan.items() if rule == "drop"])
    for column, (rule, kind) in plan.items():
        if rule == "drop" or column not in protected.columns:
            continue
        values = protected[column]
        present = values.notna() & (values.astype(str) != "")
        if rule == "mask":
            rewritten = values[present].astype(str).map(lambda value, kind=kind: mask_value(value, kind))
        else:
            rewritten = values[present].astype(str).map(lambda value: hash_value(value.strip(), key))
        protected[column] = values.astype(object).where(~present, rewritten)
    return protected
