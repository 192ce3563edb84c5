"""IAM state stored inside the archive: users, access keys, policies, attachments.

Records live in the system tree (never in snapshots, so restoring a snapshot does not bring
back old permissions) under ``iam/``:

    iam/user/NAME      JSON {"name", "created", "policies": [...], "keys": [ids]}
    iam/key/KEYID      JSON {"user", "secret", "created", "status"}
    iam/policy/NAME    the policy document (JSON, as given, validated)
    iam/generation     u64, bumped by every change

Decisions are cached per (principal, action, resource, context) under the generation, so a
cached decision never survives a change of policy (the first implementation's cache did).
When the archive holds no policy at all, IAM is off and everything is allowed; once one
policy exists, every principal is denied whatever no statement allows. When a policy names
``aws:CurrentTime`` or ``aws:EpochTime``, a request without them is decided at the current
second (the clock is the one outside input the store reads). Access-key secrets are
stored as given (SigV4 needs them); in an encrypted archive the system tree is sealed.
"""

from __future__ import annotations

import functools
import json
import re
import secrets
import string
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar, cast

from .errors import AlreadyExists, InvalidArgument, NotFound, PermissionDenied
from .iam import Decision, DecisionCache, Policy, decision_key, evaluate

if TYPE_CHECKING:
    from .archive import Archive

USER_PREFIX = b"iam/user/"
KEY_PREFIX = b"iam/key/"
POLICY_PREFIX = b"iam/policy/"
GENERATION_KEY = b"iam/generation"
P = ParamSpec("P")
R = TypeVar("R")
_NAME = re.compile(r"^[A-Za-z0-9+=,.@_-]{1,64}$")


def _check_name(kind: str, name: str) -> bytes:
    if not _NAME.match(name):
        raise InvalidArgument(f"invalid {kind} name {name!r} (1-64 of A-Z a-z 0-9 +=,.@_-)")
    return name.encode()


CLOCK_KEYS = ("aws:currenttime", "aws:epochtime")


