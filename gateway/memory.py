"""Resident memory of a long-running process: glibc keeps freed heap memory unless told otherwise."""

from __future__ import annotations

import contextlib
import ctypes
import gc
import threading
from concurrent.futures import ThreadPoolExecutor

# glibc mallopt parameters and our values for them.
M_MMAP_THRESHOLD, MMAP_THRESHOLD = -3, 128 * 1024
M_ARENA_MAX, MALLOC_ARENAS = -8, 2


def limit_malloc_arenas() -> None:
    """Keep glibc from holding on to freed memory; called before the gateway starts its threads.

    In the soak, resident memory grew for minutes without a single Python object more: each
    thread may get a heap arena of its own that keeps its freed memory, and glibc raises its mmap
    threshold after every freed large block (a response body), so later large blocks fragment
    the heap instead of going back to the system when freed.
    """
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to do
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(M_ARENA_MAX, MALLOC_ARENAS)
        libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)


def prestart_threads(executor: ThreadPoolExecutor, count: int) -> None:
    """Start all of the pool's threads now rather than on the first overlapping slow fetches."""
    barrier = threading.Barrier(count + 1)
    for _ in range(count):
        executor.submit(barrier.wait, 5)
    with contextlib.suppress(threading.BrokenBarrierError):
        barrier.wait(5)


def trim_heap() -> None:
    """Return free heap pages to the system (glibc keeps them otherwise)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def release_startup_memory() -> None:
    """Give the memory of start-up transients (config parsing, the first discovery burst) back.

    glibc keeps freed heap memory for reuse; a long-running gateway would otherwise carry its
    start-up peak as resident memory forever.
    """
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # not glibc (musl, macOS): nothing to do
        ctypes.CDLL("libc.so.6").malloc_trim(0)
