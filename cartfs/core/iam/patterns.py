"""Wildcard patterns, policy variables and archive path canonicalisation.

Theory of operation
-------------------
A pattern string is first *tokenized* into literals, wildcards (``*``, ``?``) and policy
variables (``${aws:username}``). Variables are replaced by the request's value *as a
literal token*, so a user called ``a*`` can never act as a wildcard, and a value holding a
``/`` can never add a path segment (segments are split before substitution).

Two matchers are built from tokens:

* :class:`Glob` -- AWS string semantics: ``*`` is any run of characters (``/`` included),
  ``?`` exactly one. Used for actions, S3 ARNs, ``StringLike`` and ARN components. It does
  not use backtracking regular expressions: the pattern is cut at each ``*`` into fixed-
  length chunks; the first chunk must match at the start, the last at the end, and each
  middle chunk is searched for leftmost. Leftmost placement is always safe for fixed-length
  chunks, so a match costs at most O(len(text) x len(pattern)) -- no pathological pattern
  can stall a request.
* :class:`PathGlob` -- archive glob semantics over path *segments*: ``*`` and ``?`` stay
  inside one segment, a whole segment ``**`` matches zero or more whole segments. The same
  chunk algorithm runs one level up, with segments as the characters and ``**`` as the star.

Archive paths are compared only in canonical form (:func:`canonical_archive_path`), so
``..``, ``.`` and ``//`` never reach a matcher; a canonical path ``/a/b`` has the segments
``["a", "b"]`` and the root ``/`` has none.
"""

from __future__ import annotations

import enum
import functools
import re
from collections.abc import Sequence
from typing import NamedTuple

from cartfs.core.errors import InvalidArgument
from cartfs.core.iam.context import RequestContext

__all__ = [
    "ARCHIVE_ARN_PREFIX",
    "S3_ARN_PREFIX",
    "Glob",
    "PathGlob",
    "Token",
    "Var",
    "Wild",
    "archive_arn",
    "canonical_archive_path",
    "has_variables",
    "s3_arn",
    "split_tokens",
    "substitute",
    "tokenize",
]

ARCHIVE_ARN_PREFIX = "arn:cartfs:::"
S3_ARN_PREFIX = "arn:aws:s3:::"


class Wild(enum.Enum):
    """A wildcard token."""

    STAR = "*"
    QMARK = "?"


class Var(NamedTuple):
    """A policy variable ``${key}`` or ``${key, 'default'}``; ``key`` is lower case."""

    key: str
    default: str | None
    text: str


Token = str | Wild | Var

_VARIABLE = re.compile(r"\$\{\s*([A-Za-z0-9_.:/-]+)\s*(?:,\s*'([^']*)'\s*)?\}")
_ESCAPES = {"${*}": "*", "${?}": "?", "${$}": "$"}
_VARIABLE_NAMESPACES = ("aws:", "s3:", "cartfs:")


def _push_literal(tokens: list[Token], text: str) -> None:
    last = tokens[-1] if tokens else None
    if isinstance(last, str):
        tokens[-1] = last + text
    else:
        tokens.append(text)


def _parse_variable(text: str, start: int) -> tuple[str | Var, int]:
    """Parse the ``${...}`` at ``text[start]``; return the token and the index after it."""
    for escape, literal in _ESCAPES.items():
        if text.startswith(escape, start):
            return literal, start + len(escape)
    match = _VARIABLE.match(text, start)
    if match is None:
        raise InvalidArgument(f"malformed policy variable at offset {start} in {text!r}")
    key = match.group(1)
    if not key.lower().startswith(_VARIABLE_NAMESPACES):
        raise InvalidArgument(f"policy variable ${{{key}}} is not an aws:, s3: or cartfs: key")
    return Var(key.lower(), match.group(2), match.group(0)), match.end()


def tokenize(text: str, *, variables: bool, wildcards: bool = True) -> tuple[Token, ...]:
    """Split ``text`` into literal, wildcard and variable tokens.

    ``variables=False`` (policy version 2008-10-17) keeps ``${...}`` literal, as AWS does;
    ``wildcards=False`` keeps ``*`` and ``?`` literal (``StringEquals`` values).
    Raises :class:`InvalidArgument` for a malformed ``${``.
    """
    tokens: list[Token] = []
    i = 0
    while i < len(text):
        char = text[i]
        if wildcards and char in "*?":
            tokens.append(Wild(char))
            i += 1
        elif variables and text.startswith("${", i):
            token, i = _parse_variable(text, i)
            if isinstance(token, Var):
                tokens.append(token)
            else:
                _push_literal(tokens, token)
        else:
            _push_literal(tokens, char)
            i += 1
    return tuple(tokens)


def has_variables(tokens: Sequence[Token]) -> bool:
    """Whether any token is a policy variable."""
    return any(isinstance(token, Var) for token in tokens)


