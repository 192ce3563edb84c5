"""``-o principal=NAME``: every request through the mount checked against the archive's IAM
policies for that principal — real system calls and tools, EACCES for what is refused, the
rest of the archive untouched, and a policy change while mounted taking effect at once."""

from __future__ import annotations

import errno
import json
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cartfs.core.archive import Archive

from .conftest import Embedded, Mounts, run_cli

HOME = {"Version": "2012-10-17", "Statement": [
    {"Sid": "OwnHome", "Effect": "Allow", "Action": "cartfs:*",
     "Resource": "arn:cartfs:::/home/${aws:username}/**"},
    {"Sid": "NeverSecrets", "Effect": "Deny", "Action": "cartfs:*",
     "Resource": "arn:cartfs:::/**/secret/**"},
]}
SHARED_READ = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": ["cartfs:Read", "cartfs:List"],
     "Resource": "arn:cartfs:::/shared/**"},
]}


def denied(fn: Callable[..., object], *args: object) -> None:
    with pytest.raises(OSError) as info:
        fn(*args)
    assert info.value.errno == errno.EACCES, f"{fn.__name__}{args}: {info.value}"


@pytest.fixture
def archive(mounts: Mounts) -> Path:
    path = mounts.archive()
    with Archive.open(path) as a:
        a.write_file("/home/alice/notes.txt", b"hers", parents=True)
        a.write_file("/home/alice/secret/diary", b"even hers, denied", parents=True)
        a.write_file("/home/alice/box/secret/x", b"nested secret", parents=True)
        a.write_file("/home/alice/box2/plain", b"plain", parents=True)
        a.write_file("/home/bob/plans.txt", b"bob's", parents=True)
        a.write_file("/shared/readme", b"for everyone", parents=True)
        a.make_symlink("../bob/plans.txt", "/home/alice/to-bob")
        a.iam.add_user("alice")
        a.iam.put_policy("home", json.dumps(HOME))
        a.iam.attach("alice", "home")
        a.create_snapshot("before")
    return path


