"""The decision: which statement of which policy allows or denies a request.

Evaluation order is AWS's for identity policies: every statement of every policy is
considered; any applicable Deny decides at once (explicit deny beats any allow); otherwise
the first applicable Allow decides; otherwise the request is implicitly denied.

A statement whose answer is :class:`~cartfs.core.iam.logic.Unknown` (a context value that
does not parse, a variable without a value in a negated position) is *applied* if it is a
Deny and *ignored* if it is an Allow -- both fail closed. (The first implementation skipped
conditional Denies altogether, which failed open.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from cartfs.core.errors import PermissionDenied
from cartfs.core.iam.actions import check_request_action
from cartfs.core.iam.context import ContextInput, RequestContext
from cartfs.core.iam.logic import Unknown
from cartfs.core.iam.policy import Policy
from cartfs.core.iam.resources import check_request_resource

__all__ = ["AccessDenied", "Decision", "enforce", "evaluate"]

DecisionEffect = Literal["Allow", "Deny", "ImplicitDeny"]


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of :func:`evaluate`, and what decided it.

    ``policy_name``/``statement_index``/``sid`` name the deciding statement; they are
    ``None`` for an implicit deny. ``note`` says why a Deny was applied although its
    condition could not be evaluated, or (implicit deny) which Allow was ignored for that
    reason.
    """

    allowed: bool
    effect: DecisionEffect
    policy_name: str | None
    statement_index: int | None
    sid: str | None
    action: str = ""
    resource: str = ""
    note: str | None = None

    def explain(self) -> str:
        """One human sentence: what was decided and by which statement of which policy."""
        request = f"{self.action} on {self.resource}" if self.action else "the request"
        if self.effect == "ImplicitDeny":
            sentence = f"Denied {request}: no statement of any policy allows it"
            if self.note:
                sentence += f" ({self.note})"
            return sentence + "."
        if self.policy_name is None:  # decided without a policy (e.g. IAM is off)
            return f"{'Allowed' if self.allowed else 'Denied'} {request}: {self.note}."
        sid = f" (Sid {self.sid!r})" if self.sid is not None else ""
        where = f"statement {self.statement_index}{sid} of policy {self.policy_name!r}"
        if self.effect == "Allow":
            return f"Allowed {request} by {where}."
        sentence = f"Denied {request} explicitly by {where}"
        if self.note:
            sentence += f", applied because its condition could not be evaluated ({self.note})"
        return sentence + "."


class AccessDenied(PermissionDenied):
    """:func:`enforce` refused a request; ``decision`` says why (``str`` is its sentence)."""

    def __init__(self, decision: Decision) -> None:
        super().__init__(decision.explain())
        self.decision = decision


def evaluate(
    policies: Sequence[Policy],
    action: str,
    resource: str,
    context: RequestContext | ContextInput | None = None,
) -> Decision:
    """Decide whether ``action`` on ``resource`` is allowed by ``policies``.

    ``action`` is one concrete action (``cartfs:Read``, ``s3:GetObject``; any case).
    ``resource`` is ``arn:aws:s3:::bucket[/key]`` or ``archive_arn(path)`` -- an archive
    resource that is not canonical raises :class:`InvalidArgument`, as do malformed
    actions and contexts. ``context`` maps condition keys to a string or list of strings.
    """
    folded = check_request_action(action)
    archive_path = check_request_resource(resource)
    ctx = RequestContext.of(context)
    allow: tuple[Policy, int] | None = None
    ignored: str | None = None
    for policy in policies:
        for compiled in policy.compiled:
            result = compiled.applies(folded, resource, archive_path, ctx)
            if result is False:
                continue
            if compiled.effect == "Deny":
                note = result.reason if isinstance(result, Unknown) else None
                return _decided(policy, compiled.index, "Deny", (action, resource), note)
            if result is True:
                allow = allow or (policy, compiled.index)
            elif ignored is None:
                sid = compiled.statement.sid
                label = f"Sid {sid!r}" if sid is not None else f"statement {compiled.index}"
                ignored = f"{label} of policy {policy.name!r} was ignored: {result.reason}"
    if allow is not None:
        return _decided(allow[0], allow[1], "Allow", (action, resource), None)
    return Decision(False, "ImplicitDeny", None, None, None, action, resource, ignored)


def _decided(
    policy: Policy,
    index: int,
    effect: Literal["Allow", "Deny"],
    request: tuple[str, str],
    note: str | None,
) -> Decision:
    sid = policy.statements[index].sid
    action, resource = request
    return Decision(effect == "Allow", effect, policy.name, index, sid, action, resource, note)


def enforce(
    policies: Sequence[Policy],
    action: str,
    resource: str,
    context: RequestContext | ContextInput | None = None,
) -> Decision:
    """:func:`evaluate`, raising :class:`AccessDenied` (a ``PermissionDenied``) on deny."""
    decision = evaluate(policies, action, resource, context)
    if not decision.allowed:
        raise AccessDenied(decision)
    return decision