def substitute(tokens: Sequence[Token], context: RequestContext) -> tuple[Token, ...] | None:
    """Replace variables by their (literal) values; ``None`` if one has no value."""
    out: list[Token] = []
    for token in tokens:
        if isinstance(token, Var):
            value = context.variable(token.key)
            if value is None:
                value = token.default
            if value is None:
                return None
            out.append(value)
        else:
            out.append(token)
    return tuple(out)


# --- string globs (AWS semantics) -------------------------------------------------------


def _chunk(tokens: Sequence[Token]) -> tuple[re.Pattern[str], int]:
    """A fixed-length regular expression for wildcard-free tokens, and its length."""
    parts: list[str] = []
    length = 0
    for token in tokens:
        if token is Wild.QMARK:
            parts.append(".")
            length += 1
        else:
            assert isinstance(token, str)
            parts.append(re.escape(token))
            length += len(token)
    return re.compile("".join(parts), re.DOTALL), length


def _split_at_stars(tokens: Sequence[Token]) -> list[list[Token]]:
    groups: list[list[Token]] = [[]]
    for token in tokens:
        if isinstance(token, Var):
            raise ValueError("substitute variables before compiling a glob")
        if token is Wild.STAR:
            groups.append([])
        else:
            groups[-1].append(token)
    return groups


class Glob:
    """A compiled AWS-style wildcard pattern (``*`` any run, ``?`` one character)."""

    __slots__ = ("_exact", "_full", "_head", "_middle", "_min_len", "_tail", "_text")

    def __init__(self, tokens: Sequence[Token]) -> None:
        groups = _split_at_stars(tokens)
        self._text = "".join(t.value if isinstance(t, Wild) else str(t) for t in tokens)
        self._exact: str | None = None
        self._full: re.Pattern[str] | None = None
        if len(groups) == 1:
            if all(isinstance(t, str) for t in groups[0]):
                self._exact = "".join(str(t) for t in groups[0])
            else:
                self._full = _chunk(groups[0])[0]
        self._head = _chunk(groups[0])
        self._tail = _chunk(groups[-1])
        self._middle = tuple(_chunk(group) for group in groups[1:-1] if group)
        self._min_len = self._head[1] + self._tail[1] + sum(n for _, n in self._middle)

    @classmethod
    def from_text(cls, text: str) -> Glob:
        """Compile a pattern that has no variables."""
        return cls(tokenize(text, variables=False))

    @property
    def matches_everything(self) -> bool:
        """True for ``*`` (and ``**``...): any string matches."""
        return self._exact is None and self._full is None and self._min_len == 0

    @property
    def is_literal(self) -> bool:
        """True when the pattern has no wildcard at all."""
        return self._exact is not None

    def match(self, text: str) -> bool:
        """Whether the whole of ``text`` matches."""
        if self._exact is not None:
            return text == self._exact
        if self._full is not None:
            return self._full.fullmatch(text) is not None
        if len(text) < self._min_len:
            return False
        head, head_len = self._head
        tail, tail_len = self._tail
        end = len(text) - tail_len
        if head_len and head.match(text) is None:
            return False
        if tail_len and tail.match(text, end) is None:
            return False
        pos = head_len
        for chunk, _ in self._middle:
            found = chunk.search(text, pos, end)
            if found is None:
                return False
            pos = found.end()
        return True

    def __repr__(self) -> str:
        return f"Glob({self._text!r})"


@functools.lru_cache(maxsize=4096)
def compile_glob(tokens: tuple[Token, ...]) -> Glob:
    """:class:`Glob` for substituted tokens, memoised (patterns with variables)."""
    return Glob(tokens)


# --- archive path globs ----------------------------------------------------------------

Segment = tuple[Token, ...]
GLOBSTAR: Segment = (Wild.STAR, Wild.STAR)


def split_tokens(tokens: Sequence[Token], sep: str, maxsplit: int = -1) -> list[list[Token]]:
    """Split tokens at the literal separator ``sep``, never inside a variable.

    Use it on a *template*, before substitution, so that a variable's value can never
    contribute a separator (a ``/`` to a path, a ``:`` to an ARN).
    """
    parts: list[list[Token]] = [[]]
    for token in tokens:
        if not isinstance(token, str):
            parts[-1].append(token)
            continue
        budget = -1 if maxsplit < 0 else maxsplit - (len(parts) - 1)
        pieces = token.split(sep, budget) if budget != 0 else [token]
        for i, piece in enumerate(pieces):
            if i:
                parts.append([])
            if piece:
                parts[-1].append(piece)
    return parts


def split_segments(tokens: Sequence[Token]) -> tuple[Segment, ...]:
    """Split a path-pattern template into segments; the pattern must start with ``/``.

    ``/`` alone yields no segments (the root); ``//`` and a trailing ``/`` yield empty
    segments, which the caller rejects.
    """
    parts = split_tokens(tokens, "/")
    if parts[0]:
        raise InvalidArgument("archive path pattern must start with '/'")
    rest = parts[1:]
    if rest == [[]]:
        return ()
    return tuple(tuple(segment) for segment in rest)


