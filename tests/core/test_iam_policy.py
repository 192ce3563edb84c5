"""Policy documents: malformed ones are refused with a located message; good ones round-trip."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from cartfs.core.errors import InvalidArgument
from cartfs.core.iam import (
    Condition,
    Policy,
    RequestContext,
    Statement,
    archive_arn,
    evaluate,
)


def doc(*statements: dict[str, Any], **top: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"Version": "2012-10-17", "Statement": list(statements)}
    out.update(top)
    return out


def allow(**fields: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"Effect": "Allow", "Action": "cartfs:Read", "Resource": "*"}
    out.update(fields)
    return {k: v for k, v in out.items() if v is not None}


# (document or raw text, the exact message or a fragment of it)
BAD: list[tuple[str, Any, str]] = [
    ("not json", "{", "policy is not valid JSON"),
    ("NaN", '{"Version": NaN}', "NaN is not allowed"),
    ("top-level list", [], "policy: must be a JSON object, not a list"),
    ("unknown top key", doc(allow(), Extra=1), "policy: unknown key 'Extra'"),
    ("lower-case key", {"version": "2012-10-17"}, "did you mean 'Version'?"),
    ("missing Version", {"Statement": [allow()]}, "Version: missing"),
    ("bad Version", doc(allow(), Version="2020-01-01"), "Version: '2020-01-01' is not one of"),
    ("Version as number", doc(allow(), Version=2012), "Version: must be a string, not a number"),
    ("missing Statement", {"Version": "2012-10-17"}, "Statement: missing"),
    ("empty Statement", doc(), "Statement: empty list"),
    ("Statement string", doc(allow(), Statement="x"), "Statement: must be an object or a list"),
    ("Statement item not object", doc(allow(), Statement=[allow(), 3]), "Statement[1]: must be"),
    ("unknown statement key", doc(allow(Effectt="Allow")), "Statement[0]: unknown key 'Effectt'"),
    ("statement key case", doc(allow(action="x")), "(did you mean 'Action'?)"),
    ("Principal", doc(allow(Principal="*")), "Statement[0]: Principal is not supported"),
    ("missing Effect", doc({"Action": "*", "Resource": "*"}), "Statement[0]: missing Effect"),
    ("Effect case", doc(allow(Effect="allow")), "Statement[0].Effect: 'allow' is not 'Allow'"),
    ("Effect type", doc(allow(Effect=True)), "Statement[0].Effect: must be a string"),
    (
        "both Action and NotAction",
        doc(allow(NotAction="cartfs:Write")),
        "Statement[0]: has both Action and NotAction",
    ),
    ("no Action", doc(allow(Action=None)), "Statement[0]: needs Action or NotAction"),
    ("empty Action", doc(allow(Action=[])), "Statement[0].Action: empty list"),
    ("Action number", doc(allow(Action=["cartfs:Read", 7])), "Statement[0].Action[1]: must be a"),
    ("unknown archive action", doc(allow(Action="cartfs:Raed")), "Statement[0].Action[0]: action"),
    ("archive wildcard matching nothing", doc(allow(Action="cartfs:X*")), "matches no archive"),
    ("foreign service", doc(allow(Action="ec2:RunInstances")), "invalid action 'ec2:RunInstances'"),
    ("wildcard service", doc(allow(Action="*:GetObject")), "invalid action '*:GetObject'"),
    ("NotAction bad", doc(allow(Action=None, NotAction="bogus")), "Statement[0].NotAction[0]"),
    ("no Resource", doc(allow(Resource=None)), "Statement[0]: needs Resource or NotResource"),
    (
        "both Resource and NotResource",
        doc(allow(NotResource="*")),
        "Statement[0]: has both Resource and NotResource",
    ),
    ("empty NotResource", doc(allow(Resource=None, NotResource=[])), "NotResource: empty list"),
    ("foreign resource", doc(allow(Resource="arn:aws:iam::1:user/x")), "Resource[0]: invalid"),
    ("relative archive", doc(allow(Resource="arn:cartfs:::docs/*")), "must name an absolute path"),
    ("archive star only", doc(allow(Resource="arn:cartfs:::*")), "arn:cartfs:::/**"),
    ("archive dotdot", doc(allow(Resource="arn:cartfs:::/a/../b")), "a '..' segment"),
    ("archive dot", doc(allow(Resource="arn:cartfs:::/a/./b")), "a '.' segment"),
    ("archive double slash", doc(allow(Resource="arn:cartfs:::/a//b")), "empty segment"),
    ("archive trailing slash", doc(allow(Resource="arn:cartfs:::/a/")), "empty segment"),
    ("partial double star", doc(allow(Resource="arn:cartfs:::/a/b**")), "whole path segment"),
    ("empty bucket", doc(allow(Resource="arn:aws:s3:::")), "Resource[0]: invalid resource"),
    ("bad variable", doc(allow(Resource="arn:aws:s3:::b/${aws:username")), "malformed policy var"),
    ("foreign variable", doc(allow(Resource="arn:aws:s3:::b/${user}")), "is not an aws:, s3:"),
    (
        "unknown operator",
        doc(allow(), allow(), allow(Condition={"StringLikee": {"s3:prefix": "a"}})),
        "Statement[2].Condition: unknown operator 'StringLikee' (did you mean 'StringLike'?)",
    ),
    (
        "operator case",
        doc(allow(Condition={"stringequals": {"s3:prefix": "a"}})),
        "(did you mean 'StringEquals'?)",
    ),
    (
        "bad set prefix",
        doc(allow(Condition={"ForSomeValues:StringEquals": {"s3:prefix": "a"}})),
        "unknown operator 'ForSomeValues:StringEquals'",
    ),
    (
        "Null with IfExists",
        doc(allow(Condition={"NullIfExists": {"s3:prefix": "true"}})),
        "Null takes neither IfExists",
    ),
    (
        "Null with a set prefix",
        doc(allow(Condition={"ForAnyValue:Null": {"s3:prefix": "true"}})),
        "Null takes neither IfExists",
    ),
    (
        "Null value",
        doc(allow(Condition={"Null": {"s3:prefix": "yes"}})),
        "Statement[0].Condition.Null.s3:prefix: 'yes' is not 'true' or 'false'",
    ),
    (
        "bad number",
        doc(allow(Condition={"NumericLessThan": {"s3:max-keys": ["1", "ten"]}})),
        "Statement[0].Condition.NumericLessThan.s3:max-keys: 'ten' is not a number",
    ),
    (
        "infinite number",
        doc(allow(Condition={"NumericLessThan": {"s3:max-keys": "Infinity"}})),
        "'Infinity' is not a number",
    ),
    (
        "bad date",
        doc(allow(Condition={"DateLessThan": {"aws:CurrentTime": "next week"}})),
        "'next week' is not a date",
    ),
    (
        "bad CIDR",
        doc(allow(Condition={"IpAddress": {"aws:SourceIp": "10.0.0.0/33"}})),
        "'10.0.0.0/33' is not an IP address",
    ),
    (
        "bad Bool",
        doc(allow(Condition={"Bool": {"aws:SecureTransport": "yes"}})),
        "'yes' is not 'true' or 'false'",
    ),
    (
        "bad ARN",
        doc(allow(Condition={"ArnLike": {"aws:SourceArn": "arn:aws:s3"}})),
        "'arn:aws:s3' is not an ARN",
    ),
    (
        "key without namespace",
        doc(allow(Condition={"StringEquals": {"username": "a"}})),
        "Statement[0].Condition.StringEquals: condition key 'username' must start with",
    ),
    (
        "empty value list",
        doc(allow(Condition={"StringEquals": {"aws:username": []}})),
        "Statement[0].Condition.StringEquals.aws:username: empty list",
    ),
    (
        "empty operator block",
        doc(allow(Condition={"StringEquals": {}})),
        "Statement[0].Condition.StringEquals: empty object",
    ),
    (
        "object as a condition value",
        doc(allow(Condition={"StringEquals": {"aws:username": {"a": 1}}})),
        "must be a string, number or boolean",
    ),
    (
        "keys differing only in case",
        doc(allow(Condition={"StringEquals": {"aws:username": "a", "AWS:USERNAME": "b"}})),
        "given twice",
    ),
    (
        "duplicate Sid",
        doc(allow(Sid="Same"), allow(Sid="Same")),
        "Statement[1].Sid: duplicate Sid 'Same'",
    ),
    ("Sid type", doc(allow(Sid=5)), "Statement[0].Sid: must be a string, not a number"),
]


@pytest.mark.parametrize(("case", "document", "message"), BAD, ids=[b[0] for b in BAD])
def test_malformed_documents_are_refused(case: str, document: Any, message: str) -> None:
    text = document if isinstance(document, str) else json.dumps(document)
    with pytest.raises(InvalidArgument) as info:
        Policy.from_json(text)
    assert message in str(info.value)


def test_unknown_operator_message_is_exact() -> None:
    document = doc(allow(), allow(), allow(Condition={"StringLikee": {"s3:prefix": "a"}}))
    with pytest.raises(InvalidArgument) as info:
        Policy.from_json(json.dumps(document))
    assert str(info.value).startswith("Statement[2].Condition: unknown operator 'StringLikee'")


def test_duplicate_json_keys_are_refused() -> None:
    text = (
        '{"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Effect": "Deny",'
        ' "Action": "*", "Resource": "*"}}'
    )
    with pytest.raises(InvalidArgument, match=r"Statement\[0\]: duplicate key 'Effect'"):
        Policy.from_json(text)


def test_bytes_and_single_statement_object() -> None:
    text = json.dumps({"Version": "2008-10-17", "Statement": allow(Sid="One")}).encode()
    policy = Policy.from_json(text, name="legacy")
    assert policy.name == "legacy" and policy.version == "2008-10-17"
    assert policy.statements == (
        Statement(effect="Allow", action=("cartfs:Read",), resource=("*",), sid="One"),
    )


def test_direct_construction_is_validated_too() -> None:
    with pytest.raises(InvalidArgument, match=r"Statement\[0\].Action\[0\]"):
        Policy((Statement(effect="Allow", action=("cartfs:Nope",), resource=("*",)),))
    with pytest.raises(InvalidArgument, match="policy name"):
        Policy((Statement(effect="Allow", action=("*",), resource=("*",)),), name="")
    with pytest.raises(InvalidArgument, match="Effect"):
        Policy((Statement(effect="Maybe", action=("*",), resource=("*",)),))  # type: ignore[arg-type]


ROUND_TRIP = [
    doc(allow()),
    doc(
        {
            "Sid": "Everything",
            "Effect": "Allow",
            "Action": ["s3:Get*", "s3:ListBucket", "cartfs:*"],
            "Resource": ["arn:aws:s3:::b/*", "arn:cartfs:::/home/${aws:username}/**"],
            "Condition": {
                "StringLike": {"s3:prefix": ["home/*", "public/*"]},
                "Bool": {"aws:SecureTransport": True},
                "NumericLessThanEquals": {"s3:max-keys": 1000},
                "ForAllValues:StringEquals": {"aws:TagKeys": ["a", "b"]},
                "IpAddressIfExists": {"AWS:SourceIp": ["10.0.0.0/8", "2001:db8::/32"]},
            },
        },
        {
            "Effect": "Deny",
            "NotAction": "cartfs:Read",
            "NotResource": "arn:cartfs:::/tmp/**",
            "Condition": {"Null": {"cartfs:snapshot": "false"}},
        },
        Id="policy-1",
    ),
    {"Version": "2008-10-17", "Statement": allow(Resource="arn:aws:s3:::b/${literal}")},
]


@pytest.mark.parametrize("document", ROUND_TRIP)
def test_round_trip(document: dict[str, Any]) -> None:
    policy = Policy.from_json(json.dumps(document), name="rt")
    again = Policy.from_json(policy.to_json(), name=policy.name)
    assert again == policy
    assert hash(again) == hash(policy)
    assert again.to_json() == policy.to_json()
    assert Policy.from_json(policy.to_json(indent=2), name="rt") == policy


def test_round_trip_without_name_uses_the_default() -> None:
    policy = Policy.from_json(json.dumps(doc(allow())))
    assert Policy.from_json(policy.to_json()) == policy


def test_to_json_is_canonical() -> None:
    policy = Policy.from_json(
        json.dumps(
            {
                "Statement": [
                    {"Resource": ["*"], "Action": "cartfs:Read", "Effect": "Allow", "Sid": "S"}
                ],
                "Version": "2012-10-17",
            }
        )
    )
    assert json.loads(policy.to_json()) == {
        "Version": "2012-10-17",
        "Statement": [{"Sid": "S", "Effect": "Allow", "Action": "cartfs:Read", "Resource": "*"}],
    }
    assert list(json.loads(policy.to_json())["Statement"][0]) == [
        "Sid",
        "Effect",
        "Action",
        "Resource",
    ]


def test_policy_is_immutable() -> None:
    policy = Policy.from_json(json.dumps(doc(allow())))
    with pytest.raises(AttributeError):
        policy.name = "other"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        policy.statements[0].effect = "Deny"  # type: ignore[misc]


def test_conditions_are_kept_as_written() -> None:
    policy = Policy.from_json(
        json.dumps(doc(allow(Condition={"NumericEquals": {"S3:Max-Keys": [10, 2.5]}})))
    )
    assert policy.statements[0].conditions == (
        Condition("NumericEquals", "S3:Max-Keys", ("10", "2.5")),
    )


def test_ten_statement_policy_evaluates_in_microseconds() -> None:
    statements = [
        allow(Sid=f"S{i}", Action=f"s3:Get{i}*", Resource=f"arn:aws:s3:::bucket{i}/*")
        for i in range(7)
    ]
    statements += [
        allow(
            Sid="Net",
            Action="cartfs:Write",
            Condition={"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}},
        ),
        {
            "Sid": "NoSecrets",
            "Effect": "Deny",
            "Action": "cartfs:*",
            "Resource": "arn:cartfs:::/**/secret/**",
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        },
        allow(Sid="Home", Action="cartfs:*", Resource="arn:cartfs:::/home/${aws:username}/**"),
    ]
    policy = Policy.from_json(json.dumps(doc(*statements)), name="ten")
    context = RequestContext(
        {"aws:username": "alice", "aws:SourceIp": "10.1.2.3", "aws:SecureTransport": "true"}
    )
    resource = archive_arn("/home/alice/projects/x/report.txt")
    assert evaluate([policy], "cartfs:Read", resource, context).sid == "Home"
    runs = 2000
    start = time.perf_counter()
    for _ in range(runs):
        evaluate([policy], "cartfs:Read", resource, context)
    per_call = (time.perf_counter() - start) / runs
    assert per_call < 200e-6, f"{per_call * 1e6:.1f} us per evaluation"


def test_absurdly_nested_json_is_refused_not_a_crash() -> None:
    with pytest.raises(InvalidArgument, match="nested too deeply"):
        Policy.from_json("[" * 100_000 + "]" * 100_000)
