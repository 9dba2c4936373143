"""Process-level settings for running the models fast on CPU (opt-in, set by a program's entry point).

XLA's CPU runtime allocates every activation buffer with malloc and frees it after the call. glibc
serves blocks above its mmap threshold (at most 32 MB) with fresh mmap()s and returns them with
munmap(), and trims the heap top back to the kernel: each call of the full-size separator then
touches hundreds of thousands of fresh pages (one minor page fault per 4 KB page, zeroed by the
kernel), and a bigger batch pays more of them per clip. `keep_freed_memory()` tells glibc to keep
what it frees and reuse it instead:

    M_MMAP_MAX = 0          no mmap-backed blocks: large buffers come from the heap and are reused
    M_TRIM_THRESHOLD = -1   never give the heap top back to the kernel (glibc stores it as size_t:
                            SIZE_MAX; a finite threshold such as 2 GB is crossed by the separator's
                            free heap top after a call, and the next call faults it all in again)
    M_ARENA_MAX = 1         one heap for all threads (XLA's worker threads allocate too)

The price is a heap that fragments: it holds blocks of many sizes (XLA's buffer of a program's
intermediates, 678 MB for the full-size separator on a 10 s clip, and the convolution library's own
buffers, 34-264 MB), small blocks split the free holes, and a large block that fits no hole grows the
heap. Over a loop of same-shape calls the process's memory then climbs in steps: the separator alone
on 10 s clips from 1.4 GB to 2.5-3.9 GB within 20 calls. `HeapGuard.after_call()`, called once a
call's buffers are freed, stops that: when the heap grew since the last check, it hands the free pages
inside the heap back to the kernel (`malloc_trim`, the heap top kept), so the next call faults in only
what it reuses and later calls none; the same loop then stays at 1.4-2.0 GB, at most a few per cent
slower (the calls after a release fault their pages in again). The
programs (`infer`, the cache, training) call it after every batch.

This is a process-wide change, so the library never makes it on import: `s5jax` (the CLI) calls
`configure_from_env()` at start, the benchmarks do the same, and library users may call
`keep_freed_memory()` themselves (and `HeapGuard().after_call()` in their loops). `S5JAX_MALLOC=default`
turns it off for the CLI. The same allocator setting without this module: start Python with
`MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=18446744073709551615 MALLOC_ARENA_MAX=1` in the environment
(then `HeapGuard(active=True)`). On a C library other than glibc nothing is changed.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

from ..errors import S5Error

MALLOC_ENV = "S5JAX_MALLOC"           # "keep" (default) | "default"
MALLOC_MODES = ("keep", "default")

# mallopt parameter numbers from glibc's <malloc.h>
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8

# whether keep_freed_memory() has changed this process's allocator: the setting is process-wide, so
# is the record of it (read by HeapGuard; nothing else is kept at module level)
_KEEPING = {"on": False}


class _MallInfo2(ctypes.Structure):
    """glibc's struct mallinfo2 (2.33+): byte counts as size_t."""
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
                 "fordblks", "keepcost")]


def _libc():
    """glibc as a ctypes library, or None elsewhere (musl, macOS, Windows)."""
    if platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def keep_freed_memory() -> bool:
    """Make glibc keep and reuse freed memory (see the module docstring). Call it before the models
    run; blocks allocated earlier keep their old treatment. Returns True if every setting took."""
    libc = _libc()
    if libc is None or not hasattr(libc, "mallopt"):
        return False
    mallopt = libc.mallopt
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    settings = ((_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, -1), (_M_ARENA_MAX, 1))
    ok = all(mallopt(param, value) == 1 for param, value in settings)
    _KEEPING["on"] = _KEEPING["on"] or ok
    return ok


class HeapGuard:
    """Keeps a kept heap from growing with fragmentation over a loop of calls (module docstring).

    `after_call()` once a call's results are on the host (its buffers freed): if glibc's heap grew
    since the last check, the free pages inside it go back to the kernel, the heap top (what the next
    large block is carved from) stays. Returns whether it released. Inactive (every call a no-op) where
    freed memory is not being kept: without `keep_freed_memory()` in this process (unless
    `active=True`) or off glibc. A guard per loop; not shared between threads.
    """

    def __init__(self, active: bool | None = None):
        libc = _libc()
        on = _KEEPING["on"] if active is None else active
        self._libc = libc if on and libc is not None and hasattr(libc, "mallinfo2") else None
        if self._libc is not None:
            self._libc.mallinfo2.restype = _MallInfo2
            self._libc.malloc_trim.argtypes = (ctypes.c_size_t,)
            self._libc.malloc_trim.restype = ctypes.c_int
        self._heap = 0
        self.releases = 0

    @property
    def active(self) -> bool:
        return self._libc is not None

    def after_call(self) -> bool:
        if self._libc is None:
            return False
        heap = self._libc.mallinfo2().arena            # bytes the main heap spans (sbrk)
        if heap <= self._heap:
            return False
        self._heap = heap
        # a pad larger than the heap: glibc then trims no top, only the pages inside free chunks
        self._libc.malloc_trim(1 << 62)
        self.releases += 1
        return True


def configure_from_env(environ=None) -> str:
    """What a program entry point calls: apply `$S5JAX_MALLOC` ("keep" unless set to "default").
    Returns the mode applied. An unknown value is an S5Error naming the variable."""
    environ = os.environ if environ is None else environ
    mode = environ.get(MALLOC_ENV, "keep").strip().lower() or "keep"
    if mode not in MALLOC_MODES:
        raise S5Error(f"{MALLOC_ENV}={mode!r}: expected one of {', '.join(MALLOC_MODES)}")
    if mode == "keep":
        keep_freed_memory()
    return mode
