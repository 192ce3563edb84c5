"""Condition operators.

Theory of operation
-------------------
A ``Condition`` block ``{"StringLike": {"s3:prefix": ["home/*", "public/*"]}}`` becomes one
:class:`Condition` per (operator, key). A statement's conditions are ANDed; the values of
one key are ORed, and for a negated operator (``StringNotEquals``, ``NotIpAddress`` ...) the
result is the negation of that OR ("equals none of them", AWS's NOR).

The operator name decomposes into an optional set prefix (``ForAnyValue:`` /
``ForAllValues:``), a base operator and an optional ``IfExists`` suffix. A *missing* key
(absent, or an empty list) gives, as in AWS: ``ForAllValues`` -> true, ``ForAnyValue`` ->
false, ``...IfExists`` -> true, a negated operator -> true, any other operator -> false.
``Null`` tests presence only. Several context values without a set prefix behave like
``ForAnyValue`` for a positive operator and "none of them matches" for a negated one.

Policy values are parsed and checked when the policy is compiled (a bad number in a policy
is an :class:`InvalidArgument`); context values are parsed per request, and one that does
not parse makes the condition :class:`Unknown`, which the evaluator resolves fail-closed.
"""

from __future__ import annotations

import difflib
import ipaddress
import operator as op
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, NamedTuple, TypeVar

from cartfs.core.errors import InvalidArgument
from cartfs.core.iam.context import RequestContext
from cartfs.core.iam.logic import Tri, Unknown, tri_all, tri_any, tri_not
from cartfs.core.iam.patterns import (
    Glob,
    Token,
    compile_glob,
    has_variables,
    split_tokens,
    substitute,
    tokenize,
)

__all__ = ["OPERATORS", "CompiledCondition", "Condition", "validate_condition_key"]


@dataclass(frozen=True, slots=True)
class Condition:
    """One (operator, key, values) entry of a statement's Condition block, as written."""

    operator: str
    key: str
    values: tuple[str, ...]


class _Spec(NamedTuple):
    family: str
    relation: str
    negated: bool


_RELATIONS = ("Equals", "LessThan", "LessThanEquals", "GreaterThan", "GreaterThanEquals")
_SHORT = {"Equals": "eq", "LessThan": "lt", "LessThanEquals": "le"}
_SHORT |= {"GreaterThan": "gt", "GreaterThanEquals": "ge"}

#: Base operator name -> (family, relation, negated).
OPERATORS: dict[str, _Spec] = {
    "StringEquals": _Spec("string", "eq", False),
    "StringNotEquals": _Spec("string", "eq", True),
    "StringEqualsIgnoreCase": _Spec("string", "ieq", False),
    "StringNotEqualsIgnoreCase": _Spec("string", "ieq", True),
    "StringLike": _Spec("string", "like", False),
    "StringNotLike": _Spec("string", "like", True),
    "Bool": _Spec("bool", "eq", False),
    "IpAddress": _Spec("ip", "in", False),
    "NotIpAddress": _Spec("ip", "in", True),
    # AWS documents ArnEquals and ArnLike as the same operator (wildcards allowed in both).
    "ArnEquals": _Spec("arn", "like", False),
    "ArnLike": _Spec("arn", "like", False),
    "ArnNotEquals": _Spec("arn", "like", True),
    "ArnNotLike": _Spec("arn", "like", True),
    "Null": _Spec("null", "eq", False),
}
for _family, _prefix in (("numeric", "Numeric"), ("date", "Date")):
    for _relation in _RELATIONS:
        OPERATORS[_prefix + _relation] = _Spec(_family, _SHORT[_relation], False)
    OPERATORS[_prefix + "NotEquals"] = _Spec(_family, "eq", True)

_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "eq": op.eq,
    "lt": op.lt,
    "le": op.le,
    "gt": op.gt,
    "ge": op.ge,
    "in": lambda address, network: address in network,
}
_KEY_NAMESPACES = ("aws:", "s3:", "cartfs:")
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_NOUNS = {"numeric": "a number", "date": "a date", "bool": "'true' or 'false'"}
_NOUNS |= {"ip": "an IP address", "arn": "an ARN"}


# --- value parsers: raise ValueError -----------------------------------------------------


def _parse_number(text: str) -> Decimal:
    if _NUMBER.fullmatch(text) is None:
        raise ValueError(text)
    try:
        return Decimal(text)
    except InvalidOperation as exc:
        raise ValueError(text) from exc