def _add_clock(ctx: dict[str, str | Sequence[str]]) -> None:
    """Time conditions need the time: a request that does not bring its own (tests and
    replays do) is evaluated at the current second. Without this a ``DateGreaterThan``
    Deny would find no key and never apply — a conditional Deny failing open."""
    given = {k.lower() for k in ctx}
    now = int(time.time())
    if "aws:currenttime" not in given:
        ctx["aws:CurrentTime"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
    if "aws:epochtime" not in given:
        ctx["aws:EpochTime"] = str(now)


def _prefix_end(prefix: bytes) -> bytes:
    return prefix[:-1] + bytes((prefix[-1] + 1,))


@dataclass(frozen=True)
class User:
    name: str
    created_ns: int
    policies: tuple[str, ...]
    access_keys: tuple[str, ...]


@dataclass(frozen=True)
class AccessKey:
    key_id: str
    user: str
    secret: str
    created_ns: int
    active: bool


def _locked(method: Callable[Concatenate[IamStore, P], R]) -> Callable[Concatenate[IamStore, P], R]:
    """Every public method runs under the archive's lock, so the mount daemon, a server or
    any embedding program may change policies while other threads use the archive."""
    @functools.wraps(method)
    def wrapper(self: IamStore, *args: P.args, **kwargs: P.kwargs) -> R:
        with self.archive._lock:
            return method(self, *args, **kwargs)
    return cast("Callable[Concatenate[IamStore, P], R]", wrapper)


class IamStore:
    """The archive's IAM records and the decision cache (thread-safe)."""

    def __init__(self, archive: Archive) -> None:
        self.archive = archive
        self._cache = DecisionCache()
        self._policies: dict[str, Policy] = {}
        self._clock_policies: tuple[int, bool] | None = None  # (generation, reads the clock)

    @property
    def _tree(self) -> Any:
        return self.archive._system

    # ---- generation -------------------------------------------------------------------------

    @property
    def generation(self) -> int:
        raw = self._tree.get(GENERATION_KEY)
        return int.from_bytes(raw, "little") if raw else 0

    def _changed(self) -> None:
        self.archive._check_writable()
        self._tree.put(GENERATION_KEY, (self.generation + 1).to_bytes(8, "little"))
        self._policies.clear()
        self.archive._after_change()

    def _get_json(self, key: bytes) -> dict[str, Any] | None:
        raw = self._tree.get(key)
        return None if raw is None else dict(json.loads(raw))

    def _put_json(self, key: bytes, value: Mapping[str, Any]) -> None:
        self._tree.put(key, json.dumps(value, sort_keys=True).encode())

    # ---- users and keys ---------------------------------------------------------------------

    @_locked
    def add_user(self, name: str) -> User:
        key = USER_PREFIX + _check_name("user", name)
        if name in (".", ".."):  # ${aws:username} never stands for these (a path segment)
            raise InvalidArgument(f"invalid user name {name!r}: not usable in a path")
        if self._tree.get(key) is not None:
            raise AlreadyExists(f"user {name!r} exists")
        self.archive._check_writable()
        self._put_json(key, {"name": name, "created": time.time_ns(), "policies": [],
                             "keys": []})
        self._changed()
        return self.get_user(name)

    @_locked
    def get_user(self, name: str) -> User:
        data = self._get_json(USER_PREFIX + _check_name("user", name))
        if data is None:
            raise NotFound(f"no user named {name!r}")
        return User(data["name"], data["created"], tuple(data["policies"]), tuple(data["keys"]))

    @_locked
    def list_users(self) -> list[User]:
        return [self.get_user(k[len(USER_PREFIX):].decode())
                for k, _ in self._tree.items(USER_PREFIX, _prefix_end(USER_PREFIX))]

    @_locked
    def delete_user(self, name: str) -> None:
        user = self.get_user(name)
        for key_id in user.access_keys:
            self._tree.delete(KEY_PREFIX + key_id.encode())
        self._tree.delete(USER_PREFIX + name.encode())
        self._changed()

    @_locked
    def create_access_key(self, user: str) -> AccessKey:
        """A new access key id and secret (the secret is shown once by the CLI)."""
        data = self._get_json(USER_PREFIX + _check_name("user", user))
        if data is None:
            raise NotFound(f"no user named {user!r}")
        alphabet = string.ascii_uppercase + string.digits
        key_id = "CART" + "".join(secrets.choice(alphabet) for _ in range(16))
        secret = secrets.token_urlsafe(30)[:40]
        now = time.time_ns()
        self._put_json(KEY_PREFIX + key_id.encode(), {"user": user, "secret": secret,
                                                      "created": now, "status": "Active"})
        data["keys"] = [*data["keys"], key_id]
        self._put_json(USER_PREFIX + user.encode(), data)
        self._changed()
        return AccessKey(key_id, user, secret, now, True)

    @_locked
    def access_key(self, key_id: str) -> AccessKey:
        """Look up a key (for request signatures); NotFound if unknown."""
        data = self._get_json(KEY_PREFIX + key_id.encode())
        if data is None:
            raise NotFound("unknown access key")
        return AccessKey(key_id, data["user"], data["secret"], data["created"],
                         data["status"] == "Active")

    @_locked
    def delete_access_key(self, key_id: str) -> None:
        key = self.access_key(key_id)
        data = self._get_json(USER_PREFIX + key.user.encode())
        if data is not None:
            data["keys"] = [k for k in data["keys"] if k != key_id]
            self._put_json(USER_PREFIX + key.user.encode(), data)
        self._tree.delete(KEY_PREFIX + key_id.encode())
        self._changed()

    # ---- policies ---------------------------------------------------------------------------

    @_locked
    def put_policy(self, name: str, document: str | bytes) -> Policy:
        """Store (create or replace) a policy after validating it."""
        key = POLICY_PREFIX + _check_name("policy", name)
        policy = Policy.from_json(document, name=name)
        self._tree.put(key, policy.to_json().encode())
        self._changed()
        return policy

    @_locked
    def get_policy(self, name: str) -> Policy:
        cached = self._policies.get(name)
        if cached is not None:
            return cached
        raw = self._tree.get(POLICY_PREFIX + _check_name("policy", name))
        if raw is None:
            raise NotFound(f"no policy named {name!r}")
        policy = self._policies[name] = Policy.from_json(raw, name=name)
        return policy

    @_locked
    def list_policies(self) -> list[str]:
        return [k[len(POLICY_PREFIX):].decode()
                for k, _ in self._tree.items(POLICY_PREFIX, _prefix_end(POLICY_PREFIX))]

    @_locked
    def has_policies(self) -> bool:
        return self._tree.first_in(POLICY_PREFIX, _prefix_end(POLICY_PREFIX)) is not None

    @_locked
    def delete_policy(self, name: str) -> None:
        self.get_policy(name)
        holders = [u.name for u in self.list_users() if name in u.policies]
        if holders:
            raise InvalidArgument(f"policy {name!r} is attached to {', '.join(holders)}; "
                                  "detach it first")
        self._tree.delete(POLICY_PREFIX + name.encode())
        self._changed()

    @_locked
    def attach(self, user: str, policy: str) -> None:
        self.get_policy(policy)
        data = self._get_json(USER_PREFIX + _check_name("user", user))
        if data is None:
            raise NotFound(f"no user named {user!r}")
        if policy not in data["policies"]:
            data["policies"] = [*data["policies"], policy]
            self._put_json(USER_PREFIX + user.encode(), data)
            self._changed()

    @_locked
    def detach(self, user: str, policy: str) -> None:
        data = self._get_json(USER_PREFIX + _check_name("user", user))
        if data is None:
            raise NotFound(f"no user named {user!r}")
        if policy not in data["policies"]:
            raise NotFound(f"policy {policy!r} is not attached to {user!r}")
        data["policies"] = [p for p in data["policies"] if p != policy]
        self._put_json(USER_PREFIX + user.encode(), data)
        self._changed()

    # ---- decisions --------------------------------------------------------------------------

    @_locked
    def decide(self, user: str, action: str, resource: str,
               context: Mapping[str, str | Sequence[str]] | None = None) -> Decision:
        """Allow or deny, and why. No policies in the archive at all = IAM off (allow)."""
        # The principal names itself: a context value for these keys (perhaps copied from a
        # request) must never stand in for another user's ${aws:username}.
        ctx: dict[str, str | Sequence[str]] = {
            k: v for k, v in (context or {}).items()
            if not (isinstance(k, str) and k.lower() in ("aws:username", "cartfs:username"))}
        ctx.update({"aws:username": user, "cartfs:username": user})
        generation = self.generation
        if self._reads_clock(generation):
            _add_clock(ctx)
        key = decision_key(user, action, resource, ctx)
        cached = self._cache.get(key, generation)
        if cached is not None:
            return cached
        if not self.has_policies():
            decision = Decision(True, "Allow", None, None, None, action, resource,
                                "IAM is off: the archive holds no policy")
        else:
            try:
                policies = [self.get_policy(p) for p in self.get_user(user).policies]
            except NotFound:
                policies = []
            decision = evaluate(policies, action, resource, ctx)
        self._cache.put(key, generation, decision)
        return decision

    def _reads_clock(self, generation: int) -> bool:
        """Whether any stored policy names a time key: only then does a decision depend on
        the clock (and only then does the time enter the cache key)."""
        if self._clock_policies is None or self._clock_policies[0] != generation:
            text = " ".join(self.get_policy(name).to_json().lower()
                            for name in self.list_policies())
            reads = any(key in text for key in CLOCK_KEYS)
            self._clock_policies = (generation, reads)
        return self._clock_policies[1]

    @_locked
    def enforce(self, user: str, action: str, resource: str,
                context: Mapping[str, str | Sequence[str]] | None = None) -> Decision:
        decision = self.decide(user, action, resource, context)
        if not decision.allowed:
            raise PermissionDenied(f"{user}: {decision.explain()}")
        return decision
