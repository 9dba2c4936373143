"""s5jax.runtime: glibc keeps freed memory when asked (fewer page faults on reused buffers), only then."""
import json
import os
import platform
import subprocess
import sys

import pytest

from s5jax import runtime
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
_PROBE = ("import json\nfrom s5jax import runtime\nmode = runtime.configure_from_env()\n" + _ROUNDS +
          "print(json.dumps({'mode': mode, 'faults': faults[1:]}))")


def _probe(mode: str) -> dict:
    env = dict(os.environ, S5JAX_MALLOC=mode, PYTHONPATH=ROOT)
    out = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


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
    out = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, PYTHONPATH=ROOT),
                         capture_output=True, text=True, check=True)
    assert int(out.stdout) > 10000
