"""bench/torch_port.py (the official models in PyTorch, the reference of bench_compare --torch-port)
computes what the official code computed: the goldens, from the same synthetic weights and signals."""
from __future__ import annotations

import contextlib
import importlib
import importlib.util
import sys

import numpy as np
import pytest

from conftest import ROOT, _rel, golden_state_dict, load_synth, require_torch

pytestmark = pytest.mark.slow

TAGGERS = {"tagger-4ch": ("manifest_4c.json", "fixed_4c.npz", "golden_4c.npz"),
           "tagger-1ch": ("manifest_1c.json", "fixed_1c.npz", "golden_1c.npz")}


def _bench(module: str):
    """A module of bench/ (its programs import each other as siblings)."""
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        return importlib.import_module(module)
    finally:
        sys.path.remove(str(ROOT / "bench"))


@pytest.fixture(scope="module")
def torch_port():
    require_torch()
    return _bench("torch_port")


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


def test_onednn_gemm_port_computes_the_same_logits(torch_port, golden):
    """bench_compare --torch-gemm onednn: the port with its Linears on oneDNN instead of BLAS still gives
    the official logits (rounding apart), and every Linear runs through oneDNN's op."""
    import torch

    manifest, fixed, gold = TAGGERS["tagger-4ch"]
    model = torch_port.use_onednn_gemm(torch_port.build("tagger-4ch", _official("m2d", manifest, fixed)))
    g, synth = np.load(golden / "m2d" / gold), load_synth()
    mix = synth.synth_waveform(int(g["seeds"][0]), 4, float(g["seconds"][0]))
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    calls = []
    with torch.no_grad(), _counting_linear_pointwise(calls):
        logits = model(torch.from_numpy(mix)[None])[0].numpy()
    assert len(calls) == len(linears) > 12 * 4
    assert _rel(logits, g["case0_logits"]) <= 1e-5
    np.testing.assert_array_equal(logits.argmax(-1), g["case0_pred_index"])


@contextlib.contextmanager
def _counting_linear_pointwise(calls: list):
    """While active, every call of torch.ops.mkldnn._linear_pointwise appends to `calls`."""
    import torch

    op = torch.ops.mkldnn._linear_pointwise
    torch.ops.mkldnn._linear_pointwise = lambda *a, **k: calls.append(1) or op(*a, **k)
    try:
        yield
    finally:
        torch.ops.mkldnn._linear_pointwise = op


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
    bench_compare = _bench("bench_compare")
    import torch

    threads = torch.get_num_threads()
    try:
        r = bench_compare.torch_worker("separator", 1, runs=2, seconds=0.25, threads=1)
    finally:
        torch.set_num_threads(threads)
    assert len(r["wall"]) == len(r["cpu"]) == 2 and all(t > 0 for t in r["wall"])
    assert r["peak_rss_gb"] > 0.1 and "1 threads" in r["malloc"]
    assert 0.05 < r["calls_peak_gb"] <= r["peak_rss_gb"]     # the calls' own peak, after loading


def test_bench_names_the_machine():
    """Every bench_compare table says which CPU and what fp32 GEMM rate it was measured with."""
    bench_compare = _bench("bench_compare")
    line = bench_compare.machine()
    rate = float(line.rsplit("xla ", 1)[1])
    assert "family" in line and rate > 1.0
    if importlib.util.find_spec("torch") is not None:      # --torch-port: torch's GEMM rate per path too
        rates = dict(r.split() for r in bench_compare.machine(["mkl", "onednn"]).split(": ", 1)[1].split(", "))
        assert set(rates) == {"xla", "torch", "torch-onednn"} and all(float(v) > 1.0 for v in rates.values())


# ------------------------------------------------------------------ s5jax against the port on other lengths
# The goldens cover 10, 3.7 and 12.5 s (taggers) and 4 and 2.5 s (separator). The port equals them bit
# for bit, so it stands in for the official code on lengths they miss: a short clip, lengths that are
# not a multiple of the hop or of a patch, two chunks with a partial second one, and the separator on a
# whole 10 s clip (the DCASE length, where the full-resolution convolutions run in time windows).
def _s5jax_model(kind, sd):
    from s5jax.models import m2d, resunet
    from s5jax.official import m2d as m2d_rules, resunet as resunet_rules
    from s5jax.separator import Separator
    from s5jax.tagger import Tagger

    if kind == "separator":
        cfg, variables = resunet_rules.convert_separator_state_dict(sd, kind)
        return Separator(resunet.ResUNetConfig.from_dict(cfg), variables, kind)
    cfg, variables = m2d_rules.convert_tagger_state_dict(sd, kind, kind)
    return Tagger(m2d.M2DConfig.from_dict(cfg), variables, kind)


def _signal(seed: int, seconds: float) -> np.ndarray:
    """[1, 4, round(seconds * 32 kHz)] test signal (synth_waveform needs 1 s at least: cut from one)."""
    return load_synth().synth_waveform(seed, 4, max(seconds, 1.0))[None, :, :int(round(seconds * 32000))]


@pytest.mark.parametrize("kind, seconds", [("tagger-1ch", 0.2), ("tagger-1ch", 3.3331), ("tagger-1ch", 15.3),
                                           ("tagger-4ch", 7.77)])
def test_tagger_equals_the_port_on_other_lengths(torch_port, kind, seconds):
    import torch

    manifest, fixed, _ = TAGGERS[kind]
    sd = _official("m2d", manifest, fixed)
    mix = _signal(77, seconds)
    with torch.no_grad():
        ref = torch_port.build(kind, sd)(torch.from_numpy(mix))[0].numpy()
    ours = np.asarray(_s5jax_model(kind, sd)(mix))[0]
    assert _rel(ours, ref) <= 1e-4, (kind, seconds, _rel(ours, ref))
    np.testing.assert_array_equal(ours.argmax(-1), ref.argmax(-1))


@pytest.mark.parametrize("seconds, classes", [(0.3, [4, 18, 18]), (1.2345678, [7, 7, 2]), (10.0, [3, 15, 17])])
def test_separator_equals_the_port_on_other_lengths(torch_port, seconds, classes):
    import torch

    from s5jax.separator import query_vector

    sd = _official("resunet", "manifest.json", "fixed.npz")
    mix = _signal(78, seconds)
    q = np.array(query_vector(np.array([classes]), 18))
    with torch.no_grad():
        ref = torch_port.build("separator", sd)(torch.from_numpy(mix), torch.from_numpy(q))[0].numpy()
    ours = np.asarray(_s5jax_model("separator", sd)(mix, np.array([classes])))[0]
    assert ours.shape == ref.shape == (3, mix.shape[-1])
    for slot in range(3):
        if classes[slot] == 18:
            assert not ours[slot].any() and not ref[slot].any()
        else:
            assert _rel(ours[slot], ref[slot]) <= 1e-4, (seconds, slot, _rel(ours[slot], ref[slot]))
