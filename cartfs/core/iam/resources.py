"""Resource patterns: ``*``, S3 ARNs and archive-path ARNs.

* ``*`` matches every resource of both namespaces.
* ``arn:aws:s3:::bucket/key`` patterns use AWS semantics over the whole ARN: ``*`` crosses
  ``/``, keys are opaque and case-sensitive (an S3 key may contain ``..`` or ``//``).
* ``arn:cartfs:::/path`` patterns use glob semantics over canonical paths (see
  :class:`~cartfs.core.iam.patterns.PathGlob`). The pattern itself must be canonical --
  no ``.``/``..``/empty segments, no trailing ``/`` -- because such a pattern could never
  match a canonical request and would only hide a mistake.

Policy variables are resolved per request. An unresolvable variable makes a ``Resource``
pattern match nothing; inside ``NotResource`` it makes the answer :class:`Unknown`, so an
Allow cannot widen and a Deny still applies (fail closed).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from cartfs.core.errors import InvalidArgument
from cartfs.core.iam.context import RequestContext
from cartfs.core.iam.logic import Tri, Unknown
from cartfs.core.iam.patterns import (
    ARCHIVE_ARN_PREFIX,
    GLOBSTAR,
    S3_ARN_PREFIX,
    Glob,
    PathGlob,
    Segment,
    Token,
    Var,
    Wild,
    canonical_archive_path,
    compile_glob,
    compile_path_glob,
    has_variables,
    split_segments,
    substitute,
    tokenize,
)

__all__ = ["ResourceMatcher", "ResourcePattern", "check_request_resource"]


def _check_segment(segment: Segment) -> None:
    if not segment:
        raise InvalidArgument("archive path pattern has an empty segment ('//' or trailing '/')")
    if segment in ((".",), ("..",)):
        raise InvalidArgument(f"archive path pattern has a {segment[0]!r} segment")
    stars = [i for i, token in enumerate(segment) if token is Wild.STAR]
    adjacent = any(b == a + 1 for a, b in itertools.pairwise(stars))
    if adjacent and segment != GLOBSTAR:
        raise InvalidArgument("'**' must be a whole path segment, as in '/home/**'")


class ResourcePattern:
    """One compiled Resource/NotResource entry."""

    __slots__ = ("_glob", "_kind", "_path_glob", "_segments", "_tokens", "text")

    def __init__(self, text: str, *, variables: bool) -> None:
        self.text = text
        self._glob: Glob | None = None
        self._path_glob: PathGlob | None = None
        self._tokens: tuple[Token, ...] = ()
        self._segments: tuple[Segment, ...] = ()
        if "\x00" in text:
            raise InvalidArgument("resource contains a NUL byte")
        if text == "*":
            self._kind = "any"
        elif text.startswith(ARCHIVE_ARN_PREFIX):
            self._kind = "archive"
            self._compile_archive(text[len(ARCHIVE_ARN_PREFIX) :], variables)
        elif text.startswith(S3_ARN_PREFIX) and len(text) > len(S3_ARN_PREFIX):
            self._kind = "s3"
            self._tokens = tokenize(text, variables=variables)
            if not has_variables(self._tokens):
                self._glob = Glob(self._tokens)
        else:
            raise InvalidArgument(
                f"invalid resource {text!r} (expected '*', 'arn:aws:s3:::bucket[/key]' "
                "or 'arn:cartfs:::/path')"
            )

    def _compile_archive(self, path: str, variables: bool) -> None:
        if not path.startswith("/"):
            raise InvalidArgument(
                f"archive resource {ARCHIVE_ARN_PREFIX + path!r} must name an absolute path "
                f"(everything is '{ARCHIVE_ARN_PREFIX}/**')"
            )
        self._segments = split_segments(tokenize(path, variables=variables))
        for segment in self._segments:
            _check_segment(segment)
        if not any(isinstance(t, Var) for segment in self._segments for t in segment):
            self._path_glob = PathGlob(self._segments)

    @property
    def has_variables(self) -> bool:
        """Whether the pattern needs the request context."""
        return self._kind != "any" and self._glob is None and self._path_glob is None

    def match(self, resource: str, archive_path: str | None, context: RequestContext) -> Tri:
        """Match a request resource (``archive_path`` is its path, or ``None`` for S3).

        Returns :class:`Unknown` only when a variable has no value.
        """
        if self._kind == "any":
            return True
        if self._kind == "archive":
            if archive_path is None:
                return False
            path_glob = self._path_glob
            if path_glob is None:
                segments: list[Segment] = []
                for template in self._segments:
                    segment = substitute(template, context)
                    if segment is None:
                        return Unknown(f"a policy variable in {self.text!r} has no value")
                    segments.append(segment)
                path_glob = compile_path_glob(tuple(segments))
            return path_glob.match(archive_path)
        if archive_path is not None:
            return False
        glob = self._glob
        if glob is None:
            tokens = substitute(self._tokens, context)
            if tokens is None:
                return Unknown(f"a policy variable in {self.text!r} has no value")
            glob = compile_glob(tokens)
        return glob.match(resource)


class ResourceMatcher:
    """The compiled Resource (or NotResource) list of one statement."""

    __slots__ = ("_negated", "patterns")

    def __init__(self, patterns: Sequence[ResourcePattern], *, negated: bool) -> None:
        self.patterns = tuple(patterns)
        self._negated = negated

    def match(self, resource: str, archive_path: str | None, context: RequestContext) -> Tri:
        """Whether the statement covers the resource (``NotResource`` inverted)."""
        unknown: Unknown | None = None
        for pattern in self.patterns:
            result = pattern.match(resource, archive_path, context)
            if result is True:
                return not self._negated
            if isinstance(result, Unknown) and unknown is None:
                unknown = result
        if not self._negated:
            return False  # an unresolvable variable in Resource matches nothing
        return True if unknown is None else unknown


def check_request_resource(resource: str) -> str | None:
    """Validate a request resource; return its archive path, or ``None`` for S3.

    An archive resource must already be canonical (build it with
    :func:`~cartfs.core.iam.patterns.archive_arn`); a non-canonical one raises
    :class:`InvalidArgument` instead of being matched, so a forgotten canonicalisation is
    loud and never a bypass.
    """
    if not isinstance(resource, str) or "\x00" in resource:
        raise InvalidArgument(f"invalid request resource {resource!r}")
    if resource.startswith(ARCHIVE_ARN_PREFIX):
        path = resource[len(ARCHIVE_ARN_PREFIX) :]
        if not path or canonical_archive_path(path) != path:
            raise InvalidArgument(
                f"request resource {resource!r} is not canonical; use archive_arn(path)"
            )
        return path
    if resource.startswith(S3_ARN_PREFIX) and len(resource) > len(S3_ARN_PREFIX):
        return None
    raise InvalidArgument(f"invalid request resource {resource!r}")
