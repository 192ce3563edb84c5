"""DecisionCache: a cached decision never survives a policy change."""

from __future__ import annotations

import json

import pytest

from cartfs.core.iam import (
    Decision,
    DecisionCache,
    Policy,
    archive_arn,
    decision_key,
    evaluate,
)

RESOURCE = archive_arn("/docs/a.txt")


def _policy(effect: str) -> Policy:
    document = {
        "Version": "2012-10-17",
        "Statement": [{"Sid": effect, "Effect": effect, "Action": "cartfs:*", "Resource": "*"}],
    }
    return Policy.from_json(json.dumps(document), name="p")


class FakeStore:
    """The shape of the archive's policy store: a generation bumped on every change."""

    def __init__(self) -> None:
        self.policies: list[Policy] = []
        self.generation = 0
        self.cache = DecisionCache(maxsize=16)
        self.evaluations = 0

    def set_policies(self, policies: list[Policy]) -> None:
        self.policies = policies
        self.generation += 1

    def check(self, principal: str, action: str, resource: str) -> Decision:
        key = decision_key(principal, action, resource, {"aws:username": principal})
        cached = self.cache.get(key, self.generation)
        if cached is not None:
            return cached
        self.evaluations += 1
        decision = evaluate(self.policies, action, resource, {"aws:username": principal})
        self.cache.put(key, self.generation, decision)
        return decision


def test_cached_decision_does_not_survive_a_policy_change() -> None:
    store = FakeStore()
    store.set_policies([_policy("Allow")])
    assert store.check("alice", "cartfs:Read", RESOURCE).allowed
    assert store.check("alice", "cartfs:Read", RESOURCE).allowed
    assert store.evaluations == 1  # second answer came from the cache
    store.set_policies([_policy("Allow"), _policy("Deny")])
    decision = store.check("alice", "cartfs:Read", RESOURCE)
    assert not decision.allowed and decision.effect == "Deny"
    assert store.evaluations == 2
    store.set_policies([])
    assert store.check("alice", "cartfs:Read", RESOURCE).effect == "ImplicitDeny"


def test_get_misses_whenever_generation_differs() -> None:
    cache = DecisionCache()
    decision = evaluate([_policy("Allow")], "cartfs:Read", RESOURCE, {})
    cache.put("k", 1, decision)
    assert cache.get("k", 1) is decision
    assert cache.get("k", 2) is None
    assert cache.get("k", 1) is None  # the old generation is gone for good
    assert len(cache) == 0
    cache.put("k", 3, decision)
    assert cache.get("k", 2) is None  # a reader still on an older generation never hits
    assert cache.get("k", 3) is decision


def test_stale_put_is_ignored() -> None:
    cache = DecisionCache()
    allow = evaluate([_policy("Allow")], "cartfs:Read", RESOURCE, {})
    cache.get("k", 5)  # the store has moved on to generation 5
    cache.put("k", 4, allow)  # a slow thread finishes a decision made under generation 4
    assert cache.get("k", 5) is None
    assert cache.get("k", 4) is None


def test_bounded_lru() -> None:
    cache = DecisionCache(maxsize=3)
    decision = evaluate([], "cartfs:Read", RESOURCE, {})
    for key in "abc":
        cache.put(key, 0, decision)
    assert cache.get("a", 0) is decision  # 'a' is now the most recent
    cache.put("d", 0, decision)
    assert cache.get("b", 0) is None  # least recently used was evicted
    assert {k for k in "acd" if cache.get(k, 0) is decision} == {"a", "c", "d"}
    stats = cache.statistics()
    assert stats.size == 3 and stats.maxsize == 3 and stats.evictions == 1
    assert stats.hits == 4 and stats.misses == 1


def test_statistics_count_invalidations() -> None:
    cache = DecisionCache()
    decision = evaluate([], "cartfs:Read", RESOURCE, {})
    cache.put("a", 1, decision)
    cache.put("b", 2, decision)
    stats = cache.statistics()
    assert stats.generation == 2 and stats.invalidations == 1 and stats.size == 1


def test_decision_key_covers_context_and_folds_action_case() -> None:
    one = decision_key("alice", "cartfs:Read", RESOURCE, {"aws:SourceIp": "10.0.0.1"})
    assert one == decision_key("alice", "CARTFS:READ", RESOURCE, {"AWS:SOURCEIP": "10.0.0.1"})
    assert one != decision_key("alice", "cartfs:Read", RESOURCE, {"aws:SourceIp": "10.0.0.2"})
    assert one != decision_key("bob", "cartfs:Read", RESOURCE, {"aws:SourceIp": "10.0.0.1"})
    hash(one)


def test_maxsize_must_be_positive() -> None:
    with pytest.raises(ValueError):
        DecisionCache(maxsize=0)
