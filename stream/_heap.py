"""Keep a long-running service's resident memory to what it holds, not what it once held (glibc).

A take allocates and frees arrays of many sizes (its columns, a day's funnel that grows with every
flush). glibc raises its mmap threshold to the largest block freed so far, so after the first large
array most of them come from the heap, and freed heap memory stays resident for reuse: a worker's
memory then grows through a long run although what it holds does not. A fixed threshold keeps large
arrays in mmap, whose pages go back to the system when freed; `malloc_trim` returns the free pages
inside the heap. Where the C library is not glibc, both do nothing.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util

_M_MMAP_THRESHOLD = -3  # mallopt's parameter, from glibc's malloc.h
_MMAP_THRESHOLD = 256 << 10  # blocks this large or larger are mapped, and unmapped when freed


def _glibc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


_LIBC = _glibc()


def fix_mmap_threshold() -> None:
    """Map large blocks however large the blocks freed before them were (at start)."""
    if _LIBC is not None:
        _LIBC.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)


async def return_free_memory() -> None:
    """Give the heap's free pages back. In a thread: on a large heap it takes tens of milliseconds,
    and ctypes releases the GIL while it runs."""
    if _LIBC is not None:
        await asyncio.to_thread(_LIBC.malloc_trim, 0)
