"""The grain input pipeline: the same batches for any worker count and process split; state restores."""
from __future__ import annotations

import numpy as np
import pytest

from s5jax.synth.scenes import SceneSynth, SynthConfig
from s5jax.training.data import BatchMaker, TrainBatches
from tinyset import make_dataset


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    root = make_dataset(tmp_path_factory.mktemp("ds"), splits=("train",))
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
