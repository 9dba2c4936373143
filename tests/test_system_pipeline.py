"""The refined system over the models (s5jax.system.pipeline): the baseline preset is the baseline bit
for bit; a full config equals the stages run one by one with the model objects, clip by clip."""
from __future__ import annotations

import dataclasses
import os
from types import SimpleNamespace

import chex
import jax
import numpy as np
import pytest

from s5jax.audio import read_audio
from s5jax.dataset import list_soundscapes
from s5jax.labels import SILENCE
from s5jax.runtime.parallel import DataParallel
from s5jax.separator import query_vector
from s5jax.system import decisions as D
from s5jax.system.config import preset
from s5jax.system.pipeline import energy_db, silence_last
from s5jax.system.engine import sharded_system
from s5jax.tagger import predict_from_logits
from conftest import count_exports, forget_compiled
from tiny_system import write_scenes


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_models, session_compile_cache):
    # the run's compile cache on (as the CLI turns it on) before the first compile: the stage programs
    # below (1 s clips, batch 2) are those of the cache builder (test_cache, the sweep's fills) and of
    # plain `infer --system`, compiled once per run
    root = tmp_path_factory.mktemp("system")
    paths, models = tiny_models["paths"], tiny_models["models"]
    data = write_scenes(str(root / "data"), count=6)
    mix = np.stack([read_audio(p, channels=4) for _, p in list_soundscapes(data)])
    return root, data, paths, models, mix


BATCH = 2       # clips per call, as infer --batch-size 2 and the cache builder run them


def _in_batches(run, mix):
    """`run` (a ShardedSystem or DataParallel: (mixture, pad_to) -> outputs) over `mix` [n, 4, samples]
    in calls of BATCH clips (the last one padded), outputs concatenated: one program shape for all."""
    outs = [run(mix[i:i + BATCH], pad_to=BATCH) for i in range(0, len(mix), BATCH)]
    return jax.tree.map(lambda *a: np.concatenate(a), *outs)


def _official_baseline(tagger, separator):
    """The official baseline written out as its three steps (tagger argmax per track, silence last,
    one separation with the slot labels), over the pure apply functions, on the same device mesh."""
    def baseline(weights, mixture):
        labels, probs, _ = silence_last(*predict_from_logits(tagger.apply_fn(weights[0], mixture)))
        return labels, probs, separator.apply_fn(weights[1], mixture, query_vector(labels))

    return DataParallel(baseline, (tagger.variables, separator.variables))


def test_baseline_preset_is_the_baseline_bit_for_bit(setup):
    _, _, _, m, mix = setup
    labels, probs, stems = _in_batches(_official_baseline(m["t4"], m["A"]), mix)
    base = SimpleNamespace(labels=labels, probs=probs, stems=stems)
    out = _in_batches(sharded_system(preset("baseline"), m["t4"], None, m["A"]), mix)
    assert (out.labels == base.labels).all()
    assert out.probs.tobytes() == base.probs.tobytes()        # silent slots too (their silence probability)
    assert out.stems.tobytes() == base.stems.tobytes()


# Thresholds inside the range of these random models' outputs, so every stage acts on some clip.
# (The random taggers are confident: fused confidences 0.95..1; re-tag confirmations spread over 0..1.)
FULL = dataclasses.replace(preset("system3"), proposal="best_nonsilence", solo1=0.5, solo4=0.5,
                           verify=(0.5,) * 18, drop=(0.9999,) * 13 + (0.5,) + (0.9999,) * 4,
                           gate=(0.3,) * 18, energy_db=-9.0)


# The reference's decision steps, each one jitted program: run op by op (eagerly) they compiled a
# program per primitive, over a hundred small compiles
_proposals = jax.jit(D.proposals, static_argnums=1)
_fuse = jax.jit(D.fuse, static_argnums=3)
_confirmation = jax.jit(D.confirmation, static_argnums=2)
_refine = jax.jit(D.refine)
_finalize = jax.jit(D.finalize, static_argnums=7)
_energy_db = jax.jit(energy_db)


