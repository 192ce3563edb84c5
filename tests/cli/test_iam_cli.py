"""``cartfs iam``: every command as a real process, what it stores in the archive, and every
mistake a user can make answered with one line and no traceback."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from cartfs.core.archive import Archive
from cartfs.core.iam import Policy
from cartfs.core.keys import KdfParams

from .conftest import Result, assert_one_line_error, cartfs_env, run_cartfs

Cli = Callable[..., Result]
PASSPHRASE = "iam cli passphrase"

HOME = {"Version": "2012-10-17", "Statement": [
    {"Sid": "Home", "Effect": "Allow", "Action": ["cartfs:Read", "cartfs:List"],
     "Resource": "arn:cartfs:::/home/${aws:username}/**"},
    {"Sid": "Office", "Effect": "Deny", "Action": "*", "Resource": "*",
     "Condition": {"NotIpAddress": {"aws:SourceIp": "10.0.0.0/8"}}},
]}
READ_ALL = {"Version": "2012-10-17",
            "Statement": {"Effect": "Allow", "Action": "cartfs:Read", "Resource": "*"}}


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    path = tmp_path / "iam.cart"
    with Archive.create(path) as created:
        created.write_file("/home/alice/notes.txt", b"hers", parents=True)
        created.make_symlink("/home/bob", "/home/alice/to-bob")
        created.make_dir("/home/bob")
    return path


@pytest.fixture
def home_file(tmp_path: Path) -> Path:
    path = tmp_path / "home.json"
    path.write_text(json.dumps(HOME))
    return path


def ok(*args: str | Path, input: bytes | None = None) -> Result:
    result = run_cartfs(*args, input=input)
    assert result.code == 0, result
    assert "Traceback" not in result.err
    return result


def test_every_command_as_a_process(archive: Path, home_file: Path) -> None:
    """One realistic session, each step checked in its output and in the archive."""
    assert "added user alice" in ok("iam", "user", "add", archive, "alice").out
    ok("iam", "user", "add", archive, "bob")
    assert ok("iam", "policy", "put", archive, "home", home_file).out.startswith(
        "stored policy home (2 statement(s))")
    stdin = json.dumps(READ_ALL).encode()
    ok("iam", "policy", "put", archive, "read-all", "-", input=stdin)
    assert "replaced policy read-all" in ok("iam", "policy", "put", archive, "read-all", "-",
                                            input=stdin).out
    assert "attached home to alice" in ok("iam", "attach", archive, "alice", "home").out
    ok("iam", "attach", archive, "bob", "read-all")

    users = json.loads(ok("iam", "user", "list", archive, "--json").out)
    assert [(u["name"], u["policies"]) for u in users] == [("alice", ["home"]),
                                                          ("bob", ["read-all"])]
    assert "alice\tpolicies: home" in ok("iam", "user", "list", archive).out
    listed = ok("iam", "policy", "list", archive).out
    assert "home\tattached to: alice" in listed and "read-all\tattached to: bob" in listed
    shown = ok("iam", "policy", "get", archive, "home").out
    assert Policy.from_json(shown, name="home") == Policy.from_json(json.dumps(HOME),
                                                                    name="home")

    created = ok("iam", "key", "create", archive, "alice")
    key_id = created.out.split("AccessKeyId:")[1].split()[0]
    secret = created.out.split("SecretAccessKey:")[1].split()[0]
    assert "shown only once" in created.err
    keys = json.loads(ok("iam", "key", "create", archive, "alice", "--json").out)
    assert keys["UserName"] == "alice" and keys["AccessKeyId"] != key_id
    key_list = ok("iam", "key", "list", archive, "alice").out
    assert key_id in key_list and secret not in key_list and "Active" in key_list

    show = ok("iam", "show", archive, "alice").out
    assert "policies:  home" in show and key_id in show and secret not in show
    record = json.loads(ok("iam", "show", archive, "alice", "--json").out)
    assert record["policies"] == ["home"] and len(record["access_keys"]) == 2

    assert "deleted access key" in ok("iam", "key", "delete", archive, key_id).out
    assert "detached home from alice" in ok("iam", "detach", archive, "alice", "home").out
    assert "deleted policy home" in ok("iam", "policy", "delete", archive, "home").out
    assert "and 1 access key(s)" in ok("iam", "user", "delete", archive, "alice").out

    with Archive.open(archive, readonly=True) as opened:  # all of it is in the archive
        assert [u.name for u in opened.iam.list_users()] == ["bob"]
        assert opened.iam.list_policies() == ["read-all"]
        assert opened.iam.get_user("bob").policies == ("read-all",)


def test_iam_test_explains_and_exits_0_1_2(archive: Path, home_file: Path) -> None:
    ok("iam", "user", "add", archive, "alice")
    ok("iam", "policy", "put", archive, "home", home_file)
    ok("iam", "attach", archive, "alice", "home")
    office = ["--context", "aws:SourceIp=10.1.2.3"]

    allowed = run_cartfs("iam", "test", archive, "alice", "read", "/home/alice/notes.txt",
                         *office)
    assert allowed.code == 0, allowed
    assert allowed.out.startswith("ALLOW")
    assert "by statement 0 (Sid 'Home') of policy 'home'" in allowed.out

    outside = run_cartfs("iam", "test", archive, "alice", "cartfs:Read",
                         "/home/alice/notes.txt", "--context", "aws:SourceIp=8.8.8.8")
    assert outside.code == 1 and "explicitly by statement 1 (Sid 'Office')" in outside.out

    closed = run_cartfs("iam", "test", archive, "alice", "read", "/home/alice/notes.txt",
                        "--context", "aws:SourceIp=bogus")
    assert closed.code == 1 and "could not be evaluated" in closed.out

    via_link = run_cartfs("iam", "test", archive, "alice", "list", "/home/alice/to-bob",
                          *office)
    assert via_link.code == 1, via_link
    assert "resolves to /home/bob" in via_link.out and "arn:cartfs:::/home/bob" in via_link.out

    dots = run_cartfs("iam", "test", archive, "alice", "read", "/home/alice/../bob/x", *office)
    assert dots.code == 1 and "arn:cartfs:::/home/bob/x" in dots.out

    decision = json.loads(run_cartfs("iam", "test", archive, "ghost", "read", "/x", "--json",
                                     *office).out)
    assert decision["allowed"] is False and decision["effect"] == "ImplicitDeny"
    assert decision["notes"] == ["no user named 'ghost'"]

    s3 = run_cartfs("iam", "test", archive, "alice", "s3:GetObject",
                    "arn:aws:s3:::bucket/key", *office)
    assert s3.code == 1 and "s3:GetObject on arn:aws:s3:::bucket/key" in s3.out

    for bad in (["rread", "/x"], ["read", "/x", "--context", "novalue"],
                ["read", "arn:cartfs:::relative"], ["cartfs:Fly", "/x"]):
        result = run_cartfs("iam", "test", archive, "alice", *bad)
        assert_one_line_error(result)
        assert result.code == 2, result


def test_iam_off_says_so(archive: Path) -> None:
    ok("iam", "user", "add", archive, "alice")
    result = run_cartfs("iam", "test", archive, "alice", "delete", "/home")
    assert result.code == 0 and "IAM is off" in result.out
    assert "IAM is off" in ok("iam", "show", archive, "alice").out


@pytest.mark.parametrize(("document", "needle"), [
    ("{broken", "not valid JSON"),
    (json.dumps({"Statement": []}), "Version: missing"),
    (json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "cartfs:Raed", "Resource": "*"}]}),
     "Statement[0].Action[0]"),
    (json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "*", "Resource": "*"},
        {"Effect": "Allow", "Action": "*", "Resource": "*",
         "Condition": {"IpAddress": {"aws:SourceIp": "10.0.0.0/33"}}}]}),
     "Statement[1].Condition"),
    (json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Alow", "Action": "*", "Resource": "*"}]}), "Statement[0].Effect"),
    (json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "*", "Resource": "/home/alice"}]}),
     "Statement[0].Resource[0]"),
])
def test_invalid_policy_names_the_bad_field(cli: Cli, archive: Path, tmp_path: Path,
                                            document: str, needle: str) -> None:
    source = tmp_path / "bad.json"
    source.write_text(document)
    result = cli("iam", "policy", "put", archive, "bad", source)
    assert_one_line_error(result, "policy bad", needle)
    with Archive.open(archive, readonly=True) as opened:
        assert opened.iam.list_policies() == []


def test_user_mistakes_are_one_line(archive: Path, home_file: Path, tmp_path: Path) -> None:
    ok("iam", "user", "add", archive, "alice")
    ok("iam", "policy", "put", archive, "home", home_file)
    ok("iam", "attach", archive, "alice", "home")
    binary = tmp_path / "binary.json"
    binary.write_bytes(b"\xff\xfe\x00")
    not_archive = tmp_path / "photo.png"
    not_archive.write_bytes(b"\x89PNG\r\n" + bytes(5000))
    mistakes = [
        (["user", "add", archive, "alice"], "exists"),
        (["user", "add", archive, "al/ice"], "invalid user name"),
        (["user", "delete", archive, "ghost"], "no user named 'ghost'"),
        (["key", "create", archive, "ghost"], "no user named 'ghost'"),
        (["key", "delete", archive, "CARTNOSUCHKEY0000000"], "unknown access key"),
        (["key", "list", archive, "ghost"], "no user named"),
        (["policy", "get", archive, "ghost"], "no policy named 'ghost'"),
        (["policy", "delete", archive, "home"], "detach it first"),
        (["policy", "put", archive, "x", tmp_path / "missing.json"], "missing.json"),
        (["policy", "put", archive, "x", binary], "not UTF-8"),
        (["attach", archive, "alice", "ghost"], "no policy named 'ghost'"),
        (["attach", archive, "ghost", "home"], "no user named 'ghost'"),
        (["detach", archive, "alice", "read-all"], "not attached"),
        (["show", archive, "ghost"], "no user named"),
        (["user", "list", tmp_path / "nope.cart"], "nope.cart"),
        (["user", "list", not_archive], "not a Cartridge archive"),
    ]
    for args, needle in mistakes:
        assert_one_line_error(run_cartfs("iam", *args), needle)


def test_usage_mistakes_show_usage_not_tracebacks(archive: Path) -> None:
    for args in (["iam"], ["iam", "user"], ["iam", "user", "add", archive],
                 ["iam", "frobnicate"], ["iam", "test", archive, "alice"]):
        result = run_cartfs(*args)
        assert result.code == 2, (args, result)
        assert "Traceback" not in result.err and "usage:" in result.err


def test_encrypted_archive_takes_the_passphrase_three_ways(tmp_path: Path,
                                                           home_file: Path) -> None:
    path = tmp_path / "sealed.cart"
    Archive.create(path, passphrase=PASSPHRASE, kdf=KdfParams.cheap()).close()
    key_file = tmp_path / "key"
    key_file.write_text(PASSPHRASE + "\n")
    ok("iam", "user", "add", path, "alice", "--key-file", key_file)
    env = cartfs_env(CARTFS_PASSPHRASE=PASSPHRASE)
    stored = run_cartfs("iam", "policy", "put", path, "home", home_file, env=env)
    assert stored.code == 0, stored
    missing = run_cartfs("iam", "user", "list", path)  # no tty, no key: a clear refusal
    assert_one_line_error(missing, "--key-file", "CARTFS_PASSPHRASE")
    wrong = run_cartfs("iam", "user", "list", path, env=cartfs_env(CARTFS_PASSPHRASE="no"))
    assert_one_line_error(wrong, "wrong passphrase")
    with Archive.open(path, passphrase=PASSPHRASE, readonly=True) as opened:
        assert opened.iam.list_policies() == ["home"]
        assert [u.name for u in opened.iam.list_users()] == ["alice"]
