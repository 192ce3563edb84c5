"""Time conditions see the time. A request that brings no ``aws:CurrentTime`` (the mount's
never do) is decided at the current second, so an expired grant stops granting and a
``DateGreaterThan`` Deny applies: a conditional Deny must never fail open."""

from __future__ import annotations

import json
import time

import pytest

from cartfs.core.archive import Archive
from cartfs.core.device import MemoryDevice
from cartfs.core.errors import PermissionDenied

DAY = 86400


def iso(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def archive_with(*statements: dict[str, object]) -> Archive:
    archive = Archive.create_on(MemoryDevice())
    archive.write_file("/home/alice/a.txt", b"hers", parents=True)
    archive.iam.add_user("alice")
    archive.iam.put_policy("p", json.dumps({"Version": "2012-10-17",
                                            "Statement": list(statements)}))
    archive.iam.attach("alice", "p")
    return archive


HOME = {"Sid": "Home", "Effect": "Allow", "Action": "cartfs:*",
        "Resource": ["arn:cartfs:::/home/${aws:username}/**"]}


def test_a_deny_after_a_past_date_applies_without_a_time_in_the_request() -> None:
    expired = {"Sid": "Expired", "Effect": "Deny", "Action": "cartfs:*", "Resource": "*",
               "Condition": {"DateGreaterThan": {"aws:CurrentTime": iso(time.time() - DAY)}}}
    with archive_with(HOME, expired) as archive:
        alice = archive.as_principal("alice")
        with pytest.raises(PermissionDenied, match="Expired"):
            alice.read_file("/home/alice/a.txt")
        # A request that names its own time is decided at that time (replays, tests).
        past = archive.as_principal("alice", {"aws:CurrentTime": iso(time.time() - 2 * DAY)})
        assert past.read_file("/home/alice/a.txt") == b"hers"


def test_an_epoch_time_deny_applies_too() -> None:
    cutoff = {"Sid": "Cutoff", "Effect": "Deny", "Action": "cartfs:Write", "Resource": "*",
              "Condition": {"NumericGreaterThan": {"aws:EpochTime": str(int(time.time()) - 60)}}}
    with archive_with(HOME, cutoff) as archive:
        alice = archive.as_principal("alice")
        assert alice.read_file("/home/alice/a.txt") == b"hers"
        with pytest.raises(PermissionDenied, match="Cutoff"):
            alice.write_file("/home/alice/a.txt", b"changed")


def test_a_time_limited_grant_grants_until_it_expires() -> None:
    def window(start: float, end: float) -> dict[str, object]:
        return {"Sid": "Window", "Effect": "Allow", "Action": "cartfs:Read", "Resource": "*",
                "Condition": {"DateGreaterThan": {"aws:CurrentTime": iso(start)},
                              "DateLessThan": {"aws:CurrentTime": iso(end)}}}

    now = time.time()
    with archive_with(window(now - DAY, now + DAY)) as archive:
        assert archive.as_principal("alice").read_file("/home/alice/a.txt") == b"hers"
    with archive_with(window(now - 2 * DAY, now - DAY)) as archive, \
            pytest.raises(PermissionDenied):
        archive.as_principal("alice").read_file("/home/alice/a.txt")


def test_policies_without_time_keys_keep_their_decisions_cached() -> None:
    with archive_with(HOME) as archive:
        alice = archive.as_principal("alice")
        for _ in range(5):
            alice.read_file("/home/alice/a.txt")
        stats = archive.iam._cache.statistics()
        assert stats.hits >= 4, stats
