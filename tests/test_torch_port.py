"""bench/torch_port.py (the official models in PyTorch, the reference of bench_compare --torch-port)
computes what the official code computed: the goldens, from the same synthetic weights and signals."""
from __future__ import annotations

import contextlib
import importlib
import importlib.util
import sys

import numpy as np
import pytest

from conftest import ROOT, _rel, load_synth, require_torch

# the golden weights are read-only memory maps: torch warns when it wraps one (the port's build only
# copies them into its parameters)
pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:The given NumPy array is not writable")]

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
    require_torch()         # one torch thread in an xdist worker (conftest.require_torch)
    return _bench("torch_port")


def _official_of(golden_weights, kind: str) -> dict:
    """The official state_dict of `kind` (golden synthetic weights, keys without `model.`; read-only
    arrays made once per test run, conftest.golden_weights)."""
    if kind == "separator":
        sd = golden_weights("resunet", "manifest.json", "fixed.npz")
    else:
        manifest, fixed, _ = TAGGERS[kind]
        sd = golden_weights("m2d", manifest, fixed)
    return {k[len("model."):]: v for k, v in sd.items()}


@pytest.fixture(scope="module")
def built(torch_port, golden_weights):
    """kind -> (official state_dict, the port's model, s5jax's model), each part made on first use and
    kept while the next tests ask for the same kind (the tests below are ordered by kind): the port's
    build and our conversion took seconds each, per test; a test that needs only the port does not
    convert ours. One kind's models are held at a time (a full-size tagger is ≈ 1 GB as torch model
    and s5jax model); the state_dict is a memory map of the run's copy. The models are only called
    (eval, no state); every s5jax call of one shape shares one compile."""
    held: dict = {}

    def get(kind: str, ours: bool = True):
        if held.get("kind") != kind:
            held.clear()
            held.update(kind=kind, sd=_official_of(golden_weights, kind))
            held["port"] = torch_port.build(kind, held["sd"])
        if ours and "ours" not in held:
            held["ours"] = _s5jax_model(kind, held["sd"])
        return held["sd"], held["port"], held.get("ours")

    return get


@pytest.mark.parametrize("kind", sorted(TAGGERS))
def test_tagger_port_gives_the_official_logits(built, golden, kind):
    import torch

    _, _, gold = TAGGERS[kind]
    _, model, _ = built(kind, ours=False)
    g, synth = np.load(golden / "m2d" / gold), load_synth()
    for i in range(len(g["seeds"])):                     # 10 s, 3.7 s, 12.5 s (two chunks)
        mix = synth.synth_waveform(int(g["seeds"][i]), 4, float(g["seconds"][i]))
        with torch.no_grad():
            logits = model(torch.from_numpy(mix)[None])[0].numpy()
        assert _rel(logits, g[f"case{i}_logits"]) <= 1e-6, (kind, i)
        np.testing.assert_array_equal(logits.argmax(-1), g[f"case{i}_pred_index"])


def test_onednn_gemm_port_computes_the_same_logits(torch_port, built, golden):
    """bench_compare --torch-gemm onednn: the port with its Linears on oneDNN instead of BLAS still gives
    the official logits (rounding apart), and every Linear runs through oneDNN's op. On the golden's
    3.7 s case (one partial chunk, every Linear of the model called): the 10 s one took 3x the time."""
    import torch

    _, _, gold = TAGGERS["tagger-4ch"]
    sd = built("tagger-4ch", ours=False)[0]
    model = torch_port.use_onednn_gemm(torch_port.build("tagger-4ch", sd))   # in place: a model of its own
    g, synth = np.load(golden / "m2d" / gold), load_synth()
    assert float(g["seconds"][1]) < 5.0
    mix = synth.synth_waveform(int(g["seeds"][1]), 4, float(g["seconds"][1]))
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    calls = []
    with torch.no_grad(), _counting_linear_pointwise(calls):
        logits = model(torch.from_numpy(mix)[None])[0].numpy()
    assert len(calls) == len(linears) > 12 * 4
    assert _rel(logits, g["case1_logits"]) <= 1e-5
    np.testing.assert_array_equal(logits.argmax(-1), g["case1_pred_index"])


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


