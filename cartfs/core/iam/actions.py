"""Action names and action patterns.

Actions live in two services: the archive's own (``cartfs:Read`` ...) and S3's (any
``s3:`` name, since the S3 adapter grows). Matching is case-insensitive, so everything is
folded to lower case once, at parse time for patterns and once per request for the action.
A ``cartfs:`` pattern that names no known action (``cartfs:Raed``, ``cartfs:X*``) is an
error rather than a statement that silently never matches.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from cartfs.core.errors import InvalidArgument
from cartfs.core.iam.patterns import Glob, tokenize

__all__ = ["ARCHIVE_ACTIONS", "ActionMatcher", "check_request_action", "validate_action_pattern"]

#: The archive actions, in their documented spelling.
ARCHIVE_ACTIONS = (
    "cartfs:Read",
    "cartfs:Write",
    "cartfs:Delete",
    "cartfs:List",
    "cartfs:Create",
    "cartfs:Snapshot",
    "cartfs:Admin",
)
_ARCHIVE_FOLDED = frozenset(action.lower() for action in ARCHIVE_ACTIONS)
_PATTERN = re.compile(r"(cartfs|s3):[A-Za-z0-9*?]+", re.IGNORECASE)
_REQUEST = re.compile(r"s3:[a-z0-9]+|cartfs:[a-z]+")


def validate_action_pattern(pattern: object) -> str:
    """Check one Action/NotAction entry; return it. Raises :class:`InvalidArgument`."""
    if not isinstance(pattern, str):
        raise InvalidArgument(f"must be a string, not {type(pattern).__name__}")
    if pattern == "*":
        return pattern
    if _PATTERN.fullmatch(pattern) is None:
        raise InvalidArgument(
            f"invalid action {pattern!r} (expected '*', 'cartfs:Name' or 's3:Name')"
        )
    folded = pattern.lower()
    if folded.startswith("cartfs:"):
        glob = Glob.from_text(folded)
        if not any(glob.match(action) for action in _ARCHIVE_FOLDED):
            known = ", ".join(ARCHIVE_ACTIONS)
            raise InvalidArgument(f"action {pattern!r} matches no archive action ({known})")
    return pattern


def check_request_action(action: str) -> str:
    """Validate the action of a request and return it folded to lower case.

    A request names one concrete action: ``cartfs:<known>`` or ``s3:<Name>``, no
    wildcards. Anything else is a bug in the caller and raises :class:`InvalidArgument`.
    """
    folded = action.lower() if isinstance(action, str) else ""
    if _REQUEST.fullmatch(folded) is None or (
        folded.startswith("cartfs:") and folded not in _ARCHIVE_FOLDED
    ):
        raise InvalidArgument(f"invalid request action {action!r}")
    return folded


class ActionMatcher:
    """The compiled Action (or NotAction) list of one statement."""

    __slots__ = ("_any", "_exact", "_globs")

    def __init__(self, patterns: Iterable[str]) -> None:
        exact: set[str] = set()
        globs: list[Glob] = []
        for pattern in patterns:
            glob = Glob(tokenize(pattern.lower(), variables=False))
            if glob.is_literal:
                exact.add(pattern.lower())
            else:
                globs.append(glob)
        self._any = any(glob.matches_everything for glob in globs)
        self._exact = frozenset(exact)
        self._globs = tuple(globs)

    def match(self, folded_action: str) -> bool:
        """Whether the (lower-case) action matches any pattern."""
        if self._any or folded_action in self._exact:
            return True
        return any(glob.match(folded_action) for glob in self._globs)
