"""IAM records stored in the archive: users, access keys, policies, attachments, decisions.

The pure engine has its own tests (test_iam_*.py); these are about the store around it — and
about the seed's IAM traps that live there: a cached decision that survived a policy change,
a policy kept in memory instead of in the archive, and IAM that was either always on or never.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from cartfs.core.archive import Archive
from cartfs.core.device import MemoryDevice
from cartfs.core.errors import (
    AlreadyExists,
    CartError,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ReadOnly,
)
from cartfs.core.iam import archive_arn
from cartfs.core.keys import KdfParams

READ = "cartfs:Read"
HOME = archive_arn("/home/alice/notes.txt")


def policy(*statements: dict[str, object]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def allow(actions: str | list[str], resource: str | list[str], **extra: object
          ) -> dict[str, object]:
    return {"Effect": "Allow", "Action": actions, "Resource": resource, **extra}


def deny(actions: str | list[str], resource: str | list[str], **extra: object
         ) -> dict[str, object]:
    return {"Effect": "Deny", "Action": actions, "Resource": resource, **extra}


HOME_POLICY = policy(allow(["cartfs:Read", "cartfs:List"],
                           "arn:cartfs:::/home/${aws:username}/**", Sid="Home"))
EVERYTHING = policy(allow("*", "*", Sid="All"))


@pytest.fixture
def archive() -> Iterator[Archive]:
    with Archive.create_on(MemoryDevice()) as opened:
        yield opened


def allowed(archive: Archive, user: str, action: str = READ, resource: str = HOME,
            **context: str) -> bool:
    return archive.iam.decide(user, action, resource, context).allowed


# ---- records ---------------------------------------------------------------------------------


def test_users_and_keys(archive: Archive) -> None:
    iam = archive.iam
    alice = iam.add_user("alice")
    assert (alice.name, alice.policies, alice.access_keys) == ("alice", (), ())
    with pytest.raises(AlreadyExists):
        iam.add_user("alice")
    key = iam.create_access_key("alice")
    assert re.fullmatch(r"CART[A-Z0-9]{16}", key.key_id) and len(key.secret) >= 30
    assert iam.access_key(key.key_id) == key
    second = iam.create_access_key("alice")
    assert second.key_id != key.key_id and second.secret != key.secret
    assert iam.get_user("alice").access_keys == (key.key_id, second.key_id)
    iam.delete_access_key(key.key_id)
    assert iam.get_user("alice").access_keys == (second.key_id,)
    with pytest.raises(NotFound):
        iam.access_key(key.key_id)
    iam.add_user("bob")
    assert [u.name for u in iam.list_users()] == ["alice", "bob"]
    iam.delete_user("alice")
    with pytest.raises(NotFound):  # a deleted user's keys go with it
        iam.access_key(second.key_id)
    assert [u.name for u in iam.list_users()] == ["bob"]


@pytest.mark.parametrize("name", ["", "a" * 65, "al ice", "alice/..", "al*", "é",
                                  "a\x00b", "${aws:username}"])
def test_bad_user_and_policy_names_are_refused(archive: Archive, name: str) -> None:
    with pytest.raises(InvalidArgument, match="invalid user name"):
        archive.iam.add_user(name)
    with pytest.raises(InvalidArgument, match="invalid policy name"):
        archive.iam.put_policy(name, EVERYTHING)


@pytest.mark.parametrize("name", [".", ".."])
def test_user_names_that_cannot_be_a_path_segment_are_refused(archive: Archive,
                                                              name: str) -> None:
    """Regression: '..' was a valid user name, yet ${aws:username} never stands for it, so
    such a user's home policy silently matched nothing."""
    with pytest.raises(InvalidArgument, match="not usable in a path"):
        archive.iam.add_user(name)


@pytest.mark.parametrize(("call", "error"), [
    (lambda iam: iam.get_user("ghost"), NotFound),
    (lambda iam: iam.delete_user("ghost"), NotFound),
    (lambda iam: iam.create_access_key("ghost"), NotFound),
    (lambda iam: iam.delete_access_key("CARTNOSUCHKEY0000000"), NotFound),
    (lambda iam: iam.get_policy("ghost"), NotFound),
    (lambda iam: iam.delete_policy("ghost"), NotFound),
    (lambda iam: iam.attach("alice", "ghost"), NotFound),
    (lambda iam: iam.attach("ghost", "home"), NotFound),
    (lambda iam: iam.detach("alice", "home"), NotFound),  # not attached
    (lambda iam: iam.detach("ghost", "home"), NotFound),
])
def test_mistakes_are_clear_errors(archive: Archive, call: object, error: type) -> None:
    archive.iam.add_user("alice")
    archive.iam.put_policy("home", HOME_POLICY)
    with pytest.raises(error):
        call(archive.iam)  # type: ignore[operator]


