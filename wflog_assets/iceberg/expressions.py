"""Typed constructors for the pyiceberg row filters this project builds.

pyiceberg's predicates are pydantic models whose positional constructors its type hints do
not describe (a type checker reads `EqualTo("month", 11)` as wrong); this module is the one
place that calls them, so everything else stays checked.
"""

from __future__ import annotations

from collections.abc import Iterable

from pyiceberg.expressions import (
    BooleanExpression,
    EqualTo,
    GreaterThanOrEqual,
    In,
    LessThan,
    StartsWith,
)

Literal = str | int | float


def equal(column: str, value: Literal) -> BooleanExpression:
    return EqualTo(column, value)  # type: ignore[call-arg,arg-type]


def starts_with(column: str, prefix: str) -> BooleanExpression:
    return StartsWith(column, prefix)  # type: ignore[call-arg,arg-type]


def is_in(column: str, values: Iterable[Literal]) -> BooleanExpression:
    return In(column, tuple(values))  # type: ignore[call-arg,arg-type]


def at_least(column: str, value: Literal) -> BooleanExpression:
    return GreaterThanOrEqual(column, value)  # type: ignore[call-arg,arg-type]


def less_than(column: str, value: Literal) -> BooleanExpression:
    return LessThan(column, value)  # type: ignore[call-arg,arg-type]
