"""MLflow's registry search grammar, parsed by hand, and keyset page tokens (issue 9).

The grammar (``mlflow/utils/search_utils.py``'s registry subset): clauses joined by ``AND``
(case-insensitive; no ``OR``, no parentheses), each ``<key> <comparator> <value>``:

* key: an attribute (``name``; for versions also ``version_number``, ``run_id``, ``source_path``),
  or a tag, ``tags.<key>`` / ``tag.<key>``, the key in backticks when it holds dots or spaces
  (``tags.`mlflow.prompt.is_prompt```);
* comparator: ``=``, ``!=``, ``LIKE``, ``ILIKE``, for numbers also ``<``, ``<=``, ``>``, ``>=``,
  for ``run_id`` also ``IN``;
* value: a string in single or double quotes, a number, or for ``IN`` a parenthesised list of strings.

``LIKE``'s ``%`` matches any run of characters, ``_`` one character. A tag that is missing satisfies
``!=`` (the client adds ``tags.`mlflow.prompt.is_prompt` != 'true'`` to every model search).

Page tokens are keyset tokens: the sort key of the last row sent, so a page never repeats or skips
a row when others are inserted meanwhile (MLflow's offset tokens do, ``SearchUtils.create_page_token``).
"""

from __future__ import annotations

import base64
import binascii
import datetime
import json
import re
from dataclasses import dataclass
from typing import Any

from django.db import models
from django.db.models import Q, QuerySet, TextField
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast

from governance.api.mlflow.base import InvalidParameterValue


@dataclass(frozen=True)
class Clause:
    """One comparison: ``kind`` is "attribute" or "tag"; ``value`` a str, a number or a list of str."""

    kind: str
    key: str
    comparator: str
    value: Any