class PathGlob:
    """A compiled archive glob over canonical paths (``*``, ``?``, whole-segment ``**``)."""

    __slots__ = ("_exact", "_groups", "_min_len", "_never", "_prefix", "_text")

    def __init__(self, segments: Sequence[Segment]) -> None:
        # A literal '/' inside a segment (from a substituted value) can never match a
        # segment of a canonical path; it must not reach the string fast paths either.
        self._never = any(isinstance(t, str) and "/" in t for seg in segments for t in seg)
        self._text = "/" + "/".join(
            "".join(t.value if isinstance(t, Wild) else str(t) for t in seg) for seg in segments
        )
        groups: list[list[Glob]] = [[]]
        for segment in segments:
            if segment == GLOBSTAR:
                groups.append([])
            else:
                groups[-1].append(Glob(segment))
        self._groups = groups
        self._min_len = sum(len(group) for group in groups)
        literal = all(glob.is_literal for group in groups for glob in group)
        # Fast paths: no wildcard at all, or a literal directory followed by one '/**'.
        self._exact = self._text if literal and len(groups) == 1 else None
        self._prefix: str | None = None
        if literal and len(groups) == 2 and not groups[1]:
            self._prefix = self._text[: -len("/**")]

    def match(self, path: str) -> bool:
        """Whether the canonical ``path`` matches."""
        if self._never:
            return False
        if self._exact is not None:
            return path == self._exact
        if self._prefix is not None:
            prefix = self._prefix
            return path == (prefix or "/") or path.startswith(prefix + "/")
        return self._match_segments([] if path == "/" else path[1:].split("/"))

    def _match_segments(self, names: list[str]) -> bool:
        groups = self._groups
        if len(groups) == 1:
            return len(names) == len(groups[0]) and all(
                glob.match(name) for glob, name in zip(groups[0], names, strict=True)
            )
        if len(names) < self._min_len:
            return False
        head, tail = groups[0], groups[-1]
        end = len(names) - len(tail)
        if not _run_matches(head, names, 0) or not _run_matches(tail, names, end):
            return False
        pos = len(head)
        for group in groups[1:-1]:
            found = _search_run(group, names, pos, end)
            if found < 0:
                return False
            pos = found + len(group)
        return True

    def __repr__(self) -> str:
        return f"PathGlob({self._text!r})"


def _run_matches(run: Sequence[Glob], names: Sequence[str], start: int) -> bool:
    return all(glob.match(names[start + i]) for i, glob in enumerate(run))


def _search_run(run: Sequence[Glob], names: Sequence[str], start: int, end: int) -> int:
    """Leftmost index ``i`` in ``[start, end - len(run)]`` where ``run`` matches, or -1."""
    for i in range(start, end - len(run) + 1):
        if _run_matches(run, names, i):
            return i
    return -1


@functools.lru_cache(maxsize=4096)
def compile_path_glob(segments: tuple[Segment, ...]) -> PathGlob:
    """:class:`PathGlob` for substituted segments, memoised (patterns with variables)."""
    return PathGlob(segments)


# --- canonical archive paths -----------------------------------------------------------


def canonical_archive_path(path: str) -> str:
    """The canonical form of an archive path, the only form policies are matched against.

    Absolute (a relative path is taken from the archive root), ``//`` collapsed, ``.``
    removed, ``..`` resolved lexically and never above ``/``, no trailing ``/`` (except the
    root itself). Percent-escapes are *not* decoded: ``%2F`` and ``%2e`` are ordinary
    characters of a name -- adapters decode URLs before calling. An empty path or a NUL
    byte raises :class:`InvalidArgument`.
    """
    if not isinstance(path, str):
        raise InvalidArgument(f"archive path must be a string, not {type(path).__name__}")
    if not path:
        raise InvalidArgument("archive path is empty")
    if "\x00" in path:
        raise InvalidArgument(f"archive path contains a NUL byte: {path!r}")
    names: list[str] = []
    for name in path.split("/"):
        if name in ("", "."):
            continue
        if name == "..":
            if names:
                names.pop()
        else:
            names.append(name)
    return "/" + "/".join(names)


def archive_arn(path: str) -> str:
    """The resource string for an archive path: ``arn:cartfs:::`` + the canonical path."""
    return ARCHIVE_ARN_PREFIX + canonical_archive_path(path)


def s3_arn(bucket: str, key: str | None = None) -> str:
    """The resource string of an S3 bucket, or of an object (the key is kept verbatim)."""
    if not bucket or "/" in bucket or "\x00" in bucket:
        raise InvalidArgument(f"invalid S3 bucket name {bucket!r}")
    if key is None:
        return S3_ARN_PREFIX + bucket
    if "\x00" in key:
        raise InvalidArgument(f"S3 key contains a NUL byte: {key!r}")
    return f"{S3_ARN_PREFIX}{bucket}/{key}"
