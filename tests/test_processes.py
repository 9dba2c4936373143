"""s5jax.runtime.processes: the barrier after each process's share waits for a process that arrives much later.

`multihost_utils.sync_global_devices` (the barrier before) builds a gloo context on CPU, and that
build gives up after 30 s: an infer job whose two processes finished their shares 30 s apart failed
(seen in CI under load: "Gloo context initialization failed: DEADLINE_EXCEEDED ... 29.99999984s").

gloo's 30 s cannot be lowered from Python (its context timeout is fixed in jaxlib), so instead of
making a process arrive 40 s late, one job of two processes proves the two things that make the
barrier outlast it, in seconds:
- it uses no device collective at all: the job runs with no CPU collectives (any collective over
  the two processes fails at once there — the old barrier does, "Multiprocess computations aren't
  implemented on the CPU backend"), and a process arriving LATE_S later is still waited for;
- its wait ends at its own `timeout_s` and nowhere sooner: with TIMEOUT_S it gives up after that
  long, naming the barrier, although the other process would have come (the old barrier, blind to
  the timeout, passed); its default is hours, not gloo's 30 s.
"""
import os
import socket
import subprocess
import sys

from s5jax.runtime.processes import BARRIER_TIMEOUT_S

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LATE_S = 3.0          # how much later process 1 arrives at each barrier
TIMEOUT_S = 1.0       # the second barrier's timeout, shorter than LATE_S

_JOB = r"""
import sys, time
import jax
port, pid, late, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
jax.config.update("jax_cpu_collectives_implementation", None)   # no gloo: a device collective fails
jax.distributed.initialize(f"127.0.0.1:{port}", 2, pid)
from s5jax.errors import S5Error
from s5jax.runtime.processes import barrier
process = (jax.process_index(), jax.process_count())
from s5jax.runtime.processes import initialize
# a second command in this process (s5jax.cli.main called again) runs in the job it joined ...
assert initialize(f"127.0.0.1:{port}", 2, pid) == (pid, 2)
try:                                        # ... and cannot join as another process
    initialize(f"127.0.0.1:{port}", 2, 1 - pid)
    print("joined again", pid, flush=True)
except S5Error as e:
    print("refused", pid, str(e).replace(chr(10), " "), flush=True)
for name, timeout_s in (("s5jax-test-late", None), ("s5jax-test-timeout", timeout)):
    time.sleep(late if pid == 1 else 0)     # process 1's share takes `late` longer
    start = time.monotonic()
    try:
        barrier(name, process) if timeout_s is None else barrier(name, process, timeout_s=timeout_s)
        print("passed", name, pid, time.monotonic() - start, flush=True)
    except S5Error as e:
        print("failed", name, pid, time.monotonic() - start, str(e).replace(chr(10), " "), flush=True)
"""


def test_barrier_waits_without_device_collectives_until_its_own_timeout(tmp_path):
    assert BARRIER_TIMEOUT_S >= 3600                       # hours, far beyond gloo's 30 s
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu")
    procs = [subprocess.Popen([sys.executable, "-c", _JOB, str(port), str(i), str(LATE_S), str(TIMEOUT_S)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for i in range(2)]
    try:
        outs = [p.communicate(timeout=120)[0] for p in procs]
    finally:
        for p in procs:
            p.kill()                      # the one left waiting when the other failed
    assert [p.returncode for p in procs] == [0, 0], outs
    for pid, o in enumerate(outs):
        assert f"refused {pid} this process already runs as process {pid} of 2" in o, o
    rows = [[line.split(maxsplit=4) for line in o.splitlines() if line.startswith(("passed", "failed"))]
            for o in outs]
    assert [[r[:3] for r in p] for p in rows] == [
        [["passed", "s5jax-test-late", "0"], ["failed", "s5jax-test-timeout", "0"]],
        [["passed", "s5jax-test-late", "1"], ["failed", "s5jax-test-timeout", "1"]]], outs
    late, timeout = rows[0]
    assert float(late[3]) >= LATE_S - 0.1, rows[0]          # process 0 waited for the late one ...
    # ... and at the second barrier gave up at its own timeout, before the late one came, naming it
    assert TIMEOUT_S - 0.1 <= float(timeout[3]) < LATE_S, rows[0]
    assert "waiting for the other processes at s5jax-test-timeout" in timeout[4], rows[0]
