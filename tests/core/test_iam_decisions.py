"""Decision table: (policies, action, resource, context) -> (allowed, effect, deciding Sid).

One list of rows drives the test; each row names what it covers. Policies are written as
JSON documents, exactly as a user would store them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from cartfs.core.errors import InvalidArgument, PermissionDenied
from cartfs.core.iam import (
    AccessDenied,
    Policy,
    RequestContext,
    archive_arn,
    enforce,
    evaluate,
    s3_arn,
)

BUCKET_KEY = "arn:aws:s3:::photos/2024/a.jpg"
DOC = archive_arn("/docs/a.txt")


def stmt(
    effect: str,
    action: str | list[str] = "*",
    resource: str | list[str] = "*",
    sid: str | None = None,
    condition: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A statement document; ``not_action``/``not_resource`` replace Action/Resource."""
    out: dict[str, Any] = {"Effect": effect}
    if sid is not None:
        out["Sid"] = sid
    if "not_action" in extra:
        out["NotAction"] = extra.pop("not_action")
    else:
        out["Action"] = action
    if "not_resource" in extra:
        out["NotResource"] = extra.pop("not_resource")
    else:
        out["Resource"] = resource
    if condition is not None:
        out["Condition"] = condition
    assert not extra
    return out


def allow_if(condition: dict[str, Any], sid: str = "C") -> list[dict[str, Any]]:
    """One policy allowing everything under ``condition``."""
    return [stmt("Allow", sid=sid, condition=condition)]


def deny_if(condition: dict[str, Any]) -> list[dict[str, Any]]:
    """Allow everything, but deny (Sid "D") under ``condition``."""
    return [stmt("Allow", sid="A"), stmt("Deny", sid="D", condition=condition)]


@dataclass
class Row:
    id: str
    statements: list[dict[str, Any]]
    action: str
    resource: str
    context: dict[str, Any]
    expected: tuple[bool, str, str | None]
    more_policies: list[list[dict[str, Any]]] = field(default_factory=list)


ALLOW_C = (True, "Allow", "C")
IMPLICIT = (False, "ImplicitDeny", None)
DENY_D = (False, "Deny", "D")
ALLOW_A = (True, "Allow", "A")