def _parse_date(text: str) -> datetime:
    """ISO-8601 (naive means UTC) or epoch seconds."""
    try:
        if _NUMBER.fullmatch(text):
            return datetime.fromtimestamp(float(text), UTC)
        moment = datetime.fromisoformat(text)
    except (ValueError, OverflowError, OSError) as exc:
        raise ValueError(text) from exc
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _parse_bool(text: str) -> bool:
    folded = text.lower()
    if folded not in ("true", "false"):
        raise ValueError(text)
    return folded == "true"


def _parse_address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    address = ipaddress.ip_address(text)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")


def _parse_network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """Addresses in the context are folded from ``::ffff:a.b.c.d`` to IPv4, so a policy's
    IPv4-mapped network is folded the same way (else it could never match)."""
    network = ipaddress.ip_network(text, strict=False)
    if isinstance(network, ipaddress.IPv6Network) and network.prefixlen >= 96 \
            and network.subnet_of(_MAPPED):
        mapped = network.network_address.ipv4_mapped
        assert mapped is not None
        return ipaddress.IPv4Network((mapped, network.prefixlen - 96))
    return network


def _split_arn(text: str) -> list[str]:
    parts = text.split(":", 5)
    if len(parts) != 6 or parts[0] != "arn":
        raise ValueError(text)
    return parts


_CONTEXT_PARSERS: dict[str, Callable[[str], Any]] = {
    "numeric": _parse_number,
    "date": _parse_date,
    "bool": _parse_bool,
    "ip": _parse_address,
    "arn": _split_arn,
}
_POLICY_PARSERS: dict[str, Callable[[str], Any]] = {
    "numeric": _parse_number,
    "date": _parse_date,
    "bool": _parse_bool,
    "ip": _parse_network,
}

# --- compiled policy values: (parsed context value, context) -> Tri ----------------------

_ValueTest = Callable[[Any, RequestContext], Tri]
_T = TypeVar("_T")


def _literal(tokens: tuple[Token, ...]) -> str:
    return "".join(token for token in tokens if isinstance(token, str))


def _string_matcher(tokens: tuple[Token, ...], relation: str) -> Callable[[str], bool]:
    if relation == "like":
        return compile_glob(tokens).match
    text = _literal(tokens)
    if relation == "ieq":
        folded = text.casefold()
        return lambda value: value.casefold() == folded
    return text.__eq__


def _string_test(raw: str, relation: str, variables: bool) -> _ValueTest:
    tokens = tokenize(raw, variables=variables, wildcards=relation == "like")
    if not has_variables(tokens):
        static = _string_matcher(tokens, relation)
        return lambda value, _context: static(value)

    def test(value: str, context: RequestContext) -> Tri:
        resolved = substitute(tokens, context)
        if resolved is None:
            return Unknown(f"a policy variable in {raw!r} has no value")
        return _string_matcher(resolved, relation)(value)

    return test


def _arn_test(raw: str, variables: bool) -> _ValueTest:
    parts = [tuple(part) for part in split_tokens(tokenize(raw, variables=variables), ":", 5)]
    if len(parts) != 6 or parts[0] != ("arn",):
        raise ValueError(raw)
    static = None if any(has_variables(p) for p in parts) else [Glob(p) for p in parts]

    def test(value: list[str], context: RequestContext) -> Tri:
        globs = static
        if globs is None:
            resolved = [substitute(part, context) for part in parts]
            if any(part is None for part in resolved):
                return Unknown(f"a policy variable in {raw!r} has no value")
            globs = [compile_glob(part) for part in resolved if part is not None]
        return all(glob.match(piece) for glob, piece in zip(globs, value, strict=True))

    return test


def _value_test(spec: _Spec, raw: str, variables: bool) -> _ValueTest:
    """Compile one policy value; raises ValueError when it does not parse."""
    if spec.family == "string":
        return _string_test(raw, spec.relation, variables)
    if spec.family == "arn":
        return _arn_test(raw, variables)
    parsed = _POLICY_PARSERS[spec.family](raw)
    compare = _COMPARE[spec.relation]
    return lambda value, _context: compare(value, parsed)


# --- conditions ----------------------------------------------------------------------------