# Each length is one full-size compile of ours (≈ 10-20 s), so each covers a path the goldens miss:
#   tagger-1ch 0.2001 s: 6403 samples, not a multiple of the hop (the last partial hop), a short clip
#                        (21 frames -> one partial chunk padded to 32: the first 2 pos-embed columns)
#   tagger-1ch 10.5 s:   1051 frames: one full chunk and a partial second one (50 -> 48 frames) of
#                        another length than the golden's 12.5 s (15.3 s before: the same path, chunk_layout
#                        asserted below, 1.5x the run time of both models)
#   tagger-4ch 2.77 s:   the 4-channel fold on one partial chunk of another length (278 -> 288 frames;
#                        7.77 s before: the same path, 2.5x the run time of both models)
#   separator 0.3003 s:  9610 samples, not a multiple of the hop, a short clip (61 frames padded to 64,
#                        whole-map convolutions), a batch of two: silent slots [4, 18, 18] and one
#                        class twice [7, 7, 2]
# The separator on a whole 10 s clip (the DCASE length: full-resolution convolutions in time windows)
# runs the code of the golden cases (4 and 2.5 s), asserted by test_resunet_parity.py
# test_dcase_length_takes_the_path_of_the_golden_cases: compared with the port here it took 30 s
# of the suite (a full-size compile and run at 10 s) for a path the goldens check against the official code.
# (before: 1-ch 0.2 s and 3.3331 s, separator 0.3 s and 1.2345678 s as separate compiles of one path)
@pytest.mark.parametrize("kind, seconds", [("tagger-4ch", 2.77), ("tagger-1ch", 0.2001), ("tagger-1ch", 10.5)])
def test_tagger_equals_the_port_on_other_lengths(built, kind, seconds):
    import torch

    _, port, ours_model = built(kind)
    mix = _signal(77, seconds)
    if seconds == 0.2001:
        assert mix.shape[-1] % 320 and mix.shape[-1] // 320 + 1 < 32      # what this length is for
    if seconds == 2.77:
        assert (mix.shape[-1] // 320 + 1) % 16 and mix.shape[-1] // 320 + 1 < 1001
    if seconds == 10.5:             # two chunks, a partial second one, as 12.5 s but of another length
        from s5jax.models.m2d import chunk_layout

        layout = chunk_layout(mix.shape[-1] // 320 + 1, ours_model.cfg)
        assert layout[1:] == (1, 48) and chunk_layout(1251, ours_model.cfg)[1:] == (1, 256)
    with torch.no_grad():
        ref = port(torch.from_numpy(mix))[0].numpy()
    ours = np.asarray(ours_model(mix))[0]
    assert _rel(ours, ref) <= 1e-4, (kind, seconds, _rel(ours, ref))
    np.testing.assert_array_equal(ours.argmax(-1), ref.argmax(-1))


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


def test_bench_names_the_machine(monkeypatch):
    """Every bench_compare table says which CPU and what fp32 GEMM rate it was measured with."""
    bench_compare = _bench("bench_compare")
    # the xla rate is a real worker process (`--worker gemm 0 --gemm xla`: an import of jax, then the
    # GEMMs, 3 timed calls here, not the 20 of a bench run); torch's two rates are the same worker
    # function (`gemm_worker`, which that process runs for every framework) called in this process,
    # where torch is imported already: two process starts less. The second line's "xla" worker is the
    # first line's, reused (same arguments), not measured twice
    runs, run_worker = {}, bench_compare._run_worker

    def once(tree, args, *rest, **kw):
        key = (str(tree), tuple(args), rest, tuple(sorted(kw.items())))
        if key not in runs:
            assert args[:2] == ["gemm", "0"] and "--gemm" in args
            framework = args[args.index("--gemm") + 1]
            if framework == "xla":
                runs[key] = run_worker(tree, [*args, "--gemm-reps", "3"], *rest, **kw)
            else:
                runs[key] = _in_process_gemm(bench_compare, framework)
        return runs[key]

    monkeypatch.setattr(bench_compare, "_run_worker", once)
    line = bench_compare.machine()
    rate = float(line.rsplit("xla ", 1)[1])
    assert "family" in line and rate > 1.0
    if importlib.util.find_spec("torch") is not None:      # --torch-port: torch's GEMM rate per path too
        rates = dict(r.split() for r in bench_compare.machine(["mkl", "onednn"]).split(": ", 1)[1].split(", "))
        assert set(rates) == {"xla", "torch", "torch-onednn"} and all(float(v) > 1.0 for v in rates.values())
        assert float(rates["xla"]) == rate                    # the first line's worker, reused
        assert len(runs) == 3                                  # xla, torch's BLAS and its oneDNN path


def _in_process_gemm(bench_compare, framework: str) -> dict:
    """bench_compare.gemm_worker(framework, 3 calls) in this process (bench/ importable for its
    `import torch_port`; torch's thread count restored after)."""
    import torch

    threads = torch.get_num_threads()
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        return bench_compare.gemm_worker(framework, 3)
    finally:
        sys.path.remove(str(ROOT / "bench"))
        torch.set_num_threads(threads)


def test_separator_port_gives_the_official_stems(torch_port, built, golden):
    import torch

    sd, model, _ = built("separator", ours=False)
    g, synth = np.load(golden / "resunet" / "golden.npz"), load_synth()
    for i in range(len(g["seeds"])):                     # a silent slot, and one class twice
        mix = synth.synth_waveform(int(g["seeds"][i]), 4, float(g["seconds"][i]))
        with torch.no_grad():
            stems = model(torch.from_numpy(mix)[None], torch.from_numpy(g[f"case{i}_label_vector"])[None])[0]
        assert _rel(stems.numpy(), g[f"case{i}_stems"]) <= 1e-6, i
    sd = dict(sd)
    sd.pop("base.decoder_block1.bn2.running_var")        # strict: a missing key is an error
    with pytest.raises(RuntimeError, match="decoder_block1.bn2.running_var"):
        torch_port.build("separator", sd)


@pytest.mark.parametrize("seconds, classes", [(0.3003, [[4, 18, 18], [7, 7, 2]])])
def test_separator_equals_the_port_on_other_lengths(built, seconds, classes):
    import torch

    from s5jax.separator import query_vector

    _, port, ours_model = built("separator")
    mix = np.concatenate([_signal(78 + i, seconds) for i in range(len(classes))])     # [clips, 4, samples]
    if seconds == 0.3003:
        assert mix.shape[-1] % 160
    q = np.array(query_vector(np.array(classes), 18))
    with torch.no_grad():
        ref = port(torch.from_numpy(mix), torch.from_numpy(q)).numpy()
    ours = np.asarray(ours_model(mix, np.array(classes)))
    assert ours.shape == ref.shape == (len(classes), 3, mix.shape[-1])
    for clip, clip_classes in enumerate(classes):
        for slot in range(3):
            if clip_classes[slot] == 18:
                assert not ours[clip, slot].any() and not ref[clip, slot].any()
            else:
                err = _rel(ours[clip, slot], ref[clip, slot])
                assert err <= 1e-4, (seconds, clip, slot, err)
