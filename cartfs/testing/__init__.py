"""Test support shipped with cartfs: a fault-injecting device, a tree-state comparer and a
small conformance suite any Device backend runs (STYLE.md items 10 and 11).

Nothing here is used in production code paths; it lives in the package so that adapter test
suites (FUSE, VFS, S3) can reuse it.
"""

from .faults import FaultyDevice, PowerLoss
from .tree import EntryState, diff_states, state_digest, tree_state

__all__ = ["EntryState", "FaultyDevice", "PowerLoss", "diff_states", "state_digest",
           "tree_state"]