def validate_condition_key(key: object) -> str:
    """Check a condition key (``namespace:name``); return it. Raises InvalidArgument."""
    if not isinstance(key, str) or not key.lower().startswith(_KEY_NAMESPACES):
        raise InvalidArgument(f"condition key {key!r} must start with aws:, s3: or cartfs:")
    if len(key.split(":", 1)[1]) == 0:
        raise InvalidArgument(f"condition key {key!r} has no name after the namespace")
    return key


def _unknown_operator(name: str, where: str) -> InvalidArgument:
    message = f"{where}: unknown operator {name!r}"
    spellings = list(OPERATORS) + [f"{n}IfExists" for n in OPERATORS if n != "Null"]
    close = [s for s in spellings if s.lower() == name.lower()]
    close = close or difflib.get_close_matches(name, spellings, n=1, cutoff=0.8)
    return InvalidArgument(message + (f" (did you mean {close[0]!r}?)" if close else ""))


def _split_operator(name: str, where: str) -> tuple[str | None, _Spec, bool]:
    """``ForAnyValue:StringLikeIfExists`` -> ("any", spec of StringLike, True)."""
    quantifier, base = None, name
    for prefix, kind in (("ForAnyValue:", "any"), ("ForAllValues:", "all")):
        if name.startswith(prefix):
            quantifier, base = kind, name[len(prefix) :]
    if_exists = base.endswith("IfExists") and base != "IfExists"
    spec = OPERATORS.get(base[: -len("IfExists")] if if_exists else base)
    if spec is None:
        raise _unknown_operator(name, where)
    if spec.family == "null" and (if_exists or quantifier):
        raise InvalidArgument(f"{where}: {name!r}: Null takes neither IfExists nor a set prefix")
    return quantifier, spec, if_exists


class CompiledCondition:
    """A :class:`Condition` ready to evaluate against a :class:`RequestContext`."""

    __slots__ = ("_folded_key", "_if_exists", "_null", "_quantifier", "_spec", "_tests", "source")

    def __init__(self, condition: Condition, *, variables: bool, where: str) -> None:
        self.source = condition
        self._quantifier, self._spec, self._if_exists = _split_operator(condition.operator, where)
        here = f"{where}.{condition.operator}.{condition.key}"
        try:
            self._folded_key = validate_condition_key(condition.key).lower()
        except InvalidArgument as exc:
            raise InvalidArgument(f"{where}.{condition.operator}: {exc}") from None
        if not condition.values:
            raise InvalidArgument(f"{here}: empty list of values")
        self._null: tuple[bool, ...] = ()
        self._tests: tuple[_ValueTest, ...] = ()
        if self._spec.family == "null":
            self._null = tuple(self._compile(_parse_bool, v, here) for v in condition.values)
        else:
            spec = self._spec
            self._tests = tuple(
                self._compile(lambda raw: _value_test(spec, raw, variables), v, here)
                for v in condition.values
            )

    def _compile(self, parse: Callable[[str], _T], raw: str, here: str) -> _T:
        try:
            return parse(raw)
        except ValueError:
            noun = _NOUNS.get(self._spec.family, "'true' or 'false'")
            raise InvalidArgument(f"{here}: {raw!r} is not {noun}") from None
        except InvalidArgument as exc:
            raise InvalidArgument(f"{here}: {exc}") from None

    def evaluate(self, context: RequestContext) -> Tri:
        """True, False, or Unknown when a context value cannot be parsed."""
        values = context.get(self._folded_key)
        if self._spec.family == "null":
            return (not values) in self._null
        if not values:
            if self._if_exists:
                return True
            if self._quantifier is not None:
                return self._quantifier == "all"
            return self._spec.negated
        parse = _CONTEXT_PARSERS.get(self._spec.family)

        def one(raw: str) -> Tri:
            if parse is None:
                parsed: Any = raw
            else:
                try:
                    parsed = parse(raw)
                except ValueError:
                    noun = _NOUNS[self._spec.family]
                    return Unknown(
                        f"{self.source.operator} on {self.source.key}: context value "
                        f"{raw!r} is not {noun}"
                    )
            hit = tri_any(self._tests, lambda test: test(parsed, context))
            return tri_not(hit) if self._spec.negated else hit

        if self._quantifier == "all" or (self._quantifier is None and self._spec.negated):
            return tri_all(values, one)
        return tri_any(values, one)