def test_alice_in_her_home_and_nowhere_else(mounts: Mounts, archive: Path) -> None:
    mnt = mounts.mount(archive, options=["principal=alice"])
    home = mnt / "home" / "alice"
    # her area: everything works
    assert (home / "notes.txt").read_bytes() == b"hers"
    (home / "new.txt").write_text("made by alice")
    (home / "new.txt").write_text("rewritten")
    with open(home / "new.txt", "a") as fh:
        fh.write(" and appended")
    (home / "dir").mkdir()
    os.rename(home / "new.txt", home / "dir" / "moved.txt")
    os.chmod(home / "dir" / "moved.txt", 0o600)
    os.setxattr(home / "dir" / "moved.txt", "user.tag", b"x")
    assert os.getxattr(home / "dir" / "moved.txt", "user.tag") == b"x"
    os.symlink("moved.txt", home / "dir" / "link")
    assert sorted(os.listdir(home / "dir")) == ["link", "moved.txt"]
    os.rename(home / "box2", home / "box3")  # a directory without secrets moves
    ls = subprocess.run(["ls", "-l", str(home)], capture_output=True, text=True, check=False)
    assert ls.returncode == 0 and "notes.txt" in ls.stdout, ls.stderr
    os.unlink(home / "dir" / "link")

    # elsewhere: EACCES; stat (traversal) is free, contents and listings are not
    bob = mnt / "home" / "bob"
    assert (bob / "plans.txt").stat().st_size == 5
    denied((bob / "plans.txt").read_bytes)
    denied(open, bob / "plans.txt", "r+")
    denied(open, bob / "new", "w")
    denied(os.listdir, bob)
    denied(os.listdir, mnt / "home")
    denied(os.listdir, mnt)
    assert subprocess.run(["ls", str(bob)], capture_output=True, check=False).returncode != 0
    denied(os.unlink, bob / "plans.txt")
    denied(os.mkdir, mnt / "elsewhere")
    denied(os.chmod, bob / "plans.txt", 0o777)
    denied(os.truncate, bob / "plans.txt", 0)
    denied(os.setxattr, bob / "plans.txt", "user.x", b"1")
    denied(os.getxattr, bob / "plans.txt", "user.x")
    denied((home / "to-bob").read_bytes)  # the kernel resolves the link: the real path
    denied(os.link, bob / "plans.txt", home / "stolen")
    denied(os.rename, home / "notes.txt", mnt / "shared" / "notes.txt")  # out of her area
    denied(os.rename, bob / "plans.txt", home / "plans.txt")  # into it
    denied(os.rename, home / "notes.txt", bob / "plans.txt")
    # Deny beats Allow, also for anything beneath a moved directory
    denied((home / "secret" / "diary").read_bytes)
    denied(os.listdir, home / "secret")
    denied(os.rename, home / "box", home / "box-moved")
    denied(os.rmdir, home / "secret")

    # snapshots: Snapshot/List on "/" to make or list them; inside, the same paths
    denied(os.mkdir, mnt / ".snapshots" / "mine")
    denied(os.listdir, mnt / ".snapshots")
    before = mnt / ".snapshots" / "before"
    assert (before / "home" / "alice" / "notes.txt").read_bytes() == b"hers"
    denied((before / "home" / "bob" / "plans.txt").read_bytes)
    denied((before / "home" / "alice" / "secret" / "diary").read_bytes)

    assert (home / "notes.txt").read_bytes() == b"hers"  # nothing refused changed anything
    mounts.unmount()
    with Archive.open(archive, readonly=True) as a:
        assert a.read_file("/home/bob/plans.txt") == b"bob's"
        assert a.read_file("/home/alice/dir/moved.txt") == b"rewritten and appended"
        assert a.exists("/home/alice/box/secret/x") and a.exists("/home/alice/box3/plain")
        assert not a.exists("/shared/notes.txt")

    # without the option nothing is checked
    mnt = mounts.mount(archive)
    assert (mnt / "home" / "bob" / "plans.txt").read_bytes() == b"bob's"
    assert sorted(os.listdir(mnt / "home")) == ["alice", "bob"]
    mounts.unmount()


def test_unknown_principal_is_one_line(mounts: Mounts, archive: Path) -> None:
    proc = run_cli("mount", str(archive), str(mounts.mountpoint()), "-o", "principal=mallory",
                   check=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "mallory" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


@pytest.fixture
def embedded(mounts: Mounts, archive: Path) -> Iterator[Callable[[list[str]], Embedded]]:
    """Start embedded daemons; their pipes are closed whatever happens (the mounts fixture
    then unmounts and waits for them)."""
    started: list[Embedded] = []

    def start(options: list[str]) -> Embedded:
        started.append(Embedded(mounts, archive, options))
        return started[-1]

    yield start
    for daemon in started:
        daemon.close_pipes()


def test_policy_change_while_mounted_takes_effect(
        embedded: Callable[[list[str]], Embedded], archive: Path) -> None:
    daemon = embedded(["principal=alice"])
    readme = daemon.mnt / "shared" / "readme"
    denied(readme.read_bytes)
    denied(os.listdir, daemon.mnt / "shared")
    daemon.command(put_policy=["shared-read", SHARED_READ])
    daemon.command(attach=["alice", "shared-read"])
    assert readme.read_bytes() == b"for everyone"
    assert os.listdir(daemon.mnt / "shared") == ["readme"]
    denied(open, readme, "a")  # Read and List only
    daemon.command(detach=["alice", "home"])
    denied((daemon.mnt / "home" / "alice" / "notes.txt").read_bytes)  # cached, still asked
    daemon.command(attach=["alice", "home"])
    assert (daemon.mnt / "home" / "alice" / "notes.txt").read_bytes() == b"hers"
    daemon.command(detach=["alice", "shared-read"])
    denied(readme.read_bytes)
    log = daemon.stop()
    assert "IAM: alice denied cartfs:Read on /shared/readme" in log
    assert "Traceback" not in log
    with Archive.open(archive, readonly=True) as a:
        assert a.iam.get_user("alice").policies == ("home",)
