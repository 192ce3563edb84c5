"""Archive paths: canonicalisation, traversal attempts, and the glob matchers.

The invariant under test: no spelling of a path to Bob's files -- ``..``, ``//``, ``.``,
percent-escapes, relative paths -- can make it match ``arn:cartfs:::/home/alice/**``.
"""

from __future__ import annotations

import json
import re
import time
from urllib.parse import unquote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cartfs.core.errors import InvalidArgument
from cartfs.core.iam import Policy, archive_arn, canonical_archive_path, evaluate
from cartfs.core.iam.context import RequestContext
from cartfs.core.iam.patterns import Glob, PathGlob, split_segments, substitute, tokenize

ALICE_HOME = Policy.from_json(
    json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "AliceHome",
                    "Effect": "Allow",
                    "Action": "cartfs:*",
                    "Resource": "arn:cartfs:::/home/alice/**",
                },
                {
                    "Sid": "OwnHome",
                    "Effect": "Allow",
                    "Action": "cartfs:*",
                    "Resource": "arn:cartfs:::/home/${aws:username}/**",
                },
            ],
        }
    ),
    name="homes",
)

CANONICAL = [
    ("/", "/"),
    ("/a", "/a"),
    ("a/b", "/a/b"),
    ("//a///b//", "/a/b"),
    ("/a/./b/.", "/a/b"),
    ("/a/b/..", "/a"),
    ("/..", "/"),
    ("/../../a", "/a"),
    ("/a/../../../b", "/b"),
    ("/a/.../b", "/a/.../b"),
    ("/a/..b/c", "/a/..b/c"),
    ("/a/%2e%2e/b", "/a/%2e%2e/b"),
    ("/a%2Fb", "/a%2Fb"),
    ("/a\\..\\b", "/a\\..\\b"),
    (".", "/"),
]


@pytest.mark.parametrize(("raw", "canonical"), CANONICAL)
def test_canonical_archive_path(raw: str, canonical: str) -> None:
    assert canonical_archive_path(raw) == canonical
    assert canonical_archive_path(canonical) == canonical


@pytest.mark.parametrize("bad", ["", "/a\x00b", "\x00"])
def test_canonical_archive_path_rejects(bad: str) -> None:
    with pytest.raises(InvalidArgument):
        canonical_archive_path(bad)


# Spellings that, one way or another, point at Bob's files (or at /home itself).
TRAVERSALS = [
    "/home/alice/../bob/x",
    "/home/alice//../../home/bob/x",
    "/home/alice//../../bob",
    "/home/alice/./../bob/x",
    "/home/alice/..",
    "/home/alice/../",
    "/home/alice/../.",
    "/home/bob/.",
    "/home/bob/x/.",
    "/../home/bob",
    "/home/alice/../../../../home/bob/x",
    "home/alice/../bob/x",
    "/home/alice/%2e%2e/../../bob/x",
    "/home/alice%2F..%2Fbob/x",
    "/home/alice%2f%2e%2e%2fbob",
    "/home/alice/%2e%2e%2fbob",
    "/home/alice/..%2fbob",
    "/home/alicebob/x",
    "/home/alice.bob/x",
    "/home/ALICE/x",
    "/home/alice\x2f../bob",
]


@pytest.mark.parametrize("raw", TRAVERSALS)
@pytest.mark.parametrize("decode", [False, True], ids=["as-given", "url-decoded"])
def test_traversal_never_reaches_bob_through_alice_pattern(raw: str, decode: bool) -> None:
    path = canonical_archive_path(unquote(raw) if decode else raw)
    resource = archive_arn(path)
    inside_alice = path == "/home/alice" or path.startswith("/home/alice/")
    decision = evaluate([ALICE_HOME], "cartfs:Read", resource, {"aws:username": "mallory"})
    # The only way to be allowed is to really be inside /home/alice after canonicalisation.
    assert decision.allowed == inside_alice
    if not path.startswith("/home/alice/"):
        assert not decision.allowed
    if path.startswith("/home/bob") or path == "/home":
        assert not decision.allowed


def test_percent_escapes_stay_literal_and_stay_inside_alice() -> None:
    # '%2e%2e' is a file *named* '%2e%2e' in Alice's home; the adapter decodes URLs first.
    path = canonical_archive_path("/home/alice/%2e%2e/bob")
    assert path == "/home/alice/%2e%2e/bob"
    assert evaluate([ALICE_HOME], "cartfs:Read", archive_arn(path), {}).allowed
    decoded = canonical_archive_path(unquote("/home/alice/%2e%2e/bob"))
    assert decoded == "/home/bob"
    assert not evaluate([ALICE_HOME], "cartfs:Read", archive_arn(decoded), {}).allowed


@pytest.mark.parametrize(
    "raw", ["/home/alice/../bob/x", "/home/alice//x", "/home/alice/./x", "/home/alice/x/"]
)
def test_non_canonical_resources_are_refused_not_matched(raw: str) -> None:
    with pytest.raises(InvalidArgument, match="not canonical"):
        evaluate([ALICE_HOME], "cartfs:Read", "arn:cartfs:::" + raw, {})


