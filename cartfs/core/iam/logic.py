"""Three-valued logic for statement matching.

A statement's parts (action, resource, each condition) answer ``True``, ``False`` or
:class:`Unknown` -- the last when a context value cannot be parsed (``"abc"`` for a number)
or a policy variable cannot be resolved in a negated position. Parts are combined with
Kleene's rules: ``False`` beats ``Unknown`` in an AND (the statement certainly does not
apply), ``True`` beats ``Unknown`` in an OR. The evaluator then fails closed: an ``Unknown``
Deny statement is applied, an ``Unknown`` Allow statement is not.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

__all__ = ["Tri", "Unknown", "tri_all", "tri_any", "tri_not"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Unknown:
    """The answer could not be computed; ``reason`` says why, for :meth:`Decision.explain`."""

    reason: str


Tri = bool | Unknown


def tri_not(value: Tri) -> Tri:
    """Kleene NOT: ``Unknown`` stays unknown."""
    return value if isinstance(value, Unknown) else not value


def tri_any(items: Iterable[T], test: Callable[[T], Tri]) -> Tri:
    """Kleene OR of ``test(item)``; stops at the first ``True``."""
    unknown: Unknown | None = None
    for item in items:
        result = test(item)
        if result is True:
            return True
        if isinstance(result, Unknown) and unknown is None:
            unknown = result
    return False if unknown is None else unknown


def tri_all(items: Iterable[T], test: Callable[[T], Tri]) -> Tri:
    """Kleene AND of ``test(item)``; stops at the first ``False``."""
    unknown: Unknown | None = None
    for item in items:
        result = test(item)
        if result is False:
            return False
        if isinstance(result, Unknown) and unknown is None:
            unknown = result
    return True if unknown is None else unknown
