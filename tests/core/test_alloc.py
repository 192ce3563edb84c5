"""The hybrid allocator against a model of page ownership (hypothesis stateful).

The model knows, for every page, whether it is owned (allocated and not freed), pending
(freed in transaction T, not reusable until T is durable and no reader that started at or
before T still runs), dead (held for a snapshot) or free. The allocator must never hand out a
page that is not free in the model, its accounting must always add up to the file size, and
its encoded state must decode to the same free set — with pending runs free, since the state
is written as it will be once the commit is durable.
"""

from __future__ import annotations

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from cartfs.core.alloc import GROUP_PAGES, Allocator
from cartfs.core.errors import CorruptArchive, NoSpace
from cartfs.core.format import FIRST_DATA_PAGE

Run = tuple[int, int]


def pages(run: Run) -> set[int]:
    return set(range(run[0], run[0] + run[1]))


class AllocMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.alloc = Allocator.fresh(FIRST_DATA_PAGE + 40)
        self.txid = 1
        self.owned: dict[int, tuple[int, int]] = {}  # start -> (n, birth)
        self.fresh: set[int] = set()  # starts allocated in the open transaction
        self.pending: dict[int, list[Run]] = {}  # txid -> runs freed then
        self.dead: set[int] = set()
        self.holds: list[int] = []  # txids of running readers
        self.busy: set[int] = set()  # owned, pending and dead pages

    # ---- allocation ---------------------------------------------------------------------

    def _allocate(self, n: int) -> None:
        start = self.alloc.allocate(n)
        new = pages((start, n))
        assert start >= FIRST_DATA_PAGE and start + n <= self.alloc.total_pages
        assert not new & self.busy, f"allocated {start}+{n} over pages in use"
        self.busy |= new
        self.owned[start] = (n, self.txid)
        self.fresh.add(start)

    @rule(n=st.sampled_from([1, 1, 1, 1, 2, 3, 8, 17, GROUP_PAGES, 300]))
    def allocate(self, n: int) -> None:
        self._allocate(n)

    @rule(count=st.integers(1, 150))
    def allocate_singles(self, count: int) -> None:
        """Many single pages: fills and opens bitmap groups."""
        for _ in range(count):
            self._allocate(1)

    @rule(n=st.integers(1, 200))
    def reserve_then_allocate(self, n: int) -> None:
        """After reserve(n), n pages can be had without growing the file."""
        self.alloc.reserve(n)
        growths = self.alloc.statistics().growths
        for _ in range(n):
            self._allocate(1)
        assert self.alloc.statistics().growths == growths

    # ---- freeing ------------------------------------------------------------------------

    @precondition(lambda self: self.owned)
    @rule(data=st.data(), shared=st.booleans())
    def free(self, data: st.DataObject, shared: bool) -> None:
        start = data.draw(st.sampled_from(sorted(self.owned)))
        n, birth = self.owned.pop(start)
        self.fresh.discard(start)
        self.alloc.free(start, n, birth, self.txid, shared=shared)
        if shared and birth <= self.alloc.snapshot_horizon:
            self.dead |= pages((start, n))
        else:
            self.pending.setdefault(self.txid, []).append((start, n))

    @precondition(lambda self: self.fresh)
    @rule(data=st.data())
    def free_now(self, data: st.DataObject) -> None:
        """Pages never committed may be returned at once."""
        start = data.draw(st.sampled_from(sorted(self.fresh)))
        self.fresh.discard(start)
        n, _ = self.owned.pop(start)
        self.alloc.free_now(start, n)
        self.busy -= pages((start, n))

    @precondition(lambda self: self.owned)
    @rule(data=st.data())
    def double_free_is_refused(self, data: st.DataObject) -> None:
        """free_now of a page that is already free is caught, not silently accepted."""
        free = [s for s, n in self.alloc.iter_free()]
        if free:
            with pytest.raises(CorruptArchive):
                self.alloc.free_now(data.draw(st.sampled_from(free)), 1)

    # ---- transactions, readers, snapshots -----------------------------------------------

    @rule()
    def commit(self) -> None:
        self.alloc.release(self.txid)
        oldest = min(self.holds, default=None)
        for txid in sorted(self.pending):
            if oldest is not None and txid >= oldest:
                break
            for run in self.pending.pop(txid):
                self.busy -= pages(run)
        self.fresh.clear()
        self.txid += 1

    @rule()
    def reader_starts(self) -> None:
        self.alloc.hold(self.txid)
        self.holds.append(self.txid)

    @precondition(lambda self: self.holds)
    @rule(data=st.data())
    def reader_ends(self, data: st.DataObject) -> None:
        txid = data.draw(st.sampled_from(self.holds))
        self.holds.remove(txid)
        self.alloc.unhold(txid)

    @rule()
    def snapshot(self) -> None:
        """A snapshot of the last commit: pages born up to it become shared."""
        self.alloc.snapshot_horizon = self.txid - 1

    @rule()
    def encode_decode(self) -> None:
        """The encoded state decodes to the same free set, pending included as free."""
        data = self.alloc.encode()
        back = Allocator.decode(data)
        expected = {p for s, n in self.alloc.iter_free() for p in range(s, s + n)}
        expected |= {p for s, n in self.alloc.iter_pending() for p in range(s, s + n)}
        assert {p for s, n in back.iter_free() for p in range(s, s + n)} == expected
        assert back.total_pages == self.alloc.total_pages
        assert sorted(s for s, _ in back.dead_entries()) == sorted(
            s for s, _ in self.alloc.dead_entries())
        assert back.encode() == Allocator.decode(back.encode()).encode()

    # ---- invariants -----------------------------------------------------------------------

    @invariant()
    def accounting_adds_up(self) -> None:
        total = self.alloc.total_pages
        free = [p for s, n in self.alloc.iter_free() for p in range(s, s + n)]
        pending = [p for s, n in self.alloc.iter_pending() for p in range(s, s + n)]
        owned = [p for s, (n, _) in self.owned.items() for p in range(s, s + n)]
        dead = [p for s, n in self.alloc.dead_entries() for p in range(s, s + n)]
        every = free + pending + owned + dead + list(range(FIRST_DATA_PAGE))
        assert len(every) == len(set(every)) == total, "pages lost or in two states at once"
        assert set(dead) == self.dead
        stats = self.alloc.statistics()
        assert stats.free_pages == len(free) == self.alloc.free_page_count()
        assert stats.used_pages == len(owned)


AllocMachine.TestCase.settings = settings(
    max_examples=80, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
TestAllocatorModel = AllocMachine.TestCase


def test_growth_failure_changes_nothing() -> None:
    """When the disk is full, growing raises NoSpace before any state changes."""
    def refuse(_pages: int) -> None:
        raise NoSpace("disk full")

    alloc = Allocator.fresh(FIRST_DATA_PAGE + 10, refuse)
    before = alloc.encode()
    with pytest.raises(NoSpace):
        alloc.allocate(50)
    with pytest.raises(NoSpace):
        alloc.reserve(100)
    assert alloc.encode() == before
    assert alloc.allocate(10) == FIRST_DATA_PAGE


def test_vacuum_support_truncates_only_free_tail() -> None:
    alloc = Allocator.fresh(FIRST_DATA_PAGE + 100)
    start = alloc.allocate(30)
    assert alloc.highest_used_page() == start + 29
    with pytest.raises(ValueError):
        alloc.truncate_to(start + 29)
    alloc.truncate_to(start + 30)
    assert alloc.total_pages == start + 30
    assert alloc.free_page_count() == 0