@pytest.mark.parametrize(("document", "where"), [
    ("{not json", "not valid JSON"),
    (json.dumps({"Statement": []}), "Version"),
    (policy({"Effect": "Permit", "Action": "*", "Resource": "*"}), "Statement[0].Effect"),
    (policy(allow("cartfs:Raed", "*")), "Statement[0].Action[0]"),
    (policy(allow("*", "*"), allow("*", "arn:cartfs:::/a/../b")), "Statement[1].Resource[0]"),
    (policy(allow("*", "*", Condition={"StringLikee": {"aws:username": "a"}})),
     "Statement[0].Condition"),
])
def test_invalid_policy_is_refused_and_nothing_stored(archive: Archive, document: str,
                                                      where: str) -> None:
    generation = archive.iam.generation
    with pytest.raises(InvalidArgument) as info:
        archive.iam.put_policy("bad", document)
    assert where in str(info.value)
    assert archive.iam.list_policies() == [] and archive.iam.generation == generation


def test_policy_round_trip_replace_and_delete(archive: Archive) -> None:
    iam = archive.iam
    stored = iam.put_policy("home", HOME_POLICY)
    assert iam.get_policy("home") == stored and iam.list_policies() == ["home"]
    iam.add_user("alice")
    iam.attach("alice", "home")
    iam.attach("alice", "home")  # attaching twice is a no-op
    assert iam.get_user("alice").policies == ("home",)
    with pytest.raises(InvalidArgument, match="attached to alice"):
        iam.delete_policy("home")
    replaced = iam.put_policy("home", EVERYTHING)
    assert iam.get_policy("home") == replaced != stored
    iam.detach("alice", "home")
    iam.delete_policy("home")
    assert iam.list_policies() == []


def test_every_change_bumps_the_generation(archive: Archive) -> None:
    iam = archive.iam
    steps = [
        lambda: iam.add_user("alice"),
        lambda: iam.put_policy("home", HOME_POLICY),
        lambda: iam.attach("alice", "home"),
        lambda: iam.create_access_key("alice"),
        lambda: iam.delete_access_key(iam.get_user("alice").access_keys[0]),
        lambda: iam.put_policy("home", EVERYTHING),
        lambda: iam.detach("alice", "home"),
        lambda: iam.delete_policy("home"),
        lambda: iam.delete_user("alice"),
    ]
    seen = [iam.generation]
    for step in steps:
        step()
        seen.append(iam.generation)
    assert seen == sorted(set(seen)), seen


def test_read_only_archive_refuses_changes_but_decides(tmp_path: Path) -> None:
    path = tmp_path / "a.cart"
    with Archive.create(path) as archive:
        archive.iam.add_user("alice")
        archive.iam.put_policy("home", HOME_POLICY)
        archive.iam.attach("alice", "home")
    with Archive.open(path, readonly=True) as archive:
        for change in (lambda: archive.iam.add_user("bob"),
                       lambda: archive.iam.put_policy("x", EVERYTHING),
                       lambda: archive.iam.detach("alice", "home"),
                       lambda: archive.iam.delete_user("alice"),
                       lambda: archive.iam.create_access_key("alice")):
            with pytest.raises(ReadOnly):
                change()
        assert allowed(archive, "alice")
        assert not allowed(archive, "alice", resource=archive_arn("/home/bob/x"))


# ---- on and off, persistence -----------------------------------------------------------------


def test_iam_is_off_without_policies_and_on_with_any(archive: Archive) -> None:
    """No policy at all: everything is allowed (an archive without IAM). The first policy —
    even one attached to nobody — turns on default deny for everyone."""
    assert allowed(archive, "anyone", "cartfs:Admin", archive_arn("/"))
    decision = archive.iam.decide("anyone", READ, HOME)
    assert decision.effect == "Allow" and "IAM is off" in decision.explain()
    archive.iam.put_policy("unused", EVERYTHING)
    assert not allowed(archive, "anyone", "cartfs:Admin", archive_arn("/"))
    assert archive.iam.decide("anyone", READ, HOME).effect == "ImplicitDeny"
    archive.iam.delete_policy("unused")
    assert allowed(archive, "anyone")


@pytest.mark.parametrize("encrypted", [False, True])
def test_policies_persist_in_the_archive(tmp_path: Path, encrypted: bool) -> None:
    """Stored in the archive, not in memory: a new process sees the same decisions."""
    path = tmp_path / "a.cart"
    secret = {"passphrase": "pw", "kdf": KdfParams.cheap()} if encrypted else {}
    with Archive.create(path, **secret) as archive:  # type: ignore[arg-type]
        archive.iam.add_user("alice")
        archive.iam.add_user("frank")
        archive.iam.put_policy("home", HOME_POLICY)
        archive.iam.attach("alice", "home")
        key = archive.iam.create_access_key("alice")
        generation = archive.iam.generation
    with Archive.open(path, passphrase="pw" if encrypted else None) as archive:
        assert archive.iam.generation == generation
        assert archive.iam.access_key(key.key_id) == key
        assert archive.iam.get_user("alice").policies == ("home",)
        assert allowed(archive, "alice")
        assert not allowed(archive, "frank")
        archive.iam.detach("alice", "home")
    with Archive.open(path, passphrase="pw" if encrypted else None, readonly=True) as archive:
        assert not allowed(archive, "alice")