_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
      | (?P<comparator><=|>=|!=|=|<|>)
      | (?P<open>\() | (?P<close>\)) | (?P<comma>,)
      | (?P<word>(?:[A-Za-z_][\w]*\.)?(?:`[^`]*`|[\w.\-]+))
    )""",
    re.VERBOSE,
)
_WORD_COMPARATORS = {"LIKE", "ILIKE", "IN"}
_NUMBER = re.compile(r"^-?\d+(?:\.\d+)?$")


def _tokens(text: str) -> list[tuple[str, str]]:
    tokens, position = [], 0
    text = text.rstrip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise InvalidParameterValue(
                f"Invalid filter {text!r}: cannot parse at {text[position:].strip()[:40]!r}."
            )
        kind = match.lastgroup or ""
        tokens.append((kind, match.group(kind)))
        position = match.end()
    return tokens


def _unquote(raw: str) -> str:
    return re.sub(r"\\(.)", r"\1", raw[1:-1])


def parse_filter(text: str, *, attributes: dict[str, set[str]]) -> list[Clause]:
    """The clauses of ``text`` (empty: none). ``attributes`` maps each attribute name to the
    comparators it accepts. InvalidParameterValue naming the offending token otherwise."""
    if not text or not text.strip():
        return []
    tokens = _tokens(text)
    clauses: list[Clause] = []
    position = 0

    def take(expected: str) -> str:
        nonlocal position
        if position >= len(tokens):
            raise InvalidParameterValue(f"Invalid filter {text!r}: it ends where {expected} was expected.")
        kind, raw = tokens[position]
        position += 1
        return raw if kind == expected or expected == "any" else _unexpected(text, raw, expected)

    while True:
        kind, raw = tokens[position] if position < len(tokens) else ("end", "")
        if kind != "word":
            raise InvalidParameterValue(f"Invalid filter {text!r}: expected a key, found {raw!r}.")
        position += 1
        clause_kind, key = _key(text, raw, attributes)
        comparator_kind, comparator = tokens[position] if position < len(tokens) else ("end", "")
        position += 1
        comparator = comparator.upper() if comparator_kind == "word" else comparator
        if comparator_kind not in ("comparator", "word") or (
            comparator_kind == "word" and comparator not in _WORD_COMPARATORS
        ):
            raise InvalidParameterValue(
                f"Invalid filter {text!r}: expected a comparator after {raw!r}, found {comparator!r}."
            )
        allowed = attributes[key] if clause_kind == "attribute" else {"=", "!=", "LIKE", "ILIKE"}
        if comparator not in allowed:
            raise InvalidParameterValue(
                f"Invalid filter {text!r}: comparator {comparator!r} is not allowed for {raw!r} "
                f"(allowed: {', '.join(sorted(allowed))})."
            )
        value: Any
        if comparator == "IN":
            take("open")
            value = []
            while True:
                item = take("any")
                if not item.startswith(("'", '"')):
                    _unexpected(text, item, "a quoted string")
                value.append(_unquote(item))
                separator = take("any")
                if separator == ")":
                    break
                if separator != ",":
                    _unexpected(text, separator, "',' or ')'")
        else:
            raw_value = take("any")
            if raw_value.startswith(("'", '"')):
                value = _unquote(raw_value)
            elif _NUMBER.match(raw_value) and comparator in {"=", "!=", "<", "<=", ">", ">="}:
                value = float(raw_value) if "." in raw_value else int(raw_value)
            else:
                _unexpected(text, raw_value, "a quoted string or a number")
        clauses.append(Clause(clause_kind, key, comparator, value))
        if position >= len(tokens):
            return clauses
        joiner = tokens[position][1]
        if joiner.upper() != "AND":
            _unexpected(text, joiner, "AND (OR is not supported)")
        position += 1
        if position >= len(tokens):
            raise InvalidParameterValue(f"Invalid filter {text!r}: nothing after the last AND.")


def _unexpected(text: str, raw: str, expected: str) -> str:
    raise InvalidParameterValue(f"Invalid filter {text!r}: expected {expected}, found {raw!r}.")


def _key(text: str, raw: str, attributes: dict[str, set[str]]) -> tuple[str, str]:
    prefix, dot, rest = raw.partition(".")
    if dot and prefix.lower() in ("tags", "tag"):
        key = rest[1:-1] if rest.startswith("`") and rest.endswith("`") else rest
        if not key:
            raise InvalidParameterValue(f"Invalid filter {text!r}: empty tag key in {raw!r}.")
        return "tag", key
    if dot and prefix.lower() in ("attributes", "attribute", "attr"):
        raw = rest
    name = raw.strip("`")
    if name not in attributes:
        raise InvalidParameterValue(
            f"Invalid filter {text!r}: unknown key {raw!r} (searchable: {', '.join(sorted(attributes))}, "
            "tags.<key>)."
        )
    return "attribute", name


def like_q(field: str, pattern: str, *, case_sensitive: bool) -> Q:
    """SQL LIKE on ``field``: a plain prefix, suffix or infix becomes Django's
    startswith/endswith/contains (index-friendly); any other pattern a regular expression."""
    suffix = "" if case_sensitive else "i"
    inner = pattern.strip("%")
    if "_" not in pattern and "%" not in inner:
        if pattern.startswith("%") and pattern.endswith("%") and len(pattern) > 1:
            return Q(**{f"{field}__{suffix}contains": inner})
        if pattern.endswith("%"):
            return Q(**{f"{field}__{suffix}startswith": inner})
        if pattern.startswith("%"):
            return Q(**{f"{field}__{suffix}endswith": inner})
        return Q(**{f"{field}__{suffix}exact" if suffix else field: pattern})
    regex = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
    return Q(**{f"{field}__{suffix}regex": f"^{regex}$"})


def string_q(field: str, comparator: str, value: Any) -> Q:
    """``field <comparator> value`` for the string comparators (=, !=, LIKE, ILIKE, IN)."""
    if comparator == "IN":
        return Q(**{f"{field}__in": value})
    if not isinstance(value, str):
        raise InvalidParameterValue(f"Invalid filter: {field} {comparator} needs a quoted string.")
    if comparator == "=":
        return Q(**{field: value})
    if comparator == "!=":
        return ~Q(**{field: value})
    return like_q(field, value, case_sensitive=comparator == "LIKE")


def apply_tag_clause(queryset: QuerySet, index: int, clause: Clause) -> QuerySet:
    """Filter on tag ``clause.key`` of the JSON ``tags`` column; a missing tag satisfies ``!=``."""
    alias = f"_tag{index}"
    # Cast: a bare key transform compares its right-hand side as JSON (Django's KeyTransformExact).
    queryset = queryset.annotate(**{alias: Cast(KeyTextTransform(clause.key, "tags"), TextField())})
    if clause.comparator == "!=":
        return queryset.filter(Q(**{f"{alias}__isnull": True}) | ~Q(**{alias: clause.value}))
    return queryset.filter(string_q(alias, clause.comparator, clause.value))


# Keyset page tokens.


def _encode_value(value: Any) -> Any:
    return {"t": value.isoformat()} if isinstance(value, datetime.datetime) else value


_NOT_OURS = "Invalid page_token: not a page token of this search."
_INT_RANGE = (-(2**63), 2**63 - 1)


def _decode_value(value: Any, field: Any) -> Any:
    """``value`` read back as the type of ``field`` (the model field it sorts on); ValueError if
    it is not one: a forged value must never reach the database as something it cannot take."""
    if isinstance(field, models.DateTimeField):
        if not (isinstance(value, dict) and set(value) == {"t"} and isinstance(value["t"], str)):
            raise ValueError("not a timestamp")
        moment = datetime.datetime.fromisoformat(value["t"])
        if moment.tzinfo is None:
            raise ValueError("a timestamp without its zone")
        return moment
    if isinstance(field, models.IntegerField | models.AutoField | models.BigAutoField):
        if type(value) is not int or not _INT_RANGE[0] <= value <= _INT_RANGE[1]:
            raise ValueError("not an integer")
        return value
    if isinstance(field, models.CharField | models.TextField):
        if not isinstance(value, str):
            raise ValueError("not a string")
        value.encode()  # a lone surrogate is refused here, not by the database driver
        return value
    raise ValueError("a field no token sorts on")


def _field(model: Any, path: str) -> Any:
    field = None
    for part in path.split("__"):
        field = model._meta.get_field(part)
        model = field.related_model
    return field


def make_page_token(order: list[tuple[str, bool]], row: Any) -> str:
    """An opaque token for the page after ``row``: the values of its sort key (``order``: field
    paths with descending flags, a unique field last) and that order, base64 JSON."""
    values = []
    for field, _ in order:
        value: Any = row
        for part in field.split("__"):
            value = getattr(value, part)
        values.append(_encode_value(value))
    payload = {"o": [[field, desc] for field, desc in order], "v": values}
    return base64.urlsafe_b64encode(json.dumps(payload, separators=(",", ":")).encode()).decode()


def after_page_token(queryset: QuerySet, order: list[tuple[str, bool]], token: str) -> QuerySet:
    """``queryset`` narrowed to the rows after the token's row in ``order``: (a > x) or (a = x and
    b > y) or ... InvalidParameterValue for a token that is not one of ours or another order's."""
    try:
        payload = json.loads(base64.urlsafe_b64decode(token.encode()))
    except (ValueError, binascii.Error, UnicodeError):
        raise InvalidParameterValue(_NOT_OURS) from None
    # The whole shape is checked: {"o": [[field, descending], ...], "v": [value, ...]}.
    if not (
        isinstance(payload, dict)
        and set(payload) == {"o", "v"}
        and isinstance(payload["o"], list)
        and isinstance(payload["v"], list)
        and all(
            isinstance(pair, list)
            and len(pair) == 2
            and isinstance(pair[0], str)
            and isinstance(pair[1], bool)
            for pair in payload["o"]
        )
    ):
        raise InvalidParameterValue(_NOT_OURS)
    if [tuple(pair) for pair in payload["o"]] != order or len(payload["v"]) != len(order):
        raise InvalidParameterValue("Invalid page_token: it belongs to a search with another order_by.")
    try:
        values = [
            _decode_value(value, _field(queryset.model, field))
            for value, (field, _) in zip(payload["v"], order, strict=True)
        ]
    except (ValueError, TypeError, UnicodeError):
        raise InvalidParameterValue(_NOT_OURS) from None
    after = Q()
    for position, (field, descending) in enumerate(order):
        step = Q(**{f"{field}__{'lt' if descending else 'gt'}": values[position]})
        for earlier in range(position):
            step &= Q(**{order[earlier][0]: values[earlier]})
        after |= step
    return queryset.filter(after)


def parse_order_by(
    clauses: list[str],
    *,
    fields: dict[str, str],
    default: list[tuple[str, bool]],
    ties: list[tuple[str, bool]],
) -> list[tuple[str, bool]]:
    """``order_by`` clauses (``"name ASC"``, ``"last_updated_timestamp DESC"``) as (field path,
    descending) pairs, then ``ties`` not already ordered on. ``fields`` maps MLflow's names to
    Django field paths. A duplicate or unknown field is InvalidParameterValue."""
    order: list[tuple[str, bool]] = []
    seen: set[str] = set()
    for clause in clauses:
        parts = str(clause).split()
        if not parts or len(parts) > 2 or (len(parts) == 2 and parts[1].upper() not in ("ASC", "DESC")):
            raise InvalidParameterValue(f"Invalid order_by clause {clause!r}: '<field> [ASC|DESC]'.")
        name = parts[0].strip("`")
        if name.startswith(("attribute.", "attributes.")):
            name = name.split(".", 1)[1]
        if name not in fields:
            raise InvalidParameterValue(
                f"Invalid order_by field {parts[0]!r} (allowed: {', '.join(sorted(fields))})."
            )
        if fields[name] in seen:
            raise InvalidParameterValue(f"order_by names {name!r} more than once.")
        seen.add(fields[name])
        order.append((fields[name], len(parts) == 2 and parts[1].upper() == "DESC"))
    if not order:
        order = list(default)
        seen = {field for field, _ in order}
    return order + [(field, descending) for field, descending in ties if field not in seen]


def page(queryset: QuerySet, order: list[tuple[str, bool]], max_results: int, page_token: str | None):
    """(rows, next_page_token or "") of one page of ``queryset`` sorted by ``order``."""
    if page_token:
        queryset = after_page_token(queryset, order, page_token)
    queryset = queryset.order_by(*[f"-{field}" if desc else field for field, desc in order])
    rows = list(queryset[: max_results + 1])
    if len(rows) <= max_results:
        return rows, ""
    rows = rows[:max_results]
    return rows, make_page_token(order, rows[-1])
