"""Policy documents: parse, validate, compile once, serialize back.

Theory of operation
-------------------
:meth:`Policy.from_json` does two passes. The *structural* pass walks the JSON (duplicate
keys, unknown keys, wrong types, empty lists) and builds plain frozen data -- :class:`Policy`,
:class:`Statement`, :class:`~cartfs.core.iam.conditions.Condition`. The *semantic* pass runs
in ``Policy.__post_init__`` (so a Policy built directly in Python is checked the same way):
it validates every action, resource and condition and compiles them into matchers that are
kept on the object. A Policy is immutable; evaluating it never re-parses anything.

Every error is an :class:`InvalidArgument` whose message starts with where the problem is,
e.g. ``Statement[2].Condition: unknown operator 'StringLikee'``.

:meth:`Policy.to_json` writes a canonical document (fixed key order, a one-element list
written as a plain string, condition values as strings) and
``Policy.from_json(p.to_json(), name=p.name) == p`` always holds.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from cartfs.core.errors import InvalidArgument
from cartfs.core.iam.actions import ActionMatcher, validate_action_pattern
from cartfs.core.iam.conditions import CompiledCondition, Condition
from cartfs.core.iam.context import RequestContext
from cartfs.core.iam.logic import Tri, Unknown, tri_all
from cartfs.core.iam.resources import ResourceMatcher, ResourcePattern

__all__ = ["VERSIONS", "CompiledStatement", "Effect", "Policy", "Statement"]

#: Accepted policy language versions. Policy variables exist only in 2012-10-17; in
#: 2008-10-17 a ``${...}`` is literal text, as in AWS.
VERSIONS = ("2012-10-17", "2008-10-17")
Effect = Literal["Allow", "Deny"]

_TOP_KEYS = ("Version", "Id", "Statement")
_STATEMENT_KEYS = ("Sid", "Effect", "Action", "NotAction", "Resource", "NotResource", "Condition")


@dataclass(frozen=True, slots=True)
class Statement:
    """One statement, as written. Exactly one of action/not_action and of
    resource/not_resource is set; the Policy that holds it validates that."""

    effect: Effect
    action: tuple[str, ...] | None = None
    not_action: tuple[str, ...] | None = None
    resource: tuple[str, ...] | None = None
    not_resource: tuple[str, ...] | None = None
    conditions: tuple[Condition, ...] = ()
    sid: str | None = None


@dataclass(frozen=True)
class Policy:
    """An immutable, validated and compiled identity policy with a name."""

    statements: tuple[Statement, ...]
    name: str = "inline"
    version: str = "2012-10-17"
    policy_id: str | None = None
    compiled: tuple[CompiledStatement, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise InvalidArgument(f"policy name must be a non-empty string, not {self.name!r}")
        if self.version not in VERSIONS:
            raise InvalidArgument(f"Version: {self.version!r} is not one of {', '.join(VERSIONS)}")
        if not self.statements:
            raise InvalidArgument("Statement: empty list")
        sids: set[str] = set()
        for index, statement in enumerate(self.statements):
            if statement.sid is not None:
                if statement.sid in sids:
                    raise InvalidArgument(
                        f"Statement[{index}].Sid: duplicate Sid {statement.sid!r}"
                    )
                sids.add(statement.sid)
        variables = self.version == "2012-10-17"
        compiled = tuple(
            CompiledStatement(s, index=i, variables=variables)
            for i, s in enumerate(self.statements)
        )
        object.__setattr__(self, "compiled", compiled)

    # --- JSON ------------------------------------------------------------------------

    @classmethod
    def from_json(cls, text: str | bytes, *, name: str = "inline") -> Policy:
        """Parse a JSON policy document. Raises :class:`InvalidArgument` with a location."""
        try:
            document = json.loads(
                text,
                object_pairs_hook=_JsonObject.from_pairs,
                parse_int=_JsonNumber,
                parse_float=_JsonNumber,
                parse_constant=_reject_constant,
            )
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InvalidArgument(f"policy is not valid JSON: {exc}") from None
        except RecursionError:
            raise InvalidArgument("policy is nested too deeply to be a policy") from None
        return cls.from_document(document, name=name)

    @classmethod
    def from_document(cls, document: object, *, name: str = "inline") -> Policy:
        """Build a Policy from an already-decoded JSON value (dicts, lists, strings)."""
        top = _object(document, "policy")
        _check_keys(top, _TOP_KEYS, "policy")
        if "Version" not in top:
            raise InvalidArgument('Version: missing (use "2012-10-17")')
        version = _string(top["Version"], "Version")
        policy_id = _string(top["Id"], "Id") if "Id" in top else None
        if "Statement" not in top:
            raise InvalidArgument("Statement: missing")
        raw = top["Statement"]
        if isinstance(raw, Mapping):
            raw = [raw]
        if not isinstance(raw, list):
            raise InvalidArgument("Statement: must be an object or a list of objects")
        if not raw:
            raise InvalidArgument("Statement: empty list")
        statements = tuple(_statement(item, f"Statement[{i}]") for i, item in enumerate(raw))
        return cls(statements, name=name, version=version, policy_id=policy_id)

    def to_document(self) -> dict[str, Any]:
        """The canonical JSON-ready document (without the name, which is not IAM syntax)."""
        document: dict[str, Any] = {"Version": self.version}
        if self.policy_id is not None:
            document["Id"] = self.policy_id
        document["Statement"] = [_statement_document(s) for s in self.statements]
        return document

    def to_json(self, *, indent: int | None = None) -> str:
        """Serialize to canonical JSON (ASCII only, so it round-trips through any store)."""
        return json.dumps(self.to_document(), indent=indent)


# --- compiled statements -------------------------------------------------------------


class CompiledStatement:
    """A statement's matchers; :meth:`applies` answers whether it covers a request."""

    __slots__ = ("_actions", "_conditions", "_not_action", "_resources", "index", "statement")

    def __init__(self, statement: Statement, *, index: int, variables: bool) -> None:
        where = f"Statement[{index}]"
        self.statement = statement
        self.index = index
        if statement.effect not in ("Allow", "Deny"):
            raise InvalidArgument(f"{where}.Effect: {statement.effect!r} is not 'Allow' or 'Deny'")
        actions, self._not_action = _one_of(statement.action, statement.not_action, where, "Action")
        for i, pattern in enumerate(actions):
            _at(
                f"{where}.{_element(self._not_action, 'Action')}[{i}]",
                validate_action_pattern,
                pattern,
            )
        self._actions = ActionMatcher(actions)
        resources, not_resource = _one_of(
            statement.resource, statement.not_resource, where, "Resource"
        )
        label = _element(not_resource, "Resource")
        patterns = [
            _at(f"{where}.{label}[{i}]", lambda t: _resource(t, variables), text)
            for i, text in enumerate(resources)
        ]
        self._resources = ResourceMatcher(patterns, negated=not_resource)
        self._conditions = _compile_conditions(statement.conditions, variables, where)

    @property
    def effect(self) -> Effect:
        return self.statement.effect

    def applies(
        self, folded_action: str, resource: str, archive_path: str | None, context: RequestContext
    ) -> Tri:
        """Kleene AND of action, resource and conditions for one request."""
        if self._actions.match(folded_action) == self._not_action:
            return False
        covered = self._resources.match(resource, archive_path, context)
        if covered is False:
            return False
        conditions = tri_all(self._conditions, lambda c: c.evaluate(context))
        if conditions is False:
            return False
        return covered if isinstance(covered, Unknown) else conditions