@pytest.mark.parametrize(
    "username", ["alice/../bob", "../bob", "..", ".", "", "bob/..", "*", "**", "?ob", "b*"]
)
def test_hostile_usernames_never_reach_bob(username: str) -> None:
    decision = evaluate(
        [ALICE_HOME], "cartfs:Read", archive_arn("/home/bob/x"), {"aws:username": username}
    )
    assert not decision.allowed


def test_default_value_with_slash_never_matches() -> None:
    segments = split_segments(tokenize("/home/${aws:username, 'alice/x'}/**", variables=True))
    resolved = tuple(substitute(s, RequestContext()) for s in segments)
    assert all(s is not None for s in resolved)
    glob = PathGlob([s for s in resolved if s is not None])
    assert not glob.match("/home/alice/x")
    assert not glob.match("/home/alice/x/y")


# --- property tests ---------------------------------------------------------------------

NAMES = st.sampled_from(["a", "b", "ab", "a.", ".a", "...", "%2F", "%2e%2e", "*", "?", "a b"])
CANONICAL_PATHS = st.lists(NAMES, max_size=6).map(lambda names: "/" + "/".join(names))
RAW_NAMES = st.sampled_from(["a", "b", "ab", ".", "..", "", "%2e", "*"])
RAW_PATHS = st.lists(RAW_NAMES, max_size=8).map("/".join)


@settings(max_examples=300, deadline=None)
@given(CANONICAL_PATHS)
def test_double_star_matches_exactly_the_subtree(path: str) -> None:
    assert canonical_archive_path(path) == path
    policy = Policy.from_json(
        json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": {"Effect": "Allow", "Action": "*", "Resource": "arn:cartfs:::/a/**"},
            }
        )
    )
    expected = path == "/a" or path.startswith("/a/")
    assert evaluate([policy], "cartfs:Read", archive_arn(path), {}).allowed == expected


@settings(max_examples=300, deadline=None)
@given(RAW_PATHS)
def test_canonicalisation_is_idempotent_and_clean(raw: str) -> None:
    if not raw:
        return
    path = canonical_archive_path(raw)
    assert path.startswith("/")
    assert canonical_archive_path(path) == path
    names = path.split("/")[1:] if path != "/" else []
    assert all(name not in ("", ".", "..") for name in names)


def _reference_path_regex(pattern: str) -> re.Pattern[str]:
    """Glob -> regex over ``"/" + "/".join(names)`` (root is the empty string)."""
    if pattern == "/":
        return re.compile("")
    parts = []
    for name in pattern[1:].split("/"):
        if name == "**":
            parts.append("(?:/[^/]+)*")
        else:
            body = "".join(
                "[^/]*" if c == "*" else "[^/]" if c == "?" else re.escape(c) for c in name
            )
            parts.append("/" + body)
    return re.compile("".join(parts))


PATTERN_NAMES = st.sampled_from(["a", "b", "*", "?", "a*", "*b", "a?", "**", "*a*"])


@settings(max_examples=400, deadline=None)
@given(
    st.lists(PATTERN_NAMES, max_size=5),
    st.lists(st.sampled_from(["a", "b", "ab", "ba", "aab"]), max_size=6),
)
def test_path_glob_agrees_with_reference(pattern_names: list[str], names: list[str]) -> None:
    pattern = "/" + "/".join(pattern_names)
    path = "/" + "/".join(names)
    glob = PathGlob(split_segments(tokenize(pattern, variables=False)))
    reference = _reference_path_regex(pattern)
    as_text = "" if path == "/" else path
    assert glob.match(path) == (reference.fullmatch(as_text) is not None), (pattern, path)


GLOB_CASES = [
    ("*ab*b", "aab", False),  # the middle chunk may not overlap the tail
    ("*ab*b", "abb", True),
    ("a*a", "a", False),  # head and tail may not overlap
    ("a*a", "aa", True),
    ("*", "", True),
    ("?*", "", False),
    ("a?c", "a/c", True),  # AWS '?' is any character, '/' included
    ("*/*", "a/b/c", True),
    ("*.jpg", "x.jpgx", False),
    ("a**b", "ab", True),
    ("", "", True),
    ("", "a", False),
]


@pytest.mark.parametrize(("pattern", "text", "expected"), GLOB_CASES)
def test_glob_cases(pattern: str, text: str, expected: bool) -> None:
    assert Glob.from_text(pattern).match(text) == expected


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet="ab*?/", max_size=8), st.text(alphabet="ab/", max_size=10))
def test_glob_agrees_with_reference(pattern: str, text: str) -> None:
    reference = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    expected = re.fullmatch(reference, text, re.DOTALL) is not None
    assert Glob.from_text(pattern).match(text) == expected, (pattern, text)


def test_pathological_patterns_stay_fast() -> None:
    glob = Glob.from_text("*a*a*a*a*a*a*a*a*a*a*b")
    path_glob = PathGlob(split_segments(tokenize("/**/a/**/a/**/a/**/a/**/b", variables=False)))
    text = "a" * 5000
    deep = "/" + "/".join(["a"] * 500)
    start = time.perf_counter()
    assert not glob.match(text)
    assert not path_glob.match(deep)
    assert time.perf_counter() - start < 0.5