ROWS = [
    # --- string operators -----------------------------------------------------------------
    Row(
        "StringEquals match",
        allow_if({"StringEquals": {"aws:username": "alice"}}),
        "cartfs:Read",
        DOC,
        {"aws:username": "alice"},
        ALLOW_C,
    ),
    Row(
        "StringEquals is case-sensitive",
        allow_if({"StringEquals": {"aws:username": "alice"}}),
        "cartfs:Read",
        DOC,
        {"aws:username": "Alice"},
        IMPLICIT,
    ),
    Row(
        "StringEquals values ORed",
        allow_if({"StringEquals": {"aws:username": ["bob", "alice"]}}),
        "cartfs:Read",
        DOC,
        {"aws:username": "alice"},
        ALLOW_C,
    ),
    Row(
        "StringEquals missing key is false",
        allow_if({"StringEquals": {"aws:username": "alice"}}),
        "cartfs:Read",
        DOC,
        {},
        IMPLICIT,
    ),
    Row(
        "StringNotEquals is NOR over values (equal to one -> false)",
        allow_if({"StringNotEquals": {"aws:username": ["bob", "alice"]}}),
        "cartfs:Read",
        DOC,
        {"aws:username": "alice"},
        IMPLICIT,
    ),
    Row(
        "StringNotEquals equal to none -> true",
        allow_if({"StringNotEquals": {"aws:username": ["bob", "carol"]}}),
        "cartfs:Read",
        DOC,
        {"aws:username": "alice"},
        ALLOW_C,
    ),
    Row(
        "StringNotEquals missing key is true (AWS)",
        allow_if({"StringNotEquals": {"aws:username": "bob"}}),
        "cartfs:Read",
        DOC,
        {},
        ALLOW_C,
    ),
    Row(
        "StringEqualsIgnoreCase",
        allow_if({"StringEqualsIgnoreCase": {"aws:username": "ALICE"}}),
        "cartfs:Read",
        DOC,
        {"aws:username": "alice"},
        ALLOW_C,
    ),
    Row(
        "StringNotEqualsIgnoreCase",
        allow_if({"StringNotEqualsIgnoreCase": {"aws:username": "ALICE"}}),
        "cartfs:Read",
        DOC,
        {"aws:username": "Alice"},
        IMPLICIT,
    ),
    Row(
        "StringLike star crosses slash",
        allow_if({"StringLike": {"s3:prefix": "home/*"}}),
        "s3:ListBucket",
        "arn:aws:s3:::b",
        {"s3:prefix": "home/alice/deep/"},
        ALLOW_C,
    ),
    Row(
        "StringLike question mark is one character",
        allow_if({"StringLike": {"s3:prefix": "v?"}}),
        "s3:ListBucket",
        "arn:aws:s3:::b",
        {"s3:prefix": "v10"},
        IMPLICIT,
    ),
    Row(
        "StringNotLike",
        allow_if({"StringNotLike": {"s3:prefix": ["secret/*", "tmp*"]}}),
        "s3:ListBucket",
        "arn:aws:s3:::b",
        {"s3:prefix": "public/x"},
        ALLOW_C,
    ),
    Row(
        "StringLike with ${aws:username} in the value",
        allow_if({"StringLike": {"s3:prefix": "home/${aws:username}/*"}}),
        "s3:ListBucket",
        "arn:aws:s3:::b",
        {"s3:prefix": "home/bob/x", "aws:username": "alice"},
        IMPLICIT,
    ),
    # --- numeric --------------------------------------------------------------------------
    Row(
        "NumericEquals (10 == 10.0)",
        allow_if({"NumericEquals": {"s3:max-keys": "10"}}),
        "s3:ListBucket",
        "arn:aws:s3:::b",
        {"s3:max-keys": "10.0"},
        ALLOW_C,
    ),
    Row(
        "NumericNotEquals",
        allow_if({"NumericNotEquals": {"s3:max-keys": ["10", "20"]}}),
        "s3:ListBucket",
        "arn:aws:s3:::b",
        {"s3:max-keys": "20"},
        IMPLICIT,
    ),
    Row(
        "NumericLessThan",
        allow_if({"NumericLessThan": {"s3:max-keys": 100}}),
        "s3:ListBucket",
        "arn:aws:s3:::b",
        {"s3:max-keys": "99"},
        ALLOW_C,
    ),
    Row(
        "NumericLessThan boundary",
        allow_if({"NumericLessThan": {"s3:max-keys": "100"}}),
        "s3:ListBucket",
        "arn:aws:s3:::b",
        {"s3:max-keys": "100"},
        IMPLICIT,
    ),
    Row(
        "NumericLessThanEquals boundary",
        allow_if({"NumericLessThanEquals": {"s3:max-keys": "100"}}),
        "s3:ListBucket",
        "arn:aws:s3:::b",
        {"s3:max-keys": "100"},
        ALLOW_C,
    ),
    Row(
        "NumericGreaterThan",
        allow_if({"NumericGreaterThan": {"s3:max-keys": "1.5"}}),
        "s3:ListBucket",
        "arn:aws:s3:::b",
        {"s3:max-keys": "2"},
        ALLOW_C,
    ),
    Row(
        "NumericGreaterThanEquals",
        allow_if({"NumericGreaterThanEquals": {"s3:max-keys": "3"}}),
        "s3:ListBucket",
        "arn:aws:s3:::b",
        {"s3:max-keys": "2"},
        IMPLICIT,
    ),
    # --- dates ----------------------------------------------------------------------------
    Row(
        "DateEquals ISO vs epoch",
        allow_if({"DateEquals": {"aws:CurrentTime": "2024-01-01T00:00:00Z"}}),
        "cartfs:Read",
        DOC,
        {"aws:CurrentTime": "1704067200"},
        ALLOW_C,
    ),
    Row(
        "DateNotEquals",
        allow_if({"DateNotEquals": {"aws:CurrentTime": "2024-01-01T00:00:00+00:00"}}),
        "cartfs:Read",
        DOC,
        {"aws:CurrentTime": "2024-01-01T01:00:00+01:00"},
        IMPLICIT,
    ),
    Row(
        "DateLessThan",
        allow_if({"DateLessThan": {"aws:CurrentTime": "2030-01-01T00:00:00Z"}}),
        "cartfs:Read",
        DOC,
        {"aws:CurrentTime": "2024-06-01T12:00:00Z"},
        ALLOW_C,
    ),
    Row(
        "DateLessThanEquals (epoch policy value)",
        allow_if({"DateLessThanEquals": {"aws:EpochTime": 1704067200}}),
        "cartfs:Read",
        DOC,
        {"aws:EpochTime": "1704067201"},
        IMPLICIT,
    ),
    Row(
        "DateGreaterThan",
        allow_if({"DateGreaterThan": {"aws:CurrentTime": "2024-01-01"}}),
        "cartfs:Read",
        DOC,
        {"aws:CurrentTime": "2023-12-31T23:59:59Z"},
        IMPLICIT,
    ),
    Row(
        "DateGreaterThanEquals",
        allow_if({"DateGreaterThanEquals": {"aws:CurrentTime": "2024-01-01T00:00:00Z"}}),
        "cartfs:Read",
        DOC,
        {"aws:CurrentTime": "2024-01-01T00:00:00Z"},
        ALLOW_C,
    ),
    # --- bool, IP, ARN, Null ----------------------------------------------------------------
    Row(
        "Bool true",
        allow_if({"Bool": {"aws:SecureTransport": True}}),
        "s3:GetObject",
        BUCKET_KEY,
        {"aws:SecureTransport": "true"},
        ALLOW_C,
    ),
    Row(
        "Bool false does not match true",
        allow_if({"Bool": {"aws:SecureTransport": "false"}}),
        "s3:GetObject",
        BUCKET_KEY,
        {"aws:SecureTransport": "TRUE"},
        IMPLICIT,
    ),
    Row(
        "IpAddress IPv4 CIDR",
        allow_if({"IpAddress": {"aws:SourceIp": ["192.0.2.0/24", "203.0.113.0/24"]}}),
        "s3:GetObject",
        BUCKET_KEY,
        {"aws:SourceIp": "203.0.113.9"},
        ALLOW_C,
    ),
    Row(
        "IpAddress IPv6 CIDR",
        allow_if({"IpAddress": {"aws:SourceIp": "2001:db8::/32"}}),
        "s3:GetObject",
        BUCKET_KEY,
        {"aws:SourceIp": "2001:db8:1::5"},
        ALLOW_C,
    ),
    Row(
        "IpAddress IPv4-mapped IPv6 client",
        allow_if({"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}),
        "s3:GetObject",
        BUCKET_KEY,
        {"aws:SourceIp": "::ffff:10.1.2.3"},
        ALLOW_C,
    ),
    Row(
        "IpAddress IPv4-mapped IPv6 network in the policy, IPv4 client",
        allow_if({"IpAddress": {"aws:SourceIp": "::ffff:10.0.0.0/104"}}),
        "s3:GetObject",
        BUCKET_KEY,
        {"aws:SourceIp": "10.1.2.3"},
        ALLOW_C,
    ),
    Row(
        "IpAddress IPv4-mapped IPv6 network does not match outside it",
        allow_if({"IpAddress": {"aws:SourceIp": "::ffff:10.0.0.0/104"}}),
        "s3:GetObject",
        BUCKET_KEY,
        {"aws:SourceIp": "11.1.2.3"},
        IMPLICIT,
    ),
    Row(
        "NotIpAddress",
        allow_if({"NotIpAddress": {"aws:SourceIp": "10.0.0.0/8"}}),
        "s3:GetObject",
        BUCKET_KEY,
        {"aws:SourceIp": "10.9.9.9"},
        IMPLICIT,
    ),
    Row(
        "ArnEquals",
        allow_if({"ArnEquals": {"aws:SourceArn": "arn:aws:s3:::logs"}}),
        "s3:PutObject",
        BUCKET_KEY,
        {"aws:SourceArn": "arn:aws:s3:::logs"},
        ALLOW_C,
    ),
    Row(
        "ArnLike per component",
        allow_if({"ArnLike": {"aws:SourceArn": "arn:aws:iam::*:user/*"}}),
        "s3:PutObject",
        BUCKET_KEY,
        {"aws:SourceArn": "arn:aws:iam::123456789012:user/alice"},
        ALLOW_C,
    ),
    Row(
        "ArnLike star stays inside its component",
        allow_if({"ArnLike": {"aws:SourceArn": "arn:*:s3:::logs"}}),
        "s3:PutObject",
        BUCKET_KEY,
        {"aws:SourceArn": "arn:aws:x:s3:::logs"},
        IMPLICIT,
    ),
    Row(
        "ArnNotEquals",
        allow_if({"ArnNotEquals": {"aws:SourceArn": "arn:aws:s3:::logs"}}),
        "s3:PutObject",
        BUCKET_KEY,
        {"aws:SourceArn": "arn:aws:s3:::other"},
        ALLOW_C,
    ),
    Row(
        "ArnNotLike",
        allow_if({"ArnNotLike": {"aws:SourceArn": "arn:aws:s3:::log*"}}),
        "s3:PutObject",
        BUCKET_KEY,
        {"aws:SourceArn": "arn:aws:s3:::logs"},
        IMPLICIT,
    ),
    Row(
        "Null true: key absent",
        allow_if({"Null": {"cartfs:snapshot": "true"}}),
        "cartfs:Write",
        DOC,
        {},
        ALLOW_C,
    ),
    Row(
        "Null true: key present",
        allow_if({"Null": {"cartfs:snapshot": "true"}}),
        "cartfs:Write",
        DOC,
        {"cartfs:snapshot": "daily"},
        IMPLICIT,
    ),
    Row(
        "Null false: key present",
        allow_if({"Null": {"cartfs:snapshot": False}}),
        "cartfs:Read",
        DOC,
        {"cartfs:snapshot": "daily"},
        ALLOW_C,
    ),
    # --- IfExists and set operators -----------------------------------------------------------
    Row(
        "IfExists: missing key is true",
        allow_if({"StringEqualsIfExists": {"cartfs:snapshot": "daily"}}),
        "cartfs:Read",
        DOC,
        {},
        ALLOW_C,
    ),
    Row(
        "IfExists: present key is checked",
        allow_if({"StringEqualsIfExists": {"cartfs:snapshot": "daily"}}),
        "cartfs:Read",
        DOC,
        {"cartfs:snapshot": "weekly"},
        IMPLICIT,
    ),
    Row(
        "NumericLessThanIfExists present and true",
        allow_if({"NumericLessThanIfExists": {"s3:max-keys": "10"}}),
        "s3:ListBucket",
        "arn:aws:s3:::b",
        {"s3:max-keys": "5"},
        ALLOW_C,
    ),
    Row(
        "ForAnyValue: one value matches",
        allow_if({"ForAnyValue:StringEquals": {"aws:TagKeys": ["team", "cost"]}}),
        "cartfs:Write",
        DOC,
        {"aws:TagKeys": ["owner", "cost"]},
        ALLOW_C,
    ),
    Row(
        "ForAnyValue: missing key is false",
        allow_if({"ForAnyValue:StringEquals": {"aws:TagKeys": ["team", "cost"]}}),
        "cartfs:Write",
        DOC,
        {},
        IMPLICIT,
    ),
    Row(
        "ForAllValues: every value allowed",
        allow_if({"ForAllValues:StringLike": {"aws:TagKeys": ["team", "cost*"]}}),
        "cartfs:Write",
        DOC,
        {"aws:TagKeys": ["team", "costcenter"]},
        ALLOW_C,
    ),
    Row(
        "ForAllValues: one value outside the set",
        allow_if({"ForAllValues:StringLike": {"aws:TagKeys": ["team", "cost*"]}}),
        "cartfs:Write",
        DOC,
        {"aws:TagKeys": ["team", "owner"]},
        IMPLICIT,
    ),
    Row(
        "ForAllValues: missing key is true (AWS)",
        allow_if({"ForAllValues:StringEquals": {"aws:TagKeys": ["team"]}}),
        "cartfs:Write",
        DOC,
        {},
        ALLOW_C,
    ),
    Row(
        "ForAllValues with a negated operator",
        allow_if({"ForAllValues:StringNotEquals": {"aws:TagKeys": ["secret"]}}),
        "cartfs:Write",
        DOC,
        {"aws:TagKeys": ["team", "secret"]},
        IMPLICIT,
    ),
    Row(
        "keys in one operator block are ANDed",
        allow_if({"StringEquals": {"aws:username": "alice", "cartfs:snapshot": "daily"}}),
        "cartfs:Read",
        DOC,
        {"aws:username": "alice", "cartfs:snapshot": "weekly"},
        IMPLICIT,
    ),
    Row(
        "operator blocks are ANDed",
        allow_if(
            {
                "StringEquals": {"aws:username": "alice"},
                "Bool": {"aws:SecureTransport": "true"},
            }
        ),
        "cartfs:Read",
        DOC,
        {"aws:username": "alice", "aws:SecureTransport": "true"},
        ALLOW_C,
    ),
    # --- case rules ---------------------------------------------------------------------------
    Row(
        "condition keys are case-insensitive",
        allow_if({"IpAddress": {"AWS:SOURCEIP": "10.0.0.0/8"}}),
        "s3:GetObject",
        BUCKET_KEY,
        {"aws:sourceip": "10.0.0.1"},
        ALLOW_C,
    ),
    Row(
        "actions are case-insensitive (request)",
        [stmt("Allow", "s3:GetObject", "arn:aws:s3:::photos/*", sid="C")],
        "S3:GETOBJECT",
        BUCKET_KEY,
        {},
        ALLOW_C,
    ),
    Row(
        "actions are case-insensitive (pattern with wildcard)",
        [stmt("Allow", "S3:get*", "arn:aws:s3:::photos/*", sid="C")],
        "s3:GetObject",
        BUCKET_KEY,
        {},
        ALLOW_C,
    ),
    Row(
        "action wildcard does not over-match",
        [stmt("Allow", "s3:Get*", "*", sid="C")],
        "s3:PutObject",
        BUCKET_KEY,
        {},
        IMPLICIT,
    ),
    Row(
        "cartfs action wildcard",
        [stmt("Allow", "cartfs:*", "*", sid="C")],
        "cartfs:Snapshot",
        DOC,
        {},
        ALLOW_C,
    ),
    Row(
        "S3 resources are case-sensitive",
        [stmt("Allow", "s3:*", "arn:aws:s3:::photos/2024/A.jpg", sid="C")],
        "s3:GetObject",
        BUCKET_KEY,
        {},
        IMPLICIT,
    ),
    Row(
        "archive resources are case-sensitive",
        [stmt("Allow", "cartfs:*", "arn:cartfs:::/Docs/**", sid="C")],
        "cartfs:Read",
        DOC,
        {},
        IMPLICIT,
    ),
    # --- resource wildcards --------------------------------------------------------------------
    Row(
        "S3 star crosses slash",
        [stmt("Allow", "s3:GetObject", "arn:aws:s3:::photos/*.jpg", sid="C")],
        "s3:GetObject",
        "arn:aws:s3:::photos/2024/summer/a.jpg",
        {},
        ALLOW_C,
    ),
    Row(
        "S3 keys are opaque: '..' is just characters",
        [stmt("Allow", "s3:GetObject", "arn:aws:s3:::photos/a/*", sid="C")],
        "s3:GetObject",
        "arn:aws:s3:::photos/a/../b//c",
        {},
        ALLOW_C,
    ),
    Row(
        "S3 pattern does not match archive resources",
        [stmt("Allow", "*", "arn:aws:s3:::*", sid="C")],
        "cartfs:Read",
        DOC,
        {},
        IMPLICIT,
    ),
    Row(
        "S3 bucket ARN is not an object ARN",
        [stmt("Allow", "s3:*", "arn:aws:s3:::photos/*", sid="C")],
        "s3:ListBucket",
        "arn:aws:s3:::photos",
        {},
        IMPLICIT,
    ),
    Row(
        "archive single star stays in one segment",
        [stmt("Allow", "cartfs:Read", "arn:cartfs:::/docs/*", sid="C")],
        "cartfs:Read",
        archive_arn("/docs/sub/a.txt"),
        {},
        IMPLICIT,
    ),
    Row(
        "archive single star matches one segment",
        [stmt("Allow", "cartfs:Read", "arn:cartfs:::/docs/*.txt", sid="C")],
        "cartfs:Read",
        DOC,
        {},
        ALLOW_C,
    ),
    Row(
        "archive double star crosses segments",
        [stmt("Allow", "cartfs:Read", "arn:cartfs:::/docs/**", sid="C")],
        "cartfs:Read",
        archive_arn("/docs/sub/deeper/a.txt"),
        {},
        ALLOW_C,
    ),
    Row(
        "archive double star matches the directory itself",
        [stmt("Allow", "cartfs:List", "arn:cartfs:::/docs/**", sid="C")],
        "cartfs:List",
        archive_arn("/docs"),
        {},
        ALLOW_C,
    ),
    Row(
        "archive double star does not match a sibling prefix",
        [stmt("Allow", "cartfs:Read", "arn:cartfs:::/docs/**", sid="C")],
        "cartfs:Read",
        archive_arn("/docs2/a.txt"),
        {},
        IMPLICIT,
    ),
    Row(
        "archive double star in the middle",
        [stmt("Allow", "cartfs:Read", "arn:cartfs:::/**/secret/*.key", sid="C")],
        "cartfs:Read",
        archive_arn("/a/b/secret/x.key"),
        {},
        ALLOW_C,
    ),
    Row(
        "archive question mark is one non-slash character",
        [stmt("Allow", "cartfs:Read", "arn:cartfs:::/docs?a.txt", sid="C")],
        "cartfs:Read",
        DOC,
        {},
        IMPLICIT,
    ),
    Row(
        "root pattern /* does not match the root",
        [stmt("Allow", "cartfs:List", "arn:cartfs:::/*", sid="C")],
        "cartfs:List",
        archive_arn("/"),
        {},
        IMPLICIT,
    ),
    # --- policy variables ----------------------------------------------------------------------
    Row(
        "${aws:username} substitution",
        [stmt("Allow", "cartfs:*", "arn:cartfs:::/home/${aws:username}/**", sid="C")],
        "cartfs:Write",
        archive_arn("/home/alice/notes.txt"),
        {"aws:username": "alice"},
        ALLOW_C,
    ),
    Row(
        "${aws:username} of another user",
        [stmt("Allow", "cartfs:*", "arn:cartfs:::/home/${aws:username}/**", sid="C")],
        "cartfs:Write",
        archive_arn("/home/bob/notes.txt"),
        {"aws:username": "alice"},
        IMPLICIT,
    ),
    Row(
        "${cartfs:username} falls back to aws:username",
        [stmt("Allow", "s3:*", "arn:aws:s3:::home/${cartfs:username}/*", sid="C")],
        "s3:GetObject",
        "arn:aws:s3:::home/alice/x",
        {"aws:username": "alice"},
        ALLOW_C,
    ),
    Row(
        "a username '*' is literal, not a wildcard (archive)",
        [stmt("Allow", "cartfs:*", "arn:cartfs:::/home/${aws:username}/**", sid="C")],
        "cartfs:Read",
        archive_arn("/home/bob/x"),
        {"aws:username": "*"},
        IMPLICIT,
    ),
    Row(
        "a username 'a*' is literal, not a wildcard (S3)",
        [stmt("Allow", "s3:*", "arn:aws:s3:::home/${aws:username}/*", sid="C")],
        "s3:GetObject",
        "arn:aws:s3:::home/alice/x",
        {"aws:username": "a*"},
        IMPLICIT,
    ),
    Row(
        "a username '*' still reaches its own literal home",
        [stmt("Allow", "s3:*", "arn:aws:s3:::home/${aws:username}/*", sid="C")],
        "s3:GetObject",
        "arn:aws:s3:::home/*/x",
        {"aws:username": "*"},
        ALLOW_C,
    ),
    Row(
        "a username with a slash cannot add a segment",
        [stmt("Allow", "cartfs:*", "arn:cartfs:::/home/${aws:username}/**", sid="C")],
        "cartfs:Read",
        archive_arn("/home/alice/x"),
        {"aws:username": "alice/x"},
        IMPLICIT,
    ),
    Row(
        "a username with a slash has no value in S3 patterns either",
        [stmt("Allow", "s3:*", "arn:aws:s3:::home/${aws:username}/*", sid="C")],
        "s3:GetObject",
        "arn:aws:s3:::home/alice/x/secret",
        {"aws:username": "alice/x"},
        IMPLICIT,
    ),
    Row(
        "a username '..' has no value",
        [stmt("Allow", "s3:*", "arn:aws:s3:::home/${aws:username}/*", sid="C")],
        "s3:GetObject",
        "arn:aws:s3:::home/../etc",
        {"aws:username": ".."},
        IMPLICIT,
    ),
    Row(
        "missing variable: pattern matches nothing",
        [stmt("Allow", "cartfs:*", "arn:cartfs:::/home/${aws:username}/**", sid="C")],
        "cartfs:Read",
        archive_arn("/home/alice/x"),
        {},
        IMPLICIT,
    ),
    Row(
        "variable default value",
        [stmt("Allow", "cartfs:*", "arn:cartfs:::/home/${aws:username, 'guest'}/**", sid="C")],
        "cartfs:Read",
        archive_arn("/home/guest/x"),
        {},
        ALLOW_C,
    ),
    Row(
        "${*} is a literal star",
        [stmt("Allow", "s3:*", "arn:aws:s3:::b/${*}", sid="C")],
        "s3:GetObject",
        "arn:aws:s3:::b/anything",
        {},
        IMPLICIT,
    ),
    # --- NotAction / NotResource ---------------------------------------------------------------
    Row(
        "NotAction: other actions allowed",
        [stmt("Allow", sid="C", not_action="cartfs:Admin")],
        "cartfs:Write",
        DOC,
        {},
        ALLOW_C,
    ),
    Row(
        "NotAction: the excluded action is not",
        [stmt("Allow", sid="C", not_action=["cartfs:Admin", "cartfs:Snap*"])],
        "cartfs:Snapshot",
        DOC,
        {},
        IMPLICIT,
    ),
    Row(
        "NotResource: outside is allowed",
        [stmt("Allow", "cartfs:Read", sid="C", not_resource="arn:cartfs:::/secret/**")],
        "cartfs:Read",
        DOC,
        {},
        ALLOW_C,
    ),
    Row(
        "NotResource: inside is not",
        [stmt("Allow", "cartfs:Read", sid="C", not_resource="arn:cartfs:::/secret/**")],
        "cartfs:Read",
        archive_arn("/secret/k"),
        {},
        IMPLICIT,
    ),
    Row(
        "NotResource with an unresolvable variable never widens an Allow",
        [
            stmt(
                "Allow",
                "cartfs:Read",
                sid="C",
                not_resource="arn:cartfs:::/home/${aws:username}/private/**",
            )
        ],
        "cartfs:Read",
        DOC,
        {},
        IMPLICIT,
    ),
    Row(
        "Deny with NotResource",
        [
            stmt("Allow", sid="A"),
            stmt("Deny", "cartfs:Write", sid="D", not_resource="arn:cartfs:::/tmp/**"),
        ],
        "cartfs:Write",
        DOC,
        {},
        DENY_D,
    ),
    # --- decision rules ------------------------------------------------------------------------
    Row(
        "explicit deny beats allow across two policies",
        [stmt("Allow", "cartfs:*", "arn:cartfs:::/**", sid="A")],
        "cartfs:Delete",
        DOC,
        {},
        DENY_D,
        more_policies=[[stmt("Deny", "cartfs:Delete", "arn:cartfs:::/docs/**", sid="D")]],
    ),
    Row(
        "deny in the first policy, allow in the second",
        [stmt("Deny", "cartfs:Delete", "arn:cartfs:::/docs/**", sid="D")],
        "cartfs:Delete",
        DOC,
        {},
        DENY_D,
        more_policies=[[stmt("Allow", "cartfs:*", "arn:cartfs:::/**", sid="A")]],
    ),
    Row(
        "deny of another action does not interfere",
        [stmt("Allow", "cartfs:*", "arn:cartfs:::/**", sid="A")],
        "cartfs:Read",
        DOC,
        {},
        ALLOW_A,
        more_policies=[[stmt("Deny", "cartfs:Delete", "arn:cartfs:::/docs/**", sid="D")]],
    ),
    Row(
        "implicit deny: nothing allows",
        [stmt("Allow", "cartfs:Read", "arn:cartfs:::/public/**", sid="C")],
        "cartfs:Read",
        DOC,
        {},
        IMPLICIT,
    ),
    Row(
        "list is checked like any action",
        [stmt("Allow", "cartfs:Read", "arn:cartfs:::/**", sid="C")],
        "cartfs:List",
        archive_arn("/docs"),
        {},
        IMPLICIT,
    ),
    # --- fail closed ---------------------------------------------------------------------------
    Row(
        "conditional Deny with an unparseable IP fails closed",
        deny_if({"NotIpAddress": {"aws:SourceIp": "10.0.0.0/8"}}),
        "cartfs:Read",
        DOC,
        {"aws:SourceIp": "not-an-ip"},
        DENY_D,
    ),
    Row(
        "conditional Deny with an unparseable number fails closed",
        deny_if({"NumericGreaterThan": {"s3:max-keys": "1000"}}),
        "s3:ListBucket",
        "arn:aws:s3:::b",
        {"s3:max-keys": "lots"},
        DENY_D,
    ),
    Row(
        "conditional Deny with an unparseable date fails closed",
        deny_if({"DateGreaterThan": {"aws:CurrentTime": "2030-01-01T00:00:00Z"}}),
        "cartfs:Read",
        DOC,
        {"aws:CurrentTime": "tomorrow"},
        DENY_D,
    ),
    Row(
        "conditional Deny whose other condition is false does not apply",
        deny_if(
            {
                "NotIpAddress": {"aws:SourceIp": "10.0.0.0/8"},
                "StringEquals": {"aws:username": "mallory"},
            }
        ),
        "cartfs:Read",
        DOC,
        {"aws:SourceIp": "garbage", "aws:username": "alice"},
        ALLOW_A,
    ),
    Row(
        "conditional Deny with a good value that does not match",
        deny_if({"NotIpAddress": {"aws:SourceIp": "10.0.0.0/8"}}),
        "cartfs:Read",
        DOC,
        {"aws:SourceIp": "10.2.3.4"},
        ALLOW_A,
    ),
    Row(
        "conditional Allow with an unparseable value does not allow",
        allow_if({"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}),
        "cartfs:Read",
        DOC,
        {"aws:SourceIp": "10.0.0.999"},
        IMPLICIT,
    ),
    Row(
        "ForAnyValue: a good match wins over an unparseable sibling",
        allow_if({"ForAnyValue:IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}),
        "cartfs:Read",
        DOC,
        {"aws:SourceIp": ["junk", "10.0.0.1"]},
        ALLOW_C,
    ),
]


def _policies(row: Row) -> list[Policy]:
    docs = [row.statements, *row.more_policies]
    return [
        Policy.from_json(json.dumps({"Version": "2012-10-17", "Statement": s}), name=f"p{i}")
        for i, s in enumerate(docs)
    ]


def test_table_is_big_enough() -> None:
    assert len(ROWS) >= 40
    assert len({row.id for row in ROWS}) == len(ROWS)


@pytest.mark.parametrize("row", ROWS, ids=[row.id for row in ROWS])
def test_decision_table(row: Row) -> None:
    decision = evaluate(_policies(row), row.action, row.resource, row.context)
    assert (decision.allowed, decision.effect, decision.sid) == row.expected, decision.explain()
    if decision.effect == "ImplicitDeny":
        assert decision.policy_name is None and decision.statement_index is None
    else:
        assert decision.policy_name is not None and decision.statement_index is not None


def test_deciding_policy_and_statement_are_named() -> None:
    allow = Policy.from_json(
        json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    stmt("Allow", "cartfs:List", "*"),
                    stmt("Allow", "cartfs:Read", "arn:cartfs:::/docs/**", sid="ReadDocs"),
                ],
            }
        ),
        name="readers",
    )
    decision = evaluate([allow], "cartfs:Read", DOC, {})
    assert (decision.policy_name, decision.statement_index, decision.sid) == (
        "readers",
        1,
        "ReadDocs",
    )
    text = decision.explain()
    assert "statement 1" in text and "'ReadDocs'" in text and "'readers'" in text
    assert text.startswith("Allowed cartfs:Read on arn:cartfs:::/docs/a.txt")


def test_explain_sentences() -> None:
    policy = Policy.from_json(
        json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": deny_if({"NotIpAddress": {"aws:SourceIp": "10.0.0.0/8"}}),
            }
        ),
        name="net",
    )
    denied = evaluate([policy], "cartfs:Read", DOC, {"aws:SourceIp": "nonsense"})
    assert "explicitly by statement 1 (Sid 'D') of policy 'net'" in denied.explain()
    assert "could not be evaluated" in denied.explain()
    assert "'nonsense'" in denied.explain()
    nothing = evaluate([], "cartfs:Read", DOC, {})
    assert nothing.effect == "ImplicitDeny"
    assert nothing.explain() == (
        "Denied cartfs:Read on arn:cartfs:::/docs/a.txt: no statement of any policy allows it."
    )


def test_ignored_allow_is_mentioned_in_implicit_deny() -> None:
    policy = Policy.from_json(
        json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": allow_if({"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}, sid="Net"),
            }
        )
    )
    decision = evaluate([policy], "cartfs:Read", DOC, {"aws:SourceIp": "x"})
    assert decision.effect == "ImplicitDeny"
    assert "Sid 'Net'" in decision.explain() and "ignored" in decision.explain()