def test_restoring_a_snapshot_does_not_restore_old_permissions(archive: Archive) -> None:
    archive.iam.add_user("alice")
    archive.iam.put_policy("home", HOME_POLICY)
    archive.iam.attach("alice", "home")
    archive.create_snapshot("granted")
    archive.iam.detach("alice", "home")
    archive.restore_snapshot("granted")
    assert archive.iam.get_user("alice").policies == ()
    assert not allowed(archive, "alice")


# ---- the cache never outlives a change --------------------------------------------------------


@pytest.fixture
def alice_at_home(archive: Archive) -> Archive:
    archive.iam.add_user("alice")
    archive.iam.put_policy("home", HOME_POLICY)
    archive.iam.attach("alice", "home")
    for _ in range(3):  # decided, then served from the cache
        assert allowed(archive, "alice")
    return archive


def test_cached_allow_dies_when_the_policy_is_replaced(alice_at_home: Archive) -> None:
    alice_at_home.iam.put_policy("home", policy(allow("cartfs:List", "*")))
    assert not allowed(alice_at_home, "alice")
    alice_at_home.iam.put_policy("home", HOME_POLICY)
    assert allowed(alice_at_home, "alice")


def test_cached_allow_dies_on_detach(alice_at_home: Archive) -> None:
    alice_at_home.iam.detach("alice", "home")
    assert not allowed(alice_at_home, "alice")


def test_cached_allow_dies_with_the_user(alice_at_home: Archive) -> None:
    alice_at_home.iam.delete_user("alice")
    assert not allowed(alice_at_home, "alice")
    alice_at_home.iam.add_user("alice")  # same name, new user: starts with nothing
    assert not allowed(alice_at_home, "alice")


def test_cached_allow_dies_when_a_deny_is_attached(alice_at_home: Archive) -> None:
    alice_at_home.iam.put_policy("lockdown", policy(deny("*", "*", Sid="Lockdown")))
    assert allowed(alice_at_home, "alice")  # stored, not attached yet
    alice_at_home.iam.attach("alice", "lockdown")
    decision = alice_at_home.iam.decide("alice", READ, HOME)
    assert (decision.allowed, decision.effect, decision.sid) == (False, "Deny", "Lockdown")


def test_cached_decision_of_iam_off_dies_with_the_first_policy(archive: Archive) -> None:
    guarded = archive.as_principal("frank")
    archive.write_file("/f.txt", b"x")
    assert guarded.read_file("/f.txt") == b"x"
    archive.iam.put_policy("home", HOME_POLICY)
    with pytest.raises(PermissionDenied):
        guarded.read_file("/f.txt")


def test_cached_deny_dies_on_attach_through_the_guard(archive: Archive) -> None:
    archive.write_file("/home/alice/notes.txt", b"mine", parents=True)
    archive.iam.add_user("alice")
    archive.iam.put_policy("home", HOME_POLICY)
    guarded = archive.as_principal("alice")
    with pytest.raises(PermissionDenied):
        guarded.read_file("/home/alice/notes.txt")
    archive.iam.attach("alice", "home")
    assert guarded.read_file("/home/alice/notes.txt") == b"mine"


# ---- identity comes from the principal, not from the request -------------------------------


@pytest.mark.parametrize("key", ["aws:username", "cartfs:username", "AWS:UserName"])
def test_context_cannot_claim_another_username(alice_at_home: Archive, key: str) -> None:
    """Regression: a context value for aws:username used to override the principal, so
    ${aws:username} in alice's policy could be made to name bob's home."""
    bob = archive_arn("/home/bob/secret.txt")
    assert not alice_at_home.iam.decide("alice", READ, bob, {key: "bob"}).allowed
    assert alice_at_home.iam.decide("alice", READ, HOME, {key: "bob"}).allowed


def test_errors_are_cart_errors(archive: Archive) -> None:
    """Malformed requests are refused as CartErrors (adapters turn them into one line)."""
    archive.iam.put_policy("home", HOME_POLICY)
    for action, resource in (("cartfs:Fly", HOME), (READ, "arn:cartfs:::home//x"),
                             ("s3:Get*", HOME)):
        with pytest.raises(CartError):
            archive.iam.decide("alice", action, resource)
