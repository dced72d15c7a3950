"""Metadata filters: ``view=PA``, ``time<=5``, ``subject!=S``, ``labels~Effusion`` (contains).

One parsed form, two translations: a boolean mask over the metadata table (faiss id selectors) and a
Milvus boolean expression, so both backends filter inside the engine.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from radsearch.errors import ConfigError

FIELDS = ("id", "subject", "time", "side", "view", "study", "labels", "image")
NUMERIC = ("id", "time")
OPS = ("<=", ">=", "!=", "==", "=", "<", ">", "~")
_PATTERN = re.compile(r"^\s*([A-Za-z_]+)\s*(<=|>=|!=|==|=|<|>|~)\s*(.*?)\s*$")


@dataclass(frozen=True)
class Filter:
    field: str
    op: str
    value: str | float

    @classmethod
    def parse(cls, text: str) -> Filter:
        match = _PATTERN.match(text)
        if not match:
            raise ConfigError(f"filter {text!r}: expected FIELD OP VALUE with OP one of "
                              f"{' '.join(OPS)}, e.g. view=PA or 'time<=5'.")
        field, op, value = match.groups()
        if field not in FIELDS:
            raise ConfigError(f"filter {text!r}: unknown field {field!r}; use one of "
                              f"{', '.join(FIELDS)}.")
        op = "==" if op == "=" else op
        if field in NUMERIC:
            if op == "~":
                raise ConfigError(f"filter {text!r}: '~' (contains) is for text fields.")
            try:
                value = float(value) if field == "time" else int(value)
            except ValueError:
                raise ConfigError(f"filter {text!r}: {field} needs a number.") from None
        elif op in ("<", "<=", ">", ">="):
            raise ConfigError(f"filter {text!r}: {op} compares numbers; {field} is text.")
        return cls(field, op, value)

    def mask(self, table: pd.DataFrame) -> np.ndarray:
        column = table[self.field]
        if isinstance(column.dtype, pd.CategoricalDtype):
            # decide once per distinct value, then look the answer up by code (1M rows: ~1 ms)
            categories = pd.Series(np.asarray(column.cat.categories, dtype=object))
            decided = np.append(self._match(categories), False)   # code -1 (missing) → False
            return decided[column.cat.codes.to_numpy()]
        return self._match(column)

    def _match(self, column: pd.Series) -> np.ndarray:
        if self.op == "~":
            return column.astype(str).str.split("|").map(lambda xs: self.value in xs).to_numpy(bool)
        ops = {"==": np.equal, "!=": np.not_equal, "<": np.less, "<=": np.less_equal,
               ">": np.greater, ">=": np.greater_equal}
        return np.asarray(ops[self.op](column.to_numpy(), self.value), dtype=bool)

    def sql(self) -> tuple[str, list]:
        """SQLite WHERE clause + parameters over the ``items`` table (fields kept on disk)."""
        if self.op == "~":   # an exact |-separated token, case-sensitive like mask()
            return f"instr('|' || {self.field} || '|', ?) > 0", [f"|{self.value}|"]
        return f"{self.field} {'=' if self.op == '==' else self.op} ?", [self.value]

    def expression(self) -> str:
        """Milvus boolean expression."""
        if self.op == "~":
            # labels are stored as |a|b| in Milvus so 'contains' is an exact-token LIKE
            return f'labels_tokens like "%|{_escape(self.value)}|%"'
        if self.field == "labels":   # the whole label string, stored as |a|b|
            tokens = "|" + "|".join(x for x in str(self.value).split("|") if x) + "|"
            return f'labels_tokens {self.op} "{_escape(tokens)}"'
        value = repr(self.value) if self.field in NUMERIC else f'"{_escape(self.value)}"'
        return f"{self.field} {self.op} {value}"


def _escape(text: str) -> str:
    return str(text).replace("\\", "\\\\").replace('"', '\\"')


def parse_filters(filters) -> list[Filter]:
    """``None`` / strings / Filter objects / a {field: value} dict → list of Filter."""
    if not filters:
        return []
    if isinstance(filters, (str, Filter)):
        filters = [filters]
    if isinstance(filters, dict):
        filters = [f"{k}={v}" for k, v in filters.items()]
    return [f if isinstance(f, Filter) else Filter.parse(str(f)) for f in filters]


def combined_mask(filters: list[Filter], table: pd.DataFrame) -> np.ndarray:
    mask = np.ones(len(table), dtype=bool)
    for f in filters:
        mask &= f.mask(table)
    return mask


def combined_expression(filters: list[Filter]) -> str:
    return " and ".join(f"({f.expression()})" for f in filters)
