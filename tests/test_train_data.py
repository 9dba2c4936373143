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


def test_workers_give_the_same_batches_and_state_restores(synth):
    maker = BatchMaker(synth, 3, 4, 0, 1, lambda b: None, with_refs=True)
    plain = TrainBatches(maker, 6, workers=0)
    ref = _take(plain, 6)
    plain.close()
    assert ref[0]["mixture"].shape == (4, 4, 8000) and ref[0]["refs"].shape == (4, 3, 8000)
    assert not np.array_equal(ref[0]["mixture"], ref[1]["mixture"])
    par = TrainBatches(maker, 6, workers=2, prefetch=1)
    got = _take(par, 3)
    state = par.state()
    par.close()
    for a, b in zip(ref, got):
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])
    again = TrainBatches(maker, 6, workers=2, prefetch=1)
    again.restore(state)
    nxt = next(again)
    again.close()
    np.testing.assert_array_equal(nxt["mixture"], ref[3]["mixture"])
    # a pipeline started at a step (another worker count on resume) continues with the same batches
    late = TrainBatches(maker, 6, workers=0, start=4)
    np.testing.assert_array_equal(next(late)["labels"], ref[4]["labels"])
    late.close()


def test_processes_build_disjoint_rows_of_the_global_batch(synth):
    whole = BatchMaker(synth, 3, 4, 0, 1, lambda b: None, with_refs=False)(2)
    parts = [BatchMaker(synth, 3, 4, p, 2, lambda b: None, with_refs=False)(2) for p in range(2)]
    np.testing.assert_array_equal(np.concatenate([p["mixture"] for p in parts]), whole["mixture"])
    assert "refs" not in whole


WORKER_RUN = """
import sys
from s5jax.synth.scenes import SceneSynth, SynthConfig
from s5jax.training.data import BatchMaker, TrainBatches

def run():
    synth = SceneSynth(sys.argv[1], "train", SynthConfig.separator(seconds=0.25))
    batches = TrainBatches(BatchMaker(synth, 3, 4, 0, 1, lambda b: None, with_refs=True), 6, workers=2, prefetch=1)
    kept = [next(batches) for _ in range(2)]          # batches still held when the pipeline closes
    batches.close()
    print(kept[1]["mixture"].shape)

if __name__ == "__main__":
    run()
"""


def test_worker_pipeline_ends_without_leaking_shared_memory(root, tmp_path):
    import os
    import subprocess
    import sys

    script = tmp_path / "run.py"
    script.write_text(WORKER_RUN)
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    r = subprocess.run([sys.executable, str(script), root], capture_output=True, text=True, timeout=600,
                       env={**os.environ, "PYTHONPATH": repo})
    assert r.returncode == 0 and "(4, 4, 8000)" in r.stdout, r.stderr
    assert "leaked shared_memory" not in r.stderr and "Traceback" not in r.stderr, r.stderr