def _element(negated: bool, name: str) -> str:
    return f"Not{name}" if negated else name


def _one_of(
    plain: tuple[str, ...] | None, negated: tuple[str, ...] | None, where: str, name: str
) -> tuple[tuple[str, ...], bool]:
    if plain is not None and negated is not None:
        raise InvalidArgument(f"{where}: has both {name} and Not{name}")
    if plain is None and negated is None:
        raise InvalidArgument(f"{where}: needs {name} or Not{name}")
    values = cast(tuple[str, ...], plain if plain is not None else negated)
    if not values:
        raise InvalidArgument(f"{where}.{_element(negated is not None, name)}: empty list")
    return values, negated is not None


def _resource(text: object, variables: bool) -> ResourcePattern:
    if not isinstance(text, str):
        raise InvalidArgument(f"must be a string, not {type(text).__name__}")
    return ResourcePattern(text, variables=variables)


def _at(where: str, check: Any, value: Any) -> Any:
    """Run ``check(value)``, prefixing an InvalidArgument's message with ``where``."""
    try:
        return check(value)
    except InvalidArgument as exc:
        raise InvalidArgument(f"{where}: {exc}") from None


def _compile_conditions(
    conditions: tuple[Condition, ...], variables: bool, where: str
) -> tuple[CompiledCondition, ...]:
    seen: set[tuple[str, str]] = set()
    compiled = []
    for condition in conditions:
        ident = (condition.operator, str(condition.key).lower())
        if ident in seen:
            raise InvalidArgument(
                f"{where}.Condition.{condition.operator}: key {condition.key!r} given twice "
                "(condition keys are case-insensitive)"
            )
        seen.add(ident)
        compiled.append(
            CompiledCondition(condition, variables=variables, where=f"{where}.Condition")
        )
    return tuple(compiled)


# --- structural parsing ----------------------------------------------------------------


