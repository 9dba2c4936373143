"""The grain input pipeline: the same batches for any worker count and process split; state restores."""
from __future__ import annotations

import numpy as np
import pytest

from s5jax.synth.scenes import SceneSynth, SynthConfig
from s5jax.training.data import BatchMaker, TrainBatches
from tinyset import make_dataset


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("ds"), splits=("train",))


@pytest.fixture(scope="module")
def synth(root):
    return SceneSynth(root, "train", SynthConfig.separator(seconds=0.25))


def _take(batches, n):
    return [next(batches) for _ in range(n)]


def test_batches_are_pure_in_the_step(synth):
    """Without workers (in this process): the reference batches, and a pipeline started at a step (another
    worker count on resume) continues with them. The same batches from worker processes and a restored
    state: test_worker_pipeline_gives_the_same_batches_restores_and_ends_clean (one process start)."""
    maker = BatchMaker(synth, 3, 4, 0, 1, lambda b: None, with_refs=True)
    plain = TrainBatches(maker, 6, workers=0)
    ref = _take(plain, 6)
    plain.close()
    assert ref[0]["mixture"].shape == (4, 4, 8000) and ref[0]["refs"].shape == (4, 3, 8000)
    assert not np.array_equal(ref[0]["mixture"], ref[1]["mixture"])
    late = TrainBatches(maker, 6, workers=0, start=4)
    np.testing.assert_array_equal(next(late)["labels"], ref[4]["labels"])
    late.close()


def test_processes_build_disjoint_rows_of_the_global_batch(synth):
    whole = BatchMaker(synth, 3, 4, 0, 1, lambda b: None, with_refs=False)(2)
    parts = [BatchMaker(synth, 3, 4, p, 2, lambda b: None, with_refs=False)(2) for p in range(2)]
    np.testing.assert_array_equal(np.concatenate([p["mixture"] for p in parts]), whole["mixture"])
    assert "refs" not in whole


# Worker processes (grain's, started by the pipeline) in a process of its own, whose exit is the point:
# a leaked shared-memory block is reported by the resource tracker when the process ends
WORKER_RUN = """
import sys
import numpy as np
from s5jax.synth.scenes import SceneSynth, SynthConfig
from s5jax.training.data import BatchMaker, TrainBatches

def run():
    synth = SceneSynth(sys.argv[1], "train", SynthConfig.separator(seconds=0.25))
    maker = BatchMaker(synth, 3, 4, 0, 1, lambda b: None, with_refs=True)
    plain = TrainBatches(maker, 6, workers=0)
    ref = [next(plain) for _ in range(4)]
    plain.close()
    par = TrainBatches(maker, 6, workers=2, prefetch=1)
    got = [next(par) for _ in range(3)]               # batches still held when the pipeline closes
    state = par.state()
    par.close()
    for a, b in zip(ref, got):                        # the workers' batches are the in-process ones
        for k in a:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    again = TrainBatches(maker, 6, workers=2, prefetch=1)
    again.restore(state)                              # continues after the 3 batches taken
    nxt = next(again)
    again.close()
    np.testing.assert_array_equal(nxt["mixture"], ref[3]["mixture"])
    print("same", got[1]["mixture"].shape)

if __name__ == "__main__":
    run()
"""


def test_worker_pipeline_gives_the_same_batches_restores_and_ends_clean(root, tmp_path):
    import os
    import subprocess
    import sys

    script = tmp_path / "run.py"
    script.write_text(WORKER_RUN)
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    r = subprocess.run([sys.executable, str(script), root], capture_output=True, text=True, timeout=600,
                       env={**os.environ, "PYTHONPATH": repo})
    assert r.returncode == 0 and "same (4, 4, 8000)" in r.stdout, r.stderr
    assert "leaked shared_memory" not in r.stderr and "Traceback" not in r.stderr, r.stderr