def _reference(cfg, m, mix):
    """The stages of reference/refined_system.md run one by one on one clip with the model objects."""
    sw, params = cfg.switches(), cfg.params()
    P4 = np.asarray(m["t4"].predict(mix[None]).softmax)
    P1 = np.asarray(m["t1"].predict(mix[None, :1]).softmax)
    q, conf = _fuse(_proposals(P1, sw.proposal), _proposals(P4, sw.proposal), params, sw)

    def run(sep, queries):
        stems = np.asarray(sep(mix[None], np.asarray(queries)))
        retag = np.asarray(m["t1"].predict(stems[0][:, None]).softmax)[None]
        return stems, np.asarray(_confirmation(retag, queries, sw.confirm)), np.asarray(_energy_db(stems, mix[None, 0]))

    stems, r, _ = run(m["A"], q)
    (q2, conf2), dropped = _refine(q, conf, r, params)
    passes = 1
    if (np.asarray(q2) != np.asarray(q)).any():
        stems, r, _ = run(m["A"], q2)
        passes = 2
    e_a = np.asarray(_energy_db(stems, mix[None, 0]))
    stems_b, r_b, e_b = run(m["B"], q2)
    final = _finalize(q2, conf2, r, r_b, e_a, e_b, params, sw)
    labels, use_b = np.asarray(final.labels)[0], np.asarray(final.use_b)[0]
    kept = np.where(use_b[:, None], stems_b[0], stems[0]) * (labels != SILENCE)[:, None]
    return labels, np.asarray(conf2)[0], kept, passes, np.asarray(dropped)[0], use_b


def test_full_system_equals_its_stages_run_one_by_one(setup):
    _, _, _, m, mix = setup
    out = _in_batches(sharded_system(FULL, m["t4"], m["t1"], m["A"], m["B"]), mix)
    events = {"second pass": 0, "dropped": 0, "B kept": 0, "A kept": 0, "gated": 0}
    for i in range(len(mix)):
        labels, conf2, kept, passes, dropped, use_b = _reference(FULL, m, mix[i])
        assert (out.labels[i] == labels).all(), (i, out.labels[i], labels)
        assert (out.use_b[i] == use_b).all()
        live = labels != SILENCE
        np.testing.assert_allclose(out.probs[i][live], conf2[live], rtol=1e-6)
        for k in range(3):
            ref = kept[k]
            assert np.linalg.norm(out.stems[i, k] - ref) <= 1e-5 * max(np.linalg.norm(ref), 1e-12)
            assert live[k] or not out.stems[i, k].any()
        events["second pass"] += passes == 2
        events["dropped"] += int(dropped.sum())
        events["B kept"] += int(use_b.sum())
        events["A kept"] += int((live & ~use_b).sum())
        events["gated"] += int(((out.refined[i] != SILENCE) & ~live).sum())
    assert all(v > 0 for v in events.values()), events      # every stage acted on some clip


def _count_separations(run) -> list[int]:
    """The separator index of every separator call `run` (a ShardedSystem) makes from now on."""
    calls: list[int] = []
    for i, program in enumerate(run.stages.separate):
        program.on_device = lambda batch, i=i, call=program.on_device: calls.append(i) or call(batch)
    return calls