class _JsonObject(dict[str, Any]):
    """A decoded JSON object that remembers keys given more than once."""

    duplicates: tuple[str, ...] = ()

    @classmethod
    def from_pairs(cls, pairs: list[tuple[str, Any]]) -> _JsonObject:
        obj = cls(pairs)
        if len(obj) != len(pairs):
            seen: set[str] = set()
            duplicates: list[str] = []
            for key, _ in pairs:
                if key in seen:
                    duplicates.append(key)
                seen.add(key)
            obj.duplicates = tuple(duplicates)
        return obj


class _JsonNumber(str):
    """A JSON number, kept as its exact text (a condition value such as ``10``)."""

    __slots__ = ()


def _reject_constant(name: str) -> None:
    raise InvalidArgument(f"policy is not valid JSON: {name} is not allowed")


def _object(value: object, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidArgument(f"{where}: must be a JSON object, not {_kind(value)}")
    duplicates = getattr(value, "duplicates", ())
    if duplicates:
        raise InvalidArgument(f"{where}: duplicate key {duplicates[0]!r}")
    return value


def _kind(value: object) -> str:
    if isinstance(value, _JsonNumber) or (
        isinstance(value, int | float) and not isinstance(value, bool)
    ):
        return "a number"
    names = {str: "a string", bool: "a boolean", list: "a list", type(None): "null"}
    return names.get(
        type(value), "an object" if isinstance(value, Mapping) else type(value).__name__
    )


def _check_keys(obj: Mapping[str, Any], allowed: tuple[str, ...], where: str) -> None:
    for key in obj:
        if key in allowed:
            continue
        if key in ("Principal", "NotPrincipal"):
            raise InvalidArgument(f"{where}: {key} is not supported (identity policies only)")
        hint = [a for a in allowed if a.lower() == str(key).lower()]
        suffix = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise InvalidArgument(f"{where}: unknown key {key!r}{suffix}")


def _string(value: object, where: str) -> str:
    if not isinstance(value, str) or isinstance(value, _JsonNumber):
        raise InvalidArgument(f"{where}: must be a string, not {_kind(value)}")
    return value


def _strings(value: object, where: str) -> tuple[str, ...]:
    if isinstance(value, list):
        if not value:
            raise InvalidArgument(f"{where}: empty list")
        return tuple(_string(item, f"{where}[{i}]") for i, item in enumerate(value))
    return (_string(value, where),)


def _scalar(value: object, where: str) -> str:
    """A condition value: strings, booleans and numbers are accepted, kept as text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int | float):
        return repr(value)
    raise InvalidArgument(f"{where}: must be a string, number or boolean, not {_kind(value)}")


def _statement(value: object, where: str) -> Statement:
    obj = _object(value, where)
    _check_keys(obj, _STATEMENT_KEYS, where)
    if "Effect" not in obj:
        raise InvalidArgument(f"{where}: missing Effect")
    effect = _string(obj["Effect"], f"{where}.Effect")
    if effect not in ("Allow", "Deny"):
        raise InvalidArgument(f"{where}.Effect: {effect!r} is not 'Allow' or 'Deny'")

    def strings(key: str) -> tuple[str, ...] | None:
        return _strings(obj[key], f"{where}.{key}") if key in obj else None

    conditions = _conditions(obj["Condition"], f"{where}.Condition") if "Condition" in obj else ()
    return Statement(
        effect=cast(Effect, effect),
        action=strings("Action"),
        not_action=strings("NotAction"),
        resource=strings("Resource"),
        not_resource=strings("NotResource"),
        conditions=conditions,
        sid=_string(obj["Sid"], f"{where}.Sid") if "Sid" in obj else None,
    )


def _conditions(value: object, where: str) -> tuple[Condition, ...]:
    block = _object(value, where)
    out: list[Condition] = []
    for operator, keys in block.items():
        here = f"{where}.{operator}"
        mapping = _object(keys, here)
        if not mapping:
            raise InvalidArgument(f"{here}: empty object")
        for key, raw in mapping.items():
            if isinstance(raw, list):
                if not raw:
                    raise InvalidArgument(f"{here}.{key}: empty list")
                values = tuple(_scalar(v, f"{here}.{key}[{i}]") for i, v in enumerate(raw))
            else:
                values = (_scalar(raw, f"{here}.{key}"),)
            out.append(Condition(operator, key, values))
    return tuple(out)


def _one_or_list(values: tuple[str, ...]) -> str | list[str]:
    return values[0] if len(values) == 1 else list(values)


def _statement_document(statement: Statement) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if statement.sid is not None:
        out["Sid"] = statement.sid
    out["Effect"] = statement.effect
    for key, values in (
        ("Action", statement.action),
        ("NotAction", statement.not_action),
        ("Resource", statement.resource),
        ("NotResource", statement.not_resource),
    ):
        if values is not None:
            out[key] = _one_or_list(values)
    if statement.conditions:
        block: dict[str, dict[str, Any]] = {}
        for condition in statement.conditions:
            block.setdefault(condition.operator, {})[condition.key] = _one_or_list(condition.values)
        out["Condition"] = block
    return out