def test_enforce_raises_permission_denied() -> None:
    policy = Policy.from_json(
        json.dumps({"Version": "2012-10-17", "Statement": stmt("Allow", "s3:Get*", "*")})
    )
    assert enforce([policy], "s3:GetObject", s3_arn("b", "k")).allowed
    with pytest.raises(PermissionDenied) as info:
        enforce([policy], "s3:PutObject", s3_arn("b", "k"))
    assert isinstance(info.value, AccessDenied)
    assert info.value.decision.effect == "ImplicitDeny"
    assert str(info.value) == info.value.decision.explain()


@pytest.mark.parametrize(
    ("action", "resource"),
    [
        ("cartfs:Raed", DOC),
        ("s3:Get*", "arn:aws:s3:::b/k"),
        ("ec2:RunInstances", DOC),
        ("cartfs:Read", "arn:cartfs:::/docs/../etc"),
        ("cartfs:Read", "arn:cartfs:::docs"),
        ("cartfs:Read", "arn:cartfs:::/docs/"),
        ("cartfs:Read", "arn:cartfs:::/a\x00b"),
        ("s3:GetObject", "arn:aws:s3:::"),
        ("s3:GetObject", "/docs/a.txt"),
    ],
)
def test_malformed_requests_are_rejected(action: str, resource: str) -> None:
    policy = Policy.from_json(json.dumps({"Version": "2012-10-17", "Statement": stmt("Allow")}))
    with pytest.raises(InvalidArgument):
        evaluate([policy], action, resource, {})


def test_malformed_context_is_rejected() -> None:
    with pytest.raises(InvalidArgument, match="twice"):
        RequestContext({"aws:username": "a", "AWS:UserName": "b"})
    with pytest.raises(InvalidArgument, match="string"):
        RequestContext({"aws:SecureTransport": True})  # type: ignore[dict-item]


def test_variables_are_literal_in_2008_policies() -> None:
    doc = {
        "Version": "2008-10-17",
        "Statement": stmt("Allow", "s3:*", "arn:aws:s3:::b/${aws:username}/*", sid="C"),
    }
    policy = Policy.from_json(json.dumps(doc))
    assert not evaluate(
        [policy], "s3:GetObject", "arn:aws:s3:::b/alice/x", {"aws:username": "alice"}
    ).allowed
    literal = "arn:aws:s3:::b/${aws:username}/x"
    assert evaluate([policy], "s3:GetObject", literal, {"aws:username": "alice"}).allowed
