"""bench/torch_port.py (the official models in PyTorch, the reference of bench_compare --torch-port)
computes what the official code computed: the goldens, from the same synthetic weights and signals."""
from __future__ import annotations

import sys

import numpy as np
import pytest

from conftest import ROOT, _rel, golden_state_dict, load_synth, require_torch

pytestmark = pytest.mark.slow

TAGGERS = {"tagger-4ch": ("manifest_4c.json", "fixed_4c.npz", "golden_4c.npz"),
           "tagger-1ch": ("manifest_1c.json", "fixed_1c.npz", "golden_1c.npz")}


@pytest.fixture(scope="module")
def torch_port():
    require_torch()
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import torch_port
    finally:
        sys.path.remove(str(ROOT / "bench"))
    return torch_port


def _official(folder, manifest, fixed):
    return {k[len("model."):]: v for k, v in golden_state_dict(folder, manifest, fixed).items()}


@pytest.mark.parametrize("kind", sorted(TAGGERS))
def test_tagger_port_gives_the_official_logits(torch_port, golden, kind):
    import torch

    manifest, fixed, gold = TAGGERS[kind]
    model = torch_port.build(kind, _official("m2d", manifest, fixed))
    g, synth = np.load(golden / "m2d" / gold), load_synth()
    for i in range(len(g["seeds"])):                     # 10 s, 3.7 s, 12.5 s (two chunks)
        mix = synth.synth_waveform(int(g["seeds"][i]), 4, float(g["seconds"][i]))
        with torch.no_grad():
            logits = model(torch.from_numpy(mix)[None])[0].numpy()
        assert _rel(logits, g[f"case{i}_logits"]) <= 1e-6, (kind, i)
        np.testing.assert_array_equal(logits.argmax(-1), g[f"case{i}_pred_index"])


def test_separator_port_gives_the_official_stems(torch_port, golden):
    import torch

    model = torch_port.build("separator", _official("resunet", "manifest.json", "fixed.npz"))
    g, synth = np.load(golden / "resunet" / "golden.npz"), load_synth()
    for i in range(len(g["seeds"])):                     # a silent slot, and one class twice
        mix = synth.synth_waveform(int(g["seeds"][i]), 4, float(g["seconds"][i]))
        with torch.no_grad():
            stems = model(torch.from_numpy(mix)[None], torch.from_numpy(g[f"case{i}_label_vector"])[None])[0]
        assert _rel(stems.numpy(), g[f"case{i}_stems"]) <= 1e-6, i
    sd = _official("resunet", "manifest.json", "fixed.npz")
    sd.pop("base.decoder_block1.bn2.running_var")        # strict: a missing key is an error
    with pytest.raises(RuntimeError, match="decoder_block1.bn2.running_var"):
        torch_port.build("separator", sd)


def test_port_baseline_system_orders_silence_last(torch_port):
    """baseline_system's queries: the tagger's argmax per track, silence (18) as an all-zero slot, last."""
    import torch

    class Fixed(torch.nn.Module):                        # a tagger whose tracks say [silence, 5, 5]
        def forward(self, mix):
            logits = torch.zeros(mix.shape[0], 3, 19)
            logits[:, 0, 18] = logits[:, 1, 5] = logits[:, 2, 5] = 10.0
            return logits

    seen = {}

    def separator(mix, query):
        seen["query"] = query
        return torch.zeros(mix.shape[0], 3, mix.shape[-1])

    _, query = torch_port.baseline_system(Fixed(), separator, torch.zeros(2, 4, 800))
    expected = np.zeros((2, 3, 18), np.float32)
    expected[:, 0, 5] = expected[:, 1, 5] = 1.0
    np.testing.assert_array_equal(query.numpy(), expected.reshape(2, 54))


def test_bench_torch_worker_times_real_calls(torch_port):
    """bench_compare's worker for the port: loads the full-size synthetic weights and times the calls."""
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import bench_compare
    finally:
        sys.path.remove(str(ROOT / "bench"))
    import torch

    threads = torch.get_num_threads()
    try:
        r = bench_compare.torch_worker("separator", 1, runs=2, seconds=0.25, threads=1)
    finally:
        torch.set_num_threads(threads)
    assert len(r["wall"]) == len(r["cpu"]) == 2 and all(t > 0 for t in r["wall"])
    assert r["peak_rss_gb"] > 0.1 and "1 threads" in r["malloc"]


def test_bench_names_the_machine():
    """Every bench_compare table says which CPU and what fp32 GEMM rate it was measured with."""
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import bench_compare
    finally:
        sys.path.remove(str(ROOT / "bench"))
    line = bench_compare.machine(with_torch=False)
    rate = float(line.rsplit("xla ", 1)[1])
    assert "family" in line and rate > 1.0
