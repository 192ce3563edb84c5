"""The request context: condition keys and their values, looked up case-insensitively.

Adapters describe a request as a mapping ``key -> str | list[str]`` (``aws:SourceIp``,
``aws:CurrentTime``, ``aws:SecureTransport``, ``aws:username``, ``s3:prefix``,
``cartfs:snapshot`` ...). :class:`RequestContext` validates it once, folds the keys to lower
case (IAM condition keys are case-insensitive) and makes ``aws:username`` and
``cartfs:username`` stand in for each other when only one is given. The evaluation engine
never reads a clock or a socket; the archive's IamStore adds ``aws:CurrentTime`` and
``aws:EpochTime`` when a policy needs them and the request did not bring them, and each
adapter adds what only it knows (the mount: ``aws:SecureTransport``, ``cartfs:Transport``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from cartfs.core.errors import InvalidArgument

__all__ = ["ContextInput", "RequestContext"]

ContextInput = Mapping[str, str | Sequence[str]]

_ALIASES = (("aws:username", "cartfs:username"), ("cartfs:username", "aws:username"))


def _values_of(key: str, value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, Sequence) and all(isinstance(item, str) for item in value):
        return tuple(value)
    raise InvalidArgument(
        f"request context: value of {key!r} must be a string or a list of strings"
    )


class RequestContext:
    """A validated, case-folded request context. Build it once per request."""

    __slots__ = ("_values",)

    def __init__(self, raw: ContextInput | None = None) -> None:
        values: dict[str, tuple[str, ...]] = {}
        for key, value in (raw or {}).items():
            if not isinstance(key, str) or not key:
                raise InvalidArgument(f"request context: key {key!r} is not a non-empty string")
            folded = key.lower()
            if folded in values:
                raise InvalidArgument(
                    f"request context: key {key!r} given twice (keys are case-insensitive)"
                )
            values[folded] = _values_of(key, value)
        for missing, present in _ALIASES:
            if missing not in values and present in values:
                values[missing] = values[present]
        self._values = values

    @classmethod
    def of(cls, context: RequestContext | ContextInput | None) -> RequestContext:
        """Return ``context`` itself if already built, else build it."""
        return context if isinstance(context, RequestContext) else cls(context)

    def get(self, folded_key: str) -> tuple[str, ...] | None:
        """The values of a lower-case key, or ``None`` when the key is absent."""
        return self._values.get(folded_key)

    def variable(self, folded_key: str) -> str | None:
        """The value a policy variable ``${key}`` stands for, or ``None`` if it has none.

        Only a key with exactly one value can be substituted (as in AWS, a multi-valued
        key is not a variable). A value that is empty, ``.``, ``..`` or contains ``/`` or
        NUL counts as no value: ``/home/${aws:username}*`` must never degenerate into
        ``/home/*``, and a user called ``alice/x`` or ``..`` must never reach into
        another user's tree (S3 keys are opaque, so ``/`` would otherwise be literal).
        """
        values = self._values.get(folded_key)
        if values is None or len(values) != 1:
            return None
        value = values[0]
        if value in ("", ".", "..") or "/" in value or "\x00" in value:
            return None
        return value

    def items(self) -> tuple[tuple[str, tuple[str, ...]], ...]:
        """All (lower-case key, values) pairs, sorted -- a hashable cache-key ingredient."""
        return tuple(sorted(self._values.items()))

    def __repr__(self) -> str:
        return f"RequestContext({dict(self._values)!r})"
