"""``cartfs iam``: users, access keys and policies stored inside an archive.

The records live in the archive (see :mod:`cartfs.core.iamstore`), so every adapter — the
mount, the S3 server, scripts — enforces the same rules. These commands only edit and explain
them::

    cartfs iam user add ARCHIVE alice
    cartfs iam policy put ARCHIVE home home.json        # validated; errors name the field
    cartfs iam attach ARCHIVE alice home
    cartfs iam test ARCHIVE alice read /home/alice/notes.txt --context aws:SourceIp=10.0.0.7

``iam test`` follows grep's convention so scripts can branch on it: exit 0 when the request
is allowed, 1 when it is denied, 2 when the question itself is wrong (unknown action, bad
context, unreadable archive). Commands that only look (list, get, show, test) open the
archive read-only; those that change it take the writer's lock and commit once.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from cartfs.cli.common import UsageError, add_archive_argument, open_archive
from cartfs.core.archive import Archive
from cartfs.core.errors import CartError, InvalidArgument, NotFound
from cartfs.core.iam import ARCHIVE_ACTIONS, Decision, archive_arn, canonical_archive_path
from cartfs.core.iamstore import User

ORDER = 60
Handler = Callable[[argparse.Namespace], int]

#: Short action names accepted by ``iam test`` (``read`` → ``cartfs:Read``).
SHORT_ACTIONS = {action.split(":", 1)[1].lower(): action for action in ARCHIVE_ACTIONS}


def _when(ns: int) -> str:
    return datetime.datetime.fromtimestamp(ns / 1e9).astimezone().isoformat(timespec="seconds")


def _writing(body: Callable[[Archive, argparse.Namespace], None]) -> Handler:
    """A command that changes the archive: open writable, run, commit on close."""
    def run(args: argparse.Namespace) -> int:
        with open_archive(args) as archive:
            body(archive, args)
        return 0
    run.__doc__ = body.__doc__
    return run


def _reading(body: Callable[[Archive, argparse.Namespace], int | None]) -> Handler:
    """A command that only looks: open read-only (may run beside a mount's readers)."""
    def run(args: argparse.Namespace) -> int:
        with open_archive(args, readonly=True) as archive:
            return body(archive, args) or 0
    run.__doc__ = body.__doc__
    return run


def _print_json(value: object) -> None:
    print(json.dumps(value, indent=2, sort_keys=True))


# ---- users ---------------------------------------------------------------------------------


def _user_add(archive: Archive, args: argparse.Namespace) -> None:
    """Add a user (no policy yet: once any policy exists, a new user may do nothing)."""
    archive.iam.add_user(args.user)
    print(f"added user {args.user}")


def _user_delete(archive: Archive, args: argparse.Namespace) -> None:
    """Delete a user and all of its access keys."""
    user = archive.iam.get_user(args.user)
    archive.iam.delete_user(args.user)
    keys = f" and {len(user.access_keys)} access key(s)" if user.access_keys else ""
    print(f"deleted user {args.user}{keys}")


def _user_record(user: User) -> dict[str, Any]:
    return {"name": user.name, "created": _when(user.created_ns),
            "policies": list(user.policies), "access_keys": list(user.access_keys)}


def _user_list(archive: Archive, args: argparse.Namespace) -> None:
    """Every user with its policies."""
    users = archive.iam.list_users()
    if args.json:
        _print_json([_user_record(u) for u in users])
        return
    for user in users:
        policies = ", ".join(user.policies) or "-"
        print(f"{user.name}\tpolicies: {policies}\tkeys: {len(user.access_keys)}")


def _show(archive: Archive, args: argparse.Namespace) -> None:
    """One user: created, attached policies, access keys (never their secrets)."""
    user = archive.iam.get_user(args.user)
    record = _user_record(user)
    record["access_keys"] = [_key_record(archive, key_id) for key_id in user.access_keys]
    record["iam_enabled"] = archive.iam.has_policies()
    if args.json:
        _print_json(record)
        return
    print(f"user:      {user.name}")
    print(f"created:   {record['created']}")
    print(f"policies:  {', '.join(user.policies) or 'none'}")
    if not record["iam_enabled"]:
        print("note:      the archive holds no policy, so IAM is off (everything is allowed)")
    elif not user.policies:
        print("note:      no policy attached: this user may do nothing")
    keys = record["access_keys"]
    print(f"keys:      {len(keys) or 'none'}")
    for key in keys:
        print(f"  {key['id']}  {key['status']}  created {key['created']}")


# ---- access keys ---------------------------------------------------------------------------


def _key_record(archive: Archive, key_id: str) -> dict[str, str]:
    key = archive.iam.access_key(key_id)
    return {"id": key.key_id, "user": key.user, "created": _when(key.created_ns),
            "status": "Active" if key.active else "Inactive"}


def _key_create(archive: Archive, args: argparse.Namespace) -> None:
    """A new access key for USER; the secret is printed now and never again."""
    key = archive.iam.create_access_key(args.user)
    if args.json:
        _print_json({"AccessKeyId": key.key_id, "SecretAccessKey": key.secret,
                     "UserName": key.user})
    else:
        print(f"AccessKeyId:     {key.key_id}")
        print(f"SecretAccessKey: {key.secret}")
    print("cartfs: note: the secret is shown only once; store it now", file=sys.stderr)


def _key_delete(archive: Archive, args: argparse.Namespace) -> None:
    """Delete an access key (requests signed with it fail from now on)."""
    key = archive.iam.access_key(args.key_id)
    archive.iam.delete_access_key(args.key_id)
    print(f"deleted access key {args.key_id} of user {key.user}")


def _key_list(archive: Archive, args: argparse.Namespace) -> None:
    """Access keys of USER: id, status, creation time."""
    user = archive.iam.get_user(args.user)
    records = [_key_record(archive, key_id) for key_id in user.access_keys]
    if args.json:
        _print_json(records)
        return
    for record in records:
        print(f"{record['id']}\t{record['status']}\t{record['created']}")


# ---- policies ------------------------------------------------------------------------------


def _read_document(source: str) -> str:
    if source == "-":
        return sys.stdin.read()
    try:
        with open(source, encoding="utf-8") as fh:
            return fh.read()
    except OSError as exc:
        raise UsageError(f"{source}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise UsageError(f"{source}: not UTF-8 text (a policy is a JSON document)") from None


def _policy_put(archive: Archive, args: argparse.Namespace) -> None:
    """Store (create or replace) a policy after validating it; errors name the field."""
    document = _read_document(args.file)
    replacing = args.name in archive.iam.list_policies()
    try:
        policy = archive.iam.put_policy(args.name, document)
    except InvalidArgument as exc:
        where = "stdin" if args.file == "-" else args.file
        raise InvalidArgument(f"policy {args.name} ({where}): {exc}") from None
    verb = "replaced" if replacing else "stored"
    print(f"{verb} policy {args.name} ({len(policy.statements)} statement(s))")


def _policy_get(archive: Archive, args: argparse.Namespace) -> None:
    """Print a policy as canonical JSON (what ``policy put`` accepts back)."""
    print(archive.iam.get_policy(args.name).to_json(indent=2))


def _policy_delete(archive: Archive, args: argparse.Namespace) -> None:
    """Delete a policy (refused while it is attached to a user)."""
    archive.iam.delete_policy(args.name)
    print(f"deleted policy {args.name}")


def _policy_list(archive: Archive, args: argparse.Namespace) -> None:
    """Every policy, with the users it is attached to."""
    holders: dict[str, list[str]] = {}
    for user in archive.iam.list_users():
        for name in user.policies:
            holders.setdefault(name, []).append(user.name)
    names = archive.iam.list_policies()
    if args.json:
        _print_json([{"name": n, "users": holders.get(n, [])} for n in names])
        return
    for name in names:
        print(f"{name}\tattached to: {', '.join(holders.get(name, [])) or '-'}")


def _attach(archive: Archive, args: argparse.Namespace) -> None:
    """Attach POLICY to USER (takes effect at once: cached decisions are dropped)."""
    archive.iam.attach(args.user, args.policy)
    print(f"attached {args.policy} to {args.user}")


def _detach(archive: Archive, args: argparse.Namespace) -> None:
    """Detach POLICY from USER."""
    archive.iam.detach(args.user, args.policy)
    print(f"detached {args.policy} from {args.user}")


# ---- test ----------------------------------------------------------------------------------


def parse_context(pairs: Sequence[str]) -> dict[str, str | list[str]]:
    """``k=v`` pairs into a request context; a key given twice becomes a list of values."""
    context: dict[str, list[str]] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--context {pair!r}: expected KEY=VALUE, e.g. aws:SourceIp=10.0.0.7")
        context.setdefault(key.strip(), []).append(value)
    return {k: v[0] if len(v) == 1 else v for k, v in context.items()}


def request_action(text: str) -> str:
    """``read`` → ``cartfs:Read``; ``cartfs:Read`` and ``s3:GetObject`` pass through."""
    if ":" in text:
        return text
    full = SHORT_ACTIONS.get(text.lower())
    if full is None:
        known = ", ".join(sorted(SHORT_ACTIONS))
        raise UsageError(f"unknown action {text!r} (one of {known}, or cartfs:Name / s3:Name)")
    return full


def request_resource(archive: Archive, path: str) -> tuple[str, str | None]:
    """The resource the archive would check for ``path`` and, when symlinks or ``..`` lead
    elsewhere, a note saying so (the guard judges the real path, not the spelling)."""
    if path.startswith("arn:"):
        return path, None
    try:
        real = archive.realpath(path, missing_ok=True)
    except NotFound:
        return archive_arn(path), None  # a missing parent: nothing to resolve through
    note = None
    if real != canonical_archive_path(path):
        note = f"{path} resolves to {real}; access is checked on {real}"
    return archive_arn(real), note


def _test(archive: Archive, args: argparse.Namespace) -> int:
    """Decide USER ACTION PATH and explain which statement decided (exit 0/1/2)."""
    try:
        action = request_action(args.action)
        context = parse_context(args.context)
        resource, note = request_resource(archive, args.path)
        decision = archive.iam.decide(args.user, action, resource, context)
        known = args.user in {u.name for u in archive.iam.list_users()}
    except UsageError:
        raise
    except CartError as exc:
        raise UsageError(str(exc)) from None
    _print_decision(decision, note, None if known else f"no user named {args.user!r}", args)
    return 0 if decision.allowed else 1


def _print_decision(decision: Decision, note: str | None, warning: str | None,
                    args: argparse.Namespace) -> None:
    if args.json:
        _print_json({"allowed": decision.allowed, "effect": decision.effect,
                     "policy": decision.policy_name, "statement": decision.statement_index,
                     "sid": decision.sid, "action": decision.action,
                     "resource": decision.resource, "explain": decision.explain(),
                     "notes": [n for n in (note, warning) if n]})
        return
    print(f"{'ALLOW' if decision.allowed else 'DENY'}  ({decision.effect})")
    print(decision.explain())
    for text in (note, warning):
        if text:
            print(f"note: {text}")


# ---- registration --------------------------------------------------------------------------


def _command(group: argparse._SubParsersAction[argparse.ArgumentParser], name: str,
             handler: Handler, help_text: str, *names: str,
             json_option: bool = False) -> argparse.ArgumentParser:
    p = group.add_parser(name, help=help_text, description=help_text)
    add_archive_argument(p)
    for arg in names:
        p.add_argument(arg.lower().replace("-", "_"), metavar=arg)
    if json_option:
        p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=handler)
    return p


def _group(parent: argparse._SubParsersAction[argparse.ArgumentParser], name: str,
           help_text: str) -> argparse._SubParsersAction[argparse.ArgumentParser]:
    p = parent.add_parser(name, help=help_text, description=help_text)
    p.set_defaults(func=_usage(p))
    return p.add_subparsers(metavar="COMMAND")


def _usage(parser: argparse.ArgumentParser) -> Handler:
    def show(args: argparse.Namespace) -> int:
        parser.print_help(sys.stderr)
        return 2
    return show


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    iam = _group(sub, "iam", "users, access keys and access policies stored in the archive")

    user = _group(iam, "user", "add, delete and list users")
    _command(user, "add", _writing(_user_add), "add a user", "USER")
    _command(user, "delete", _writing(_user_delete), "delete a user and its access keys",
             "USER")
    _command(user, "list", _reading(_user_list), "list users", json_option=True)

    key = _group(iam, "key", "create, delete and list access keys (for the S3 server)")
    _command(key, "create", _writing(_key_create),
             "create an access key for USER (the secret is printed once)", "USER",
             json_option=True)
    _command(key, "delete", _writing(_key_delete), "delete an access key", "KEY_ID")
    _command(key, "list", _reading(_key_list), "list the access keys of USER", "USER",
             json_option=True)

    policy = _group(iam, "policy", "store, show, delete and list policies")
    p = _command(policy, "put", _writing(_policy_put),
                 "store a JSON policy from FILE ('-' = stdin), after validating it", "NAME")
    p.add_argument("file", metavar="FILE", help="the policy document, or - for stdin")
    _command(policy, "get", _reading(_policy_get), "print a policy as JSON", "NAME")
    _command(policy, "delete", _writing(_policy_delete), "delete a policy (detached)",
             "NAME")
    _command(policy, "list", _reading(_policy_list), "list policies", json_option=True)

    _command(iam, "attach", _writing(_attach), "attach a policy to a user", "USER", "POLICY")
    _command(iam, "detach", _writing(_detach), "detach a policy from a user", "USER",
             "POLICY")
    _command(iam, "show", _reading(_show), "a user's policies and access keys", "USER",
             json_option=True)
    p = _command(iam, "test", _reading(_test),
                 "would USER be allowed ACTION on PATH? Explains the deciding statement; "
                 "exit 0 allowed, 1 denied, 2 error", "USER", "ACTION", json_option=True)
    p.add_argument("path", metavar="PATH",
                   help="a path inside the archive, or a resource ARN (arn:aws:s3:::b/k)")
    p.add_argument("--context", action="append", default=[], metavar="KEY=VALUE",
                   help="a request context value (repeatable), e.g. aws:SourceIp=10.0.0.7")
    p.epilog = f"ACTION: {', '.join(sorted(SHORT_ACTIONS))}, or cartfs:Name, or s3:Name."
