"""A bounded decision cache that can never outlive a policy change.

The store keeps a *generation* number that it bumps on every policy change (attach,
detach, edit). Every lookup passes the current generation; an entry is returned only if it
was stored under that same generation, and the first access with a newer generation drops
everything. A decision computed under an older generation and stored late (a racing
thread) is ignored, so the cache cannot be re-poisoned with a stale answer.

Eviction is least-recently-used. The cache holds a lock; all operations are O(1).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass

from cartfs.core.iam.actions import check_request_action
from cartfs.core.iam.context import ContextInput, RequestContext
from cartfs.core.iam.evaluate import Decision

__all__ = ["DecisionCache", "DecisionCacheStatistics", "decision_key"]


@dataclass(frozen=True, slots=True)
class DecisionCacheStatistics:
    """Counters of a :class:`DecisionCache`."""

    size: int
    maxsize: int
    generation: int
    hits: int
    misses: int
    evictions: int
    invalidations: int


def decision_key(
    principal: str, action: str, resource: str, context: RequestContext | ContextInput | None
) -> Hashable:
    """A cache key covering everything a decision depends on besides the policies.

    The whole context is part of the key, so a request whose context changes (another
    source IP, another time) never reuses a decision; leave volatile keys out of the
    context of cacheable requests, or do not cache them.
    """
    return (principal, check_request_action(action), resource, RequestContext.of(context).items())


class DecisionCache:
    """``get(key, generation)`` / ``put(key, generation, decision)``, bounded, LRU."""

    def __init__(self, maxsize: int = 4096) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self._maxsize = maxsize
        self._entries: OrderedDict[Hashable, Decision] = OrderedDict()
        self._generation = 0
        self._lock = threading.Lock()
        self._hits = self._misses = self._evictions = self._invalidations = 0

    def _advance(self, generation: int) -> None:
        """Adopt a newer generation, dropping every entry (lock held)."""
        if generation > self._generation:
            if self._entries:
                self._invalidations += 1
            self._entries.clear()
            self._generation = generation

    def get(self, key: Hashable, generation: int) -> Decision | None:
        """The cached decision, or ``None`` -- always ``None`` if the generation differs."""
        with self._lock:
            self._advance(generation)
            decision = self._entries.get(key) if generation == self._generation else None
            if decision is None:
                self._misses += 1
                return None
            self._entries.move_to_end(key)
            self._hits += 1
            return decision

    def put(self, key: Hashable, generation: int, decision: Decision) -> None:
        """Remember a decision computed under ``generation`` (ignored if that is stale)."""
        with self._lock:
            self._advance(generation)
            if generation != self._generation:
                return
            self._entries[key] = decision
            self._entries.move_to_end(key)
            while len(self._entries) > self._maxsize:
                self._entries.popitem(last=False)
                self._evictions += 1

    def clear(self) -> None:
        """Drop every entry (the generation is kept)."""
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)

    def statistics(self) -> DecisionCacheStatistics:
        """A snapshot of the counters."""
        with self._lock:
            return DecisionCacheStatistics(
                size=len(self._entries),
                maxsize=self._maxsize,
                generation=self._generation,
                hits=self._hits,
                misses=self._misses,
                evictions=self._evictions,
                invalidations=self._invalidations,
            )
