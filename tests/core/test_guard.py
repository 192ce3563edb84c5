"""The archive as a principal sees it: stored policies enforced on real paths.

One table drives most of it: (principal, action, path, context) → (allowed, effect), checked
twice — the decision ``archive.iam`` gives for the *real* path, and the guarded operation
itself (``archive.as_principal(user, context)``), which must fail with PermissionDenied
exactly when the decision is a deny. Every row runs on a fresh archive holding the same tree
and the same stored policies. Then the traps that need a sequence: ``walk`` skipping what
may not be listed, moves and recursive removes checked path by path, links that try to
carry a user out of ``/home/${aws:username}/**``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from cartfs.core.archive import Archive
from cartfs.core.device import MemoryDevice
from cartfs.core.errors import NotFound, PermissionDenied
from cartfs.core.guard import GuardedArchive
from cartfs.core.iam import archive_arn, s3_arn

HOME = ["arn:cartfs:::/home/${aws:username}", "arn:cartfs:::/home/${aws:username}/**"]
ALL_FILE_ACTIONS = ["cartfs:Read", "cartfs:List", "cartfs:Write", "cartfs:Create",
                    "cartfs:Delete"]


def doc(*statements: dict[str, object]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


POLICIES = {
    "home": doc({"Sid": "Home", "Effect": "Allow", "Action": ALL_FILE_ACTIONS,
                 "Resource": HOME}),
    "browse": doc({"Sid": "Browse", "Effect": "Allow", "Action": "cartfs:List",
                   "Resource": ["arn:cartfs:::/", "arn:cartfs:::/home"]},
                  {"Sid": "Public", "Effect": "Allow", "Action": ["cartfs:Read", "cartfs:List"],
                   "Resource": "arn:cartfs:::/public/**"}),
    "no-secrets": doc({"Sid": "NoSecrets", "Effect": "Deny", "Action": "*",
                       "Resource": "arn:cartfs:::/**/secret*"}),
    "office": doc({"Sid": "OfficeOnly", "Effect": "Deny", "Action": "*", "Resource": "*",
                   "Condition": {"NotIpAddress": {"aws:SourceIp": "10.0.0.0/8"}}}),
    "until-2030": doc({"Sid": "Until2030", "Effect": "Allow", "Action": "cartfs:Read",
                       "Resource": "arn:cartfs:::/public/**",
                       "Condition": {"DateLessThan": {"aws:CurrentTime":
                                                      "2030-01-01T00:00:00Z"}}}),
    "small-writes": doc({"Sid": "SmallWrites", "Effect": "Deny", "Action": "cartfs:Write",
                         "Resource": "*",
                         "Condition": {"NumericGreaterThan": {"cartfs:WriteSize": "1000"}}}),
    "everything": doc({"Sid": "Everything", "Effect": "Allow", "Action": "*",
                       "Resource": "*"}),
    "nothing": doc({"Sid": "Nothing", "Effect": "Deny", "Action": "*", "Resource": "*"}),
    "photos": doc({"Sid": "OwnPhotos", "Effect": "Allow", "Action": "s3:GetObject",
                   "Resource": "arn:aws:s3:::photos/${aws:username}/*"},
                  {"Sid": "ListOwn", "Effect": "Allow", "Action": "s3:ListBucket",
                   "Resource": "arn:aws:s3:::photos",
                   "Condition": {"StringLike": {"s3:prefix": "${aws:username}/*"}}}),
}
USERS = {
    "alice": ["home", "browse", "photos"],
    "bob": ["home", "browse"],
    "carol": ["home", "browse", "no-secrets"],
    "dave": ["home", "browse", "office"],
    "erin": ["until-2030"],
    "frank": [],
    "gina": ["everything"],
    "hank": ["home", "small-writes"],
    "mallory": ["everything", "nothing"],
}
FILES = {
    "/home/alice/notes.txt": b"alice's notes",
    "/home/alice/sub/deep.txt": b"deep",
    "/home/alice/%2e%2e/bob/secret.txt": b"alice's own odd name",
    "/home/bob/secret.txt": b"bob's secret",
    "/home/bob/sub/x.txt": b"bob x",
    "/home/carol/diary.txt": b"carol diary",
    "/home/carol/secret-diary.txt": b"carol secret",
    "/home/dave/a.txt": b"dave",
    "/home/hank/f.txt": b"hank",
    "/public/readme.txt": b"hello world",
}
SYMLINKS = {  # link → target
    "/home/alice/to-bob": "/home/bob",
    "/home/alice/rel-bob": "../bob/secret.txt",
    "/home/alice/loop-up": "..",
}


def build() -> Archive:
    archive = Archive.create_on(MemoryDevice())
    for path, data in FILES.items():
        archive.write_file(path, data, parents=True)
    for link, target in SYMLINKS.items():
        archive.make_symlink(target, link)
    archive.make_dir("/home/erin", parents=True)
    for name, text in POLICIES.items():
        archive.iam.put_policy(name, text)
    for user, names in USERS.items():
        archive.iam.add_user(user)
        for name in names:
            archive.iam.attach(user, name)
    return archive


# ---- operations a row can run ------------------------------------------------------------------

Op = Callable[[GuardedArchive, str], object]
OPS: dict[str, tuple[Op, dict[str, bool]]] = {
    # op name: (call, how the guard resolves the path: follow the last link, missing ok)
    "read": (lambda g, p: g.read_file(p), {"follow": True}),
    "stat": (lambda g, p: g.stat(p), {"follow": True}),
    "lstat": (lambda g, p: g.lstat(p), {"follow": False}),
    "list": (lambda g, p: g.listdir(p), {"follow": True}),
    "scandir": (lambda g, p: g.scandir(p), {"follow": True}),
    "walk": (lambda g, p: list(g.walk(p)), {"follow": True}),
    "write": (lambda g, p: g.write(p, 0, b"w"), {"follow": True}),
    "overwrite": (lambda g, p: g.write_file(p, b"new"), {"follow": True, "missing_ok": True}),
    "create": (lambda g, p: g.write_file(p, b"new"), {"follow": True, "missing_ok": True}),
    "mkdir": (lambda g, p: g.make_dir(p), {"follow": True, "missing_ok": True}),
    "delete": (lambda g, p: g.remove(p), {"follow": False}),
    "setxattr": (lambda g, p: g.setxattr(p, "user.k", b"v"), {"follow": True}),
    "getxattr": (lambda g, p: g.listxattr(p), {"follow": True}),
    "snapshot": (lambda g, p: g.create_snapshot("snap"), {}),
}


@dataclass(frozen=True)
class Row:
    user: str
    action: str
    path: str  # an archive path, or an s3 ARN
    allowed: bool
    effect: str
    op: str | None = None
    context: dict[str, str] = field(default_factory=dict)
    why: str = ""

    def __str__(self) -> str:
        return f"{self.user}-{self.action}-{self.path}-{self.why or self.effect}"


A, D, IMPLICIT = "Allow", "Deny", "ImplicitDeny"
IN_OFFICE = {"aws:SourceIp": "10.1.2.3"}
ROWS = [
    Row("alice", "cartfs:Read", "/home/alice/notes.txt", True, A, "read"),
    Row("alice", "cartfs:Read", "/home/alice/sub/deep.txt", True, A, "stat", why="** depth"),
    Row("alice", "cartfs:List", "/home/alice", True, A, "list"),
    Row("alice", "cartfs:List", "/home/alice/sub", True, A, "scandir"),
    Row("alice", "cartfs:Read", "/home/bob/secret.txt", False, IMPLICIT, "read"),
    Row("alice", "cartfs:List", "/home/bob", False, IMPLICIT, "list", why="list is checked"),
    Row("alice", "cartfs:List", "/home/bob", False, IMPLICIT, "scandir", why="scandir is checked"),
    Row("alice", "cartfs:List", "/home/bob", False, IMPLICIT, "walk", why="walk is checked"),
    Row("alice", "cartfs:List", "/", True, A, "list", why="browse root"),
    Row("alice", "cartfs:Read", "/public/readme.txt", True, A, "read"),
    Row("alice", "cartfs:Write", "/public/readme.txt", False, IMPLICIT, "write"),
    Row("alice", "cartfs:Read", "/home/alice/../bob/secret.txt", False, IMPLICIT, "read",
        why="dot-dot"),
    Row("alice", "cartfs:Read", "//home//alice//..//bob//secret.txt", False, IMPLICIT, "read",
        why="double slashes"),
    Row("alice", "cartfs:Read", "/home/alice/to-bob/secret.txt", False, IMPLICIT, "read",
        why="symlinked directory"),
    Row("alice", "cartfs:Read", "/home/alice/rel-bob", False, IMPLICIT, "read",
        why="relative link"),
    Row("alice", "cartfs:Read", "/home/alice/rel-bob", True, A, "lstat",
        why="the link itself is hers"),
    Row("alice", "cartfs:List", "/home/alice/to-bob", False, IMPLICIT, "list",
        why="listdir via link"),
    Row("alice", "cartfs:List", "/home/alice/loop-up/bob", False, IMPLICIT, "list",
        why="link to parent"),
    Row("alice", "cartfs:Read", "/home/alice/%2e%2e/bob/secret.txt", True, A, "read",
        why="encoded dots are a name"),
    Row("alice", "cartfs:Read", "/home/alice%2F..%2Fbob/secret.txt", False, IMPLICIT,
        why="encoded slashes are a name"),
    Row("alice", "cartfs:Read", "/home/alice/..%2Fbob%2Fsecret.txt", True, A,
        why="stays inside alice"),
    Row("alice", "cartfs:Create", "/home/alice/new.txt", True, A, "create"),
    Row("alice", "cartfs:Create", "/home/alice/newdir", True, A, "mkdir"),
    Row("alice", "cartfs:Create", "/home/bob/new.txt", False, IMPLICIT, "create"),
    Row("alice", "cartfs:Create", "/home/alice/to-bob/planted.txt", False, IMPLICIT, "create",
        why="create through a link"),
    Row("alice", "cartfs:Write", "/home/alice/rel-bob", False, IMPLICIT, "overwrite",
        why="write through a link"),
    Row("alice", "cartfs:Write", "/home/alice/notes.txt", True, A, "write"),
    Row("alice", "cartfs:Write", "/home/alice/notes.txt", True, A, "setxattr"),
    Row("alice", "cartfs:Read", "/home/bob/secret.txt", False, IMPLICIT, "getxattr"),
    Row("alice", "cartfs:Delete", "/home/alice/notes.txt", True, A, "delete"),
    Row("alice", "cartfs:Delete", "/home/bob/secret.txt", False, IMPLICIT, "delete"),
    Row("alice", "cartfs:Delete", "/home/alice/to-bob", True, A, "delete",
        why="removing her link, not bob's dir"),
    Row("alice", "cartfs:Snapshot", "/", False, IMPLICIT, "snapshot"),
    Row("gina", "cartfs:Snapshot", "/", True, A, "snapshot"),
    Row("gina", "cartfs:Admin", "/", True, A),
    Row("mallory", "cartfs:Read", "/public/readme.txt", False, D, "read",
        why="deny beats allow across policies"),
    Row("mallory", "cartfs:List", "/", False, D, "list"),
    Row("frank", "cartfs:Read", "/public/readme.txt", False, IMPLICIT, "read", why="default deny"),
    Row("frank", "cartfs:List", "/", False, IMPLICIT, "list", why="default deny"),
    Row("nobody", "cartfs:Read", "/public/readme.txt", False, IMPLICIT, "read", why="unknown user"),
    Row("carol", "cartfs:Read", "/home/carol/diary.txt", True, A, "read"),
    Row("carol", "cartfs:Read", "/home/carol/secret-diary.txt", False, D, "read",
        why="deny via **"),
    Row("dave", "cartfs:Read", "/home/dave/a.txt", True, A, "read", IN_OFFICE),
    Row("dave", "cartfs:Read", "/home/dave/a.txt", False, D, "read",
        {"aws:SourceIp": "192.168.1.9"}, why="outside"),
    Row("dave", "cartfs:Read", "/home/dave/a.txt", False, D, "read", why="no ip: fail closed"),
    Row("dave", "cartfs:Read", "/home/dave/a.txt", False, D, "read",
        {"aws:SourceIp": "not-an-ip"}, why="bad ip: fail closed"),
    Row("erin", "cartfs:Read", "/public/readme.txt", True, A, "read",
        {"aws:CurrentTime": "2029-06-01T00:00:00Z"}),
    Row("erin", "cartfs:Read", "/public/readme.txt", False, IMPLICIT, "read",
        {"aws:CurrentTime": "2031-01-01T00:00:00Z"}, why="expired"),
    Row("erin", "cartfs:Read", "/public/readme.txt", False, IMPLICIT, "read",
        {"aws:CurrentTime": "yesterday"}, why="bad date: allow ignored"),
    Row("hank", "cartfs:Write", "/home/hank/f.txt", True, A, "write",
        {"cartfs:WriteSize": "10"}),
    Row("hank", "cartfs:Write", "/home/hank/f.txt", False, D, "write",
        {"cartfs:WriteSize": "5000"}, why="too big"),
    Row("hank", "cartfs:Write", "/home/hank/f.txt", False, D, "write",
        {"cartfs:WriteSize": "lots"}, why="unparseable: deny applies"),
    Row("hank", "cartfs:Write", "/home/hank/f.txt", True, A, "write",
        why="missing key: the Deny's condition is false"),
    Row("alice", "s3:GetObject", s3_arn("photos", "alice/cat.jpg"), True, A),
    Row("alice", "s3:GetObject", s3_arn("photos", "bob/cat.jpg"), False, IMPLICIT),
    Row("alice", "s3:ListBucket", s3_arn("photos"), True, A, context={"s3:prefix": "alice/"}),
    Row("alice", "s3:ListBucket", s3_arn("photos"), False, IMPLICIT,
        context={"s3:prefix": "bob/"}),
    Row("bob", "s3:GetObject", s3_arn("photos", "bob/cat.jpg"), False, IMPLICIT,
        why="not attached"),
]


def real_resource(archive: Archive, row: Row) -> str:
    """The resource the guard checks: the real path for archive operations."""
    if row.path.startswith("arn:"):
        return row.path
    how = OPS[row.op][1] if row.op else {}
    if row.op == "snapshot":
        return archive_arn("/")
    try:
        return archive_arn(archive.realpath(row.path, **how))
    except NotFound:
        return archive_arn(row.path)


def test_table_is_big_and_covers_every_effect() -> None:
    assert len(ROWS) >= 30
    assert {r.effect for r in ROWS} == {A, D, IMPLICIT}
    assert {r.op for r in ROWS if r.op} == set(OPS)


@pytest.mark.parametrize("row", ROWS, ids=str)
def test_decision_table(row: Row) -> None:
    with build() as archive:
        decision = archive.iam.decide(row.user, row.action, real_resource(archive, row),
                                      row.context)
        assert (decision.allowed, decision.effect) == (row.allowed, row.effect), \
            decision.explain()
        if row.op is None:
            return
        guarded = archive.as_principal(row.user, row.context)
        call = OPS[row.op][0]
        if row.allowed:
            call(guarded, row.path)
        else:
            with pytest.raises(PermissionDenied) as info:
                call(guarded, row.path)
            assert decision.explain() in str(info.value)


def test_what_alice_reads_through_encoded_names_is_her_own() -> None:
    with build() as archive:
        alice = archive.as_principal("alice")
        assert alice.read_file("/home/alice/%2e%2e/bob/secret.txt") == b"alice's own odd name"


# ---- walking ---------------------------------------------------------------------------------


def test_walk_skips_directories_that_may_not_be_listed() -> None:
    with build() as archive:
        seen = {top for top, _, _ in archive.as_principal("alice").walk("/")}
        assert seen == {"/", "/home", "/home/alice", "/home/alice/sub", "/public",
                        "/home/alice/%2e%2e", "/home/alice/%2e%2e/bob"}, seen
        with pytest.raises(PermissionDenied):
            archive.as_principal("frank").listdir("/")


# ---- moves and removals check every path -------------------------------------------------------


def test_moving_a_directory_out_of_the_allowed_area_is_refused() -> None:
    with build() as archive:
        alice = archive.as_principal("alice")
        for dst in ("/public/sub", "/home/bob/sub2", "/home/alice/to-bob/sub"):
            with pytest.raises(PermissionDenied):
                alice.move("/home/alice/sub", dst)
        assert archive.read_file("/home/alice/sub/deep.txt") == b"deep"
        alice.move("/home/alice/sub", "/home/alice/moved")  # within her home: fine
        assert archive.read_file("/home/alice/moved/deep.txt") == b"deep"


def test_moving_bobs_file_into_alices_home_is_refused() -> None:
    with build() as archive:
        with pytest.raises(PermissionDenied):
            archive.as_principal("alice").move("/home/bob/secret.txt", "/home/alice/")
        with pytest.raises(PermissionDenied):
            archive.as_principal("alice").move("/home/alice/to-bob/sub", "/home/alice/got")
        assert archive.exists("/home/bob/sub/x.txt")


def test_one_protected_child_blocks_moving_or_removing_its_parent() -> None:
    """A Deny on one file deep inside: moving or recursively removing any ancestor would
    take that file away, so it is refused — every child path is checked, not just the top."""
    with build() as archive:
        archive.iam.put_policy("keep", doc({"Sid": "Keep", "Effect": "Deny",
                                            "Action": "cartfs:Delete",
                                            "Resource": "arn:cartfs:::/home/alice/sub/deep.txt"}))
        archive.iam.attach("alice", "keep")
        alice = archive.as_principal("alice")
        with pytest.raises(PermissionDenied, match="Keep"):
            alice.move("/home/alice/sub", "/home/alice/elsewhere")
        with pytest.raises(PermissionDenied, match="Keep"):
            alice.remove("/home/alice/sub", recursive=True)
        assert archive.read_file("/home/alice/sub/deep.txt") == b"deep"
        alice.write_file("/home/alice/sub/other.txt", b"o")
        alice.remove("/home/alice/sub/other.txt")


def test_replacing_a_file_on_move_needs_delete_on_the_victim() -> None:
    with build() as archive:
        archive.iam.put_policy("keep", doc({"Effect": "Deny", "Action": "cartfs:Delete",
                                            "Resource": "arn:cartfs:::/home/alice/notes.txt"}))
        archive.iam.attach("alice", "keep")
        alice = archive.as_principal("alice")
        alice.write_file("/home/alice/draft.txt", b"draft")
        with pytest.raises(PermissionDenied):
            alice.move("/home/alice/draft.txt", "/home/alice/notes.txt")
        assert archive.read_file("/home/alice/notes.txt") == b"alice's notes"


# ---- links -------------------------------------------------------------------------------------


def test_hard_link_to_someone_elses_file_is_refused() -> None:
    with build() as archive:
        alice = archive.as_principal("alice")
        with pytest.raises(PermissionDenied):
            alice.make_hardlink("/home/bob/secret.txt", "/home/alice/stolen")
        with pytest.raises(PermissionDenied):
            alice.make_hardlink("/home/alice/to-bob/secret.txt", "/home/alice/stolen")
        with pytest.raises(PermissionDenied):  # nor can she publish hers outside her home
            alice.make_hardlink("/home/alice/notes.txt", "/public/notes.txt")
        assert not archive.exists("/home/alice/stolen")
        alice.make_hardlink("/home/alice/notes.txt", "/home/alice/notes-again.txt")


def test_a_symlink_she_makes_cannot_carry_her_out() -> None:
    with build() as archive:
        alice = archive.as_principal("alice")
        alice.make_symlink("/home/bob/secret.txt", "/home/alice/ln")  # making it is fine
        alice.make_symlink("../../home/bob", "/home/alice/up")
        assert alice.lstat("/home/alice/ln").is_symlink
        for path in ("/home/alice/ln", "/home/alice/up/secret.txt",
                     "/home/alice/up/../bob/secret.txt"):
            with pytest.raises(PermissionDenied):
                alice.read_file(path)
        with pytest.raises(PermissionDenied):
            alice.write_file("/home/alice/ln", b"overwrite bob")
        assert archive.read_file("/home/bob/secret.txt") == b"bob's secret"


def test_snapshots_and_listing_them_are_checked() -> None:
    with build() as archive:
        with pytest.raises(PermissionDenied):
            archive.as_principal("alice").delete_snapshot("x")
        gina = archive.as_principal("gina")
        gina.create_snapshot("s1")
        assert [s.name for s in gina.list_snapshots()] == ["s1"]
        with pytest.raises(PermissionDenied):
            archive.as_principal("frank").list_snapshots()


def test_guard_without_policies_allows_everything() -> None:
    with Archive.create_on(MemoryDevice()) as archive:
        archive.write_file("/home/bob/secret.txt", b"s", parents=True)
        anyone = archive.as_principal("anyone")
        assert anyone.read_file("/home/bob/secret.txt") == b"s"
        anyone.remove("/home", recursive=True)
        assert archive.listdir("/") == []


def test_a_write_only_drop_box_cannot_be_read_through_a_hard_link() -> None:
    """Write access to a file is not read access: linking it into her home would let her
    read what she may only write."""
    with Archive.create_on(MemoryDevice()) as archive:
        archive.write_file("/dropbox/report.txt", b"for the boss only", parents=True)
        archive.make_dir("/home/ivy", parents=True)
        archive.iam.add_user("ivy")
        archive.iam.put_policy("ivy", doc(
            {"Sid": "Home", "Effect": "Allow", "Action": ALL_FILE_ACTIONS,
             "Resource": "arn:cartfs:::/home/${aws:username}/**"},
            {"Sid": "DropBox", "Effect": "Allow", "Action": ["cartfs:Write", "cartfs:Create"],
             "Resource": "arn:cartfs:::/dropbox/**"}))
        archive.iam.attach("ivy", "ivy")
        ivy = archive.as_principal("ivy")
        ivy.write_file("/dropbox/report.txt", b"appended by ivy")
        with pytest.raises(PermissionDenied, match="cartfs:Read"):
            ivy.make_hardlink("/dropbox/report.txt", "/home/ivy/peek.txt")
        assert not archive.exists("/home/ivy/peek.txt")
