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

The price is that the process keeps its peak heap until it exits (peak RSS itself does not grow).
This is a process-wide change, so the library never makes it on import: `s5jax` (the CLI) calls
`configure_from_env()` at start, the benchmarks do the same, and library users may call
`keep_freed_memory()` themselves. `S5JAX_MALLOC=default` turns it off for the CLI. The same effect
without this module: start Python with `MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=18446744073709551615
MALLOC_ARENA_MAX=1` in the environment. On a C library other than glibc nothing is changed.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

from .errors import S5Error

MALLOC_ENV = "S5JAX_MALLOC"           # "keep" (default) | "default"
MALLOC_MODES = ("keep", "default")

# mallopt parameter numbers from glibc's <malloc.h>
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8


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
    return all(mallopt(param, value) == 1 for param, value in settings)


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
