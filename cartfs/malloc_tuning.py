"""Keep glibc from handing freed buffers back to the kernel between requests.

cartfs moves data in 64 KiB to 1 MiB buffers. With glibc's defaults, large frees above the
trim threshold return memory to the kernel and the next allocation faults it back in, which
measured at 4-6 times the cost of the copy itself (see fuse-notes.md). Our own long-running
processes — the FUSE daemon, the CLI, the benchmarks — raise the trim and mmap thresholds once
at start-up. The library never does this behind an application's back.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3

log = logging.getLogger(__name__)


def tune_malloc(trim_bytes: int = 256 << 20, mmap_bytes: int = 32 << 20) -> bool:
    """Raise glibc's trim/mmap thresholds; returns False (and does nothing) off glibc."""
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    ok = bool(mallopt(M_TRIM_THRESHOLD, trim_bytes)) and bool(mallopt(M_MMAP_THRESHOLD,
                                                                        mmap_bytes))
    log.debug("malloc thresholds tuned: %s", ok)
    return ok
