"""s5jax.runtime.memory: glibc keeps freed memory when asked (fewer page faults on reused buffers), only then."""
import json
import os
import platform
import subprocess
import sys

import pytest

from s5jax.runtime import memory as runtime
from s5jax.errors import S5Error

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# malloc, touch and free a 64 MB buffer 5 times, as XLA does with an activation buffer (plain malloc:
# numpy would ask for huge pages); print the minor page faults of each round after the first (the
# first always faults: the memory is new to the process)
_ROUNDS = r"""
import ctypes, resource
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = (ctypes.c_void_p,)
faults = []
for _ in range(5):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    p = libc.malloc(64 * 2 ** 20)
    ctypes.memset(p, 1, 64 * 2 ** 20)
    libc.free(p)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""
_PROBE = ("import json\nfrom s5jax.runtime import memory as runtime\nmode = runtime.configure_from_env()\n" + _ROUNDS +
          "print(json.dumps({'mode': mode, 'faults': faults[1:]}))")


def _python(code: str, *args: str, **env: str) -> str:
    """stdout of `code` run in a fresh Python process (the allocator setting is process-wide)."""
    return subprocess.run([sys.executable, "-c", code, *args], env=dict(os.environ, PYTHONPATH=ROOT, **env),
                          capture_output=True, text=True, check=True).stdout


def _probe(mode: str) -> dict:
    return json.loads(_python(_PROBE, S5JAX_MALLOC=mode))


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the setting is glibc's")
def test_keep_reuses_freed_buffers():
    default, keep = _probe("default"), _probe("keep")
    assert default["mode"] == "default" and keep["mode"] == "keep"
    # 64 MB = 16384 pages of 4 KB: glibc's default mmaps and munmaps the buffer every time
    assert min(default["faults"]) > 10000, default
    assert max(keep["faults"]) < 500, keep


def test_unknown_mode_is_one_line_error():
    with pytest.raises(S5Error, match="S5JAX_MALLOC='fast'"):
        runtime.configure_from_env({"S5JAX_MALLOC": "fast"})
    assert runtime.configure_from_env({"S5JAX_MALLOC": "Default"}) == "default"


def test_import_does_not_change_malloc():
    """`import s5jax` (and its models) must not make the process-wide change on its own."""
    code = "import s5jax, s5jax.separator, s5jax.tagger\n" + _ROUNDS + "print(min(faults[1:]))"
    if platform.libc_ver()[0] != "glibc":
        pytest.skip("the setting is glibc's")
    assert int(_python(code)) > 10000


# a fragmenting loop: each round a large block a little bigger than the last (no free hole fits it),
# touched, then a block that outlives the round (128 MB, never touched: it costs no memory, but no
# hole fits it either, so it comes from the heap top and keeps the freed large block a hole below it);
# then rounds of one fixed size without the pin (steady state). Prints RSS growth and the releases.
_FRAGMENT = r"""
import ctypes, json, resource, sys
from s5jax.runtime import memory as runtime
use_guard = sys.argv[1] == "guard"
kept = runtime.keep_freed_memory()
guard = runtime.HeapGuard()
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = (ctypes.c_size_t,)
libc.free.argtypes = (ctypes.c_void_p,)
def rss_mb():
    with open("/proc/self/status") as f:
        return int(next(l for l in f if l.startswith("VmRSS")).split()[1]) // 1024
MB = 2 ** 20
pins, start = [], rss_mb()
def round_(size, pin=True):
    p = libc.malloc(size)
    ctypes.memset(p, 1, size)
    if pin:
        pins.append(libc.malloc(128 * MB))
    libc.free(p)
    return guard.after_call() if use_guard else False
for i in range(8):
    round_((64 + i) * MB)
grown = rss_mb() - start
releases = guard.releases
faults = []
for _ in range(4):
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    round_(70 * MB, pin=False)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
print(json.dumps({"kept": kept, "active": guard.active, "grown_mb": grown, "releases": releases,
                  "steady_releases": guard.releases - releases, "steady_faults": faults[1:],
                  "idle": runtime.HeapGuard(active=False).after_call()}))
"""


def _fragment(mode: str) -> dict:
    return json.loads(_python(_FRAGMENT, mode))


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the setting is glibc's")
def test_heap_guard_stops_fragmentation_growth():
    """Kept memory with holes no later block fits grows by a block per round (8 x 64+ MB); the guard
    hands the holes' pages back when the heap grows, and once the heap stops growing it does nothing
    (no releases, no page faults per round)."""
    bare, guarded = _fragment("bare"), _fragment("guard")
    assert bare["kept"] and guarded["kept"] and guarded["active"]
    assert bare["grown_mb"] > 400, bare
    assert guarded["grown_mb"] < 160, guarded
    assert guarded["releases"] >= 7, guarded
    assert guarded["steady_releases"] == 0 and max(guarded["steady_faults"]) < 500, guarded
    assert guarded["idle"] is False


def test_heap_guard_is_idle_without_kept_memory():
    """In a process whose allocator was not changed, a guard does nothing (a fresh process: tests that
    run the CLI in-process make the change in a pytest worker)."""
    code = ("import json\nfrom s5jax.runtime import memory as runtime\ng = runtime.HeapGuard()\n"
            "print(json.dumps([g.active, g.after_call(), g.releases]))")
    assert json.loads(_python(code)) == [False, False, 0]


def test_runtime_is_reachable_from_the_package():
    """README's Python API calls s5jax.runtime.memory.keep_freed_memory() after a bare `import s5jax`."""
    import s5jax

    assert s5jax.runtime.memory is runtime and callable(s5jax.runtime.memory.HeapGuard)
