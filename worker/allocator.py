"""Keep freed memory in the process instead of handing it back to the OS at once.

glibc serves every allocation over its mmap threshold (at most 32 MiB, usually far less) with
a fresh mmap and returns it with munmap on free, and trims the heap top eagerly. PyTorch on a
CPU allocates activations of tens of megabytes per layer per step and frees them moments
later, so a worker spends much of its time in the kernel mapping, zero-filling and unmapping
the same memory. Raising both thresholds makes freed blocks reusable: EfficientNet-Lite0's
features pass went from about 41 to 93 images/s on two cores, with kernel time from 6 s to
nothing (bench/image_throughput.py, "allocator"). The cost is that a process keeps its peak
heap until it exits — which a training child does after every job. The predict worker's
pool process lives on, so it hands freed memory back after each task (release_freed_memory)
and is replaced past a memory ceiling (worker/main.py).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger("tuneboard.worker")

M_TRIM_THRESHOLD = -1  # from glibc's malloc.h
M_MMAP_THRESHOLD = -3
THRESHOLD = 2**31 - 1  # an int; glibc takes "never" for anything this large


def keep_freed_memory() -> bool:
    """Tune glibc's malloc for this process (and the children it forks); False where the C
    library is not glibc, which is left alone."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    ok = bool(mallopt(M_MMAP_THRESHOLD, THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, THRESHOLD))
    if not ok:
        log.info("malloc tuning not applied; this C library refused it")
    return ok


def release_freed_memory() -> bool:
    """Hand the freed parts of the heap back to the OS (glibc's malloc_trim): what a
    long-lived process calls after a big allocation it will not soon repeat, since the tuning
    above otherwise keeps its peak. Milliseconds; False where the C library is not glibc."""
    name = ctypes.util.find_library("c")
    try:
        trim = ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        trim = None
    return bool(trim(0)) if trim is not None else False
