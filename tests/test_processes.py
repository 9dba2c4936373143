"""s5jax.runtime.processes: the barrier after each process's share waits for a process that arrives much later.

`multihost_utils.sync_global_devices` (the barrier before) builds a gloo context on CPU, and that
build gives up after 30 s: an infer job whose two processes finished their shares 30 s apart failed
(seen in CI under load: "Gloo context initialization failed: DEADLINE_EXCEEDED ... 29.99999984s")."""
import os
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LATE_S = 40          # longer than gloo's 30 s

_JOB = r"""
import sys, time
from s5jax.runtime.processes import barrier, initialize
port, pid, late = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
process = initialize(f"127.0.0.1:{port}", 2, pid)
time.sleep(late if pid == 1 else 0)     # process 1's share takes LATE_S longer
barrier("s5jax-test-late", process)
print("passed", pid, flush=True)
"""


def test_barrier_waits_for_a_process_arriving_later_than_gloos_30s(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu")
    start = time.monotonic()
    procs = [subprocess.Popen([sys.executable, "-c", _JOB, str(port), str(i), str(LATE_S)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in range(2)]
    try:
        outs = [p.communicate(timeout=LATE_S + 120)[0] for p in procs]
    finally:
        for p in procs:
            p.kill()                      # the one left waiting when the other failed
    assert [p.returncode for p in procs] == [0, 0], outs
    assert [o.strip().splitlines()[-1] for o in outs] == ["passed 0", "passed 1"]
    assert time.monotonic() - start >= LATE_S              # process 0 did wait
