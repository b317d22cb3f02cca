"""Attribute filters over document metadata: comparisons joined by ``and`` / ``or``.

A ``Filter`` is a tree of ``Comparison`` (``key op value``) and ``Compound`` (``and`` /
``or`` over filters), the shape OpenAI's vector store search takes. It compiles to one
SQL condition on the documents table (``d``), so dense, lexical and hybrid search apply
the same filter before ranking. ``Filter.parse`` validates a JSON-like value and raises
InvalidInput naming the offending part (``filters.filters[1].value``).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Union

from lorag.core.errors import InvalidInput

MAX_NODES = 64
MAX_IN_VALUES = 1000
KEY = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,63}$")

Scalar = Union[str, int, float, bool]


class Operator(StrEnum):
    """A comparison of a metadata value with the filter's value."""

    EQ = "eq"
    NE = "ne"
    GT = "gt"
    GTE = "gte"
    LT = "lt"
    LTE = "lte"
    IN = "in"
    NIN = "nin"


class Joiner(StrEnum):
    AND = "and"
    OR = "or"


_SQL_OPERATORS = {Operator.EQ: "=", Operator.NE: "!=", Operator.GT: ">", Operator.GTE: ">=",
                  Operator.LT: "<", Operator.LTE: "<="}
_ORDERED = (Operator.GT, Operator.GTE, Operator.LT, Operator.LTE)


@dataclass(frozen=True)
class Comparison:
    key: str
    op: Operator
    value: Scalar | tuple[Scalar, ...]

    def sql(self) -> tuple[str, list]:
        column = "json_extract(d.metadata, ?)"
        path = f'$."{self.key}"'
        if self.op is Operator.IN:
            return (f"({column} IS NOT NULL AND {column} IN (SELECT value FROM json_each(?)))",
                    [path, path, json.dumps([_sql_value(v) for v in self.value])])
        if self.op is Operator.NIN:  # a document without the key is in no list
            return (f"({column} IS NULL OR {column} NOT IN (SELECT value FROM json_each(?)))",
                    [path, path, json.dumps([_sql_value(v) for v in self.value])])
        if self.op is Operator.NE:
            return f"({column} IS NULL OR {column} != ?)", [path, path, _sql_value(self.value)]
        return f"{column} {_SQL_OPERATORS[self.op]} ?", [path, _sql_value(self.value)]


@dataclass(frozen=True)
class Compound:
    joiner: Joiner
    filters: tuple["Filter", ...]

    def sql(self) -> tuple[str, list]:
        parts, params = [], []
        for child in self.filters:
            clause, values = child.sql()
            parts.append(f"({clause})")
            params += values
        return f" {self.joiner.value.upper()} ".join(parts), params


Filter = Union[Comparison, Compound]


def parse_filter(value: object, param: str = "filters") -> Filter:
    """A Filter from ``{"type": "eq", "key", "value"}`` or ``{"type": "and"|"or",
    "filters": [...]}``; raises InvalidInput naming the offending part."""
    budget = [MAX_NODES]
    return _parse(value, param, budget)


def _parse(value: object, param: str, budget: list[int]) -> Filter:
    budget[0] -= 1
    if budget[0] < 0:
        raise InvalidInput(f"a filter may have at most {MAX_NODES} parts", param=param)
    if not isinstance(value, dict):
        raise InvalidInput(f"{param} must be an object", param=param)
    kind = value.get("type")
    if kind in set(Joiner):
        return _compound(value, Joiner(kind), param, budget)
    if kind in set(Operator):
        return _comparison(value, Operator(kind), param)
    names = ", ".join([*Operator, *Joiner])
    raise InvalidInput(f"{param}.type must be one of {names}; got {kind!r}", param=f"{param}.type")


def _compound(value: dict, joiner: Joiner, param: str, budget: list[int]) -> Compound:
    _only(value, {"type", "filters"}, param)
    children = value.get("filters")
    if not isinstance(children, list) or not children:
        raise InvalidInput(f"{param}.filters must be a non-empty list", param=f"{param}.filters")
    return Compound(joiner, tuple(_parse(child, f"{param}.filters[{i}]", budget)
                                  for i, child in enumerate(children)))


def _comparison(value: dict, op: Operator, param: str) -> Comparison:
    _only(value, {"type", "key", "value"}, param)
    key = value.get("key")
    if not isinstance(key, str) or not KEY.match(key):
        raise InvalidInput(f"{param}.key must be 1-64 characters of letters, digits, '_', '.', "
                           f"':' or '-'; got {key!r}", param=f"{param}.key")
    raw = value.get("value")
    if op in (Operator.IN, Operator.NIN):
        if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_IN_VALUES:
            raise InvalidInput(f"{param}.value must be a list of 1 to {MAX_IN_VALUES} values for "
                               f"{op.value!r}", param=f"{param}.value")
        return Comparison(key, op, tuple(_scalar(v, f"{param}.value") for v in raw))
    scalar = _scalar(raw, f"{param}.value")
    if op in _ORDERED and isinstance(scalar, (str, bool)):
        raise InvalidInput(f"{param}.value must be a number for {op.value!r}",
                           param=f"{param}.value")
    return Comparison(key, op, scalar)


def _scalar(value: object, param: str) -> Scalar:
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidInput(f"{param} must be finite", param=param)
    if not isinstance(value, (str, int, float, bool)):
        raise InvalidInput(f"{param} must be a string, number or boolean", param=param)
    return value


def _only(value: dict, allowed: set[str], param: str) -> None:
    extra = sorted(set(value) - allowed)
    if extra:
        raise InvalidInput(f"{param}.{extra[0]}: unrecognized field", param=f"{param}.{extra[0]}")


def _sql_value(value: Scalar) -> Scalar:
    return int(value) if isinstance(value, bool) else value