def test_an_all_silent_tuple_is_not_separated(setup, tiny_forced):
    """A batch whose query tuple is silence in every slot runs no separator (nor its re-tag): a silent
    slot's stem is exactly zero, so the outputs are those of running it, bit for bit (the official
    baseline over a tagger that hears nothing); a refine that drops every slot runs no second pass
    and no separator B."""
    from s5jax.system.pipeline import silent_probs
    from s5jax.tagger import Tagger

    _, _, _, m, mix = setup
    deaf = Tagger.from_checkpoint(tiny_forced["silent"])
    run = sharded_system(preset("baseline"), deaf, None, m["A"])
    calls = _count_separations(run)
    out = _in_batches(run, mix)
    labels, probs, stems = _in_batches(_official_baseline(deaf, m["A"]), mix)
    assert calls == [] and (labels == SILENCE).all()
    assert (out.labels == labels).all() and out.probs.tobytes() == probs.tobytes()
    assert np.array_equal(out.stems, stems)            # zeros (the separator's are partly -0.0)

    drop_all = dataclasses.replace(FULL, verify=(2.0,) * 18, drop=(2.0,) * 18)   # r, conf <= 1 < 2
    run = sharded_system(drop_all, m["t4"], m["t1"], m["A"], m["B"])
    calls = _count_separations(run)
    out = _in_batches(run, mix)
    assert (out.queries != SILENCE).any(axis=1).all(), out.queries      # each batch's first pass runs
    assert calls == [0] * (len(mix) // BATCH)                           # and nothing after it
    assert (out.labels == SILENCE).all() and (out.refined == SILENCE).all() and not out.stems.any()
    P4 = np.asarray(m["t4"].predict(mix).softmax)
    np.testing.assert_allclose(out.probs, jax.jit(silent_probs)(P4, out.labels), rtol=1e-6)


def test_infer_with_the_baseline_preset_writes_what_plain_infer_writes(setup):
    """`s5jax infer --system baseline` == plain `s5jax infer`: the same files, labels, probabilities and
    stems. Not byte for byte: plain infer itself differs in the last bit of some stem samples from one
    run (process) to the next on this CPU; in one process the two are bit-identical (test above)."""
    import json

    from s5jax.audio import read_audio
    from s5jax.cli import main

    root, data, paths, _, _ = setup
    outs = []
    for extra in ([], ["--system", "baseline"]):
        outs.append(root / f"out{len(outs)}")
        assert main(["infer", data, "--tagger", paths["tagger-4ch"], "--separator", paths["separator"],
                     "--out", str(outs[-1]), "--batch-size", "2", "--quiet", *extra]) == 0
    files = sorted(f for f in os.listdir(outs[0]) if not f.startswith("."))
    assert files == sorted(f for f in os.listdir(outs[1]) if not f.startswith("."))
    wavs = [f for f in files if f.endswith(".wav")]
    assert len(wavs) >= 6 and "results.json" in files
    assert (outs[0] / "labels.csv").read_text() == (outs[1] / "labels.csv").read_text()
    r0, r1 = (json.loads((o / "results.json").read_text()) for o in outs)
    assert r0["nparams"] == r1["nparams"]
    for c0, c1 in zip(r0["probabilities"], r1["probabilities"]):
        assert [e["filename"] for e in c0["estimate"]] == [e["filename"] for e in c1["estimate"]]
        for e0, e1 in zip(c0["estimate"], c1["estimate"]):
            assert e0["probability"] == pytest.approx(e1["probability"], rel=1e-6)
    for f in wavs:
        a, b = (read_audio(o / f)[0] for o in outs)
        assert np.linalg.norm(a - b) <= 1e-6 * np.linalg.norm(a), f


def test_a_config_needing_an_absent_model_is_a_one_line_error(setup, capsys):
    from s5jax.cli import main

    root, data, paths, _, _ = setup
    base = ["infer", data, "--separator", paths["separator"], "--quiet"]
    for extra, why in [(["--tagger", paths["tagger-4ch"], "--system", "system1"], "give it with --tagger2"),
                       (["--tagger", paths["tagger-4ch"], "--tagger2", paths["tagger-1ch"], "--system", "system3"],
                        "give --separator2"),
                       (["--tagger", paths["tagger-1ch"], "--tagger2", paths["tagger-1ch"], "--system", "system1"],
                        "a second tagger-1ch"),
                       (["--tagger", paths["tagger-4ch"], "--tagger2", paths["tagger-1ch"]], "give --system")]:
        out = root / "refused"
        assert main(base + extra + ["--out", str(out)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and why in err[0], (why, err)
        assert not out.exists()


def test_system_program_is_kept_and_served_without_tracing(setup, memo_dir, tmp_path, monkeypatch):
    """`infer --system`: the refined system's stage programs are exported and kept like the
    baseline's, and a later engine is served from them, computing the same. Four programs: the 4-ch
    tagger, the 1-ch tagger on mixtures and on folded stems, and one separator program that serves
    both A and B (same config, other weights) and both passes."""
    from s5jax.system.engine import system_engine

    _, _, paths, _, mix = setup
    config = tmp_path / "full.json"
    config.write_text(FULL.to_json())

    def outputs(prepare: bool):
        eng = system_engine(str(config), [paths["tagger-1ch"], paths["tagger-4ch"]], paths["separator"],
                            paths["separator2"], 2)
        if prepare:
            eng.prepare(mix.shape[-1])
        return [np.asarray(a) for a in eng.compute(mix[:2])]

    plain = outputs(prepare=False)
    fresh = outputs(prepare=True)                                   # exports and keeps the programs
    assert len(list((memo_dir / "s5jax-programs").iterdir())) == 4

    forget_compiled(monkeypatch)                                      # served from the file
    exports = count_exports(monkeypatch)
    served = outputs(prepare=True)
    assert exports == [], "exported again although the program is kept"
    chex.assert_trees_all_equal(plain, fresh, served)               # every output bit for bit
    assert np.abs(plain[2]).max() > 0                               # real stems
