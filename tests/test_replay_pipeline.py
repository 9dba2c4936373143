"""Replay == pipeline, exactly: configs replayed over the cache give the same per-clip labels and the
same CA-SDRi (to 1e-5 dB) as running `s5jax infer --system` and scoring the files it wrote, and every
stem infer wrote is the stem the replayed decisions name: separator A or B (per slot) run directly on
the clip with the final ordered query tuple.

The bundled models (trained on the bundled world) on clips of the world's held-out test split, with
thresholds at which fusion, refine (with second passes), both gates and the selection of separator B
all act on slots that are scored."""
from __future__ import annotations

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from s5jax import bundled, metric
from s5jax.cli import main
from s5jax.labels import CLASSES, SILENCE
from s5jax.replay import cache
from s5jax.replay.arrays import entry_key
from s5jax.replay.replay import LEAST_CONFIGS, decode_key, pad_configs, prepare, replay_configs, sweep_shaped
from s5jax.system import decisions as D
from s5jax.system.config import preset, stack_params

pytestmark = pytest.mark.slow

CLIPS, FIRST = 4, 2      # world_test_0002 .. world_test_0005
# The first four keep their presets' switches (per_class: system2's, which are system1's; only the
# thresholds differ, and they are a program's input), so their programs are the ones `s5jax demo`
# compiled for the same models at the same clip shape (conftest.world_demo, made first): served from
# the run's compile cache. The last one turns every other switch. The thresholds were chosen on the
# first 8 test clips (second passes in system1 on clips 2-5 and dual_gate_first on 0, 1, 4, 6, 7; B
# kept on scored slots in dual on 4 and 5; gated slots in per_class on 2 and dual_gate_first on 2, 5);
# clips 2-5 hold every kind (measured 2026-12-07 with this test's counting over `s5jax cache` of the
# 8 clips: second passes 5, B kept on scored slots 2, gated slots 4), so the pipeline runs on those 4.
_S1 = dict(solo1=0.5, solo4=0.5, energy_db=-30.0)
CONFIGS = {
    "baseline": preset("baseline"),
    "system1": dataclasses.replace(preset("system1"), **_S1, verify=(0.9,) * 18, drop=(0.9,) * 18),
    "per_class": dataclasses.replace(preset("system2"), **_S1, verify=tuple(0.1 + 0.005 * c for c in range(18)),
                                     drop=(0.1,) * 18, gate=(0.6,) * 9 + (0.5,) * 9),
    "dual": dataclasses.replace(preset("system3"), **_S1, verify=(0.9,) * 18, drop=(0.5,) * 18),
    "dual_gate_first": dataclasses.replace(preset("system3"), **{**_S1, "energy_db": -7.0}, proposal="best_nonsilence",
                                           verify=(0.5,) * 18,
                                           drop=(0.5,) * 18, gate=(0.3,) * 18, gate_before_select=True,
                                           confirm="argmax", order="track"),
}


def _models() -> dict[str, str]:
    return {"tagger-4ch": bundled.path("tagger-4ch"), "tagger-1ch": bundled.path("tagger-1ch"),
            "separator": bundled.path("separator-a"), "separator2": bundled.path("separator-b")}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, world_dir, world_demo):
    from s5jax.demo import _subset
    from s5jax.synth.world import testset_dir

    root = tmp_path_factory.mktemp("replay_pipeline")
    data = _subset(testset_dir(world_dir), str(root / "data"), CLIPS, start=FIRST)
    m = _models()
    files = {}
    for name, cfg in CONFIGS.items():
        files[name] = root / f"{name}.json"
        files[name].write_text(cfg.to_json())
    # the default batch size (1 per CPU device), as test_demo's `s5jax demo` runs these models on these
    # clips: the programs compiled for one file are read from the run's compile cache by the other
    models = ["--tagger", m["tagger-1ch"], "--tagger2", m["tagger-4ch"], "--separator", m["separator"],
              "--separator2", m["separator2"], "--quiet"]
    args = ["cache", data, *models, "--out", str(root / "cache")]
    for f in files.values():
        args += ["--system", str(f)]
    assert main(args) == 0
    outs = {}
    for name, f in files.items():
        outs[name] = root / f"out_{name}"
        assert main(["infer", data, *models, "--system", str(f), "--out", str(outs[name])]) == 0
    return root, outs


# The test's own steps, each one jitted program (run op by op they compiled a program per primitive)
_clip_score = jax.jit(metric.clip_score_detail)
_fuse_pairs = jax.jit(D.fuse_pairs, static_argnums=2)
_refine = jax.jit(D.refine)


def _replay(cfg, arrays):
    """`cfg` replayed over the cache as the sweep replays one config (`search.Evaluator.replay`: the
    entry axis padded as a sweep pads it, the config padded to LEAST_CONFIGS), and as `s5jax cache`
    replayed it to find the entries it reaches (`cache.reach`), so the compiled `prepare` and replay
    programs of the `runs` fixture's cache serve this test -> (prepared cache, Replay of the config)."""
    sw = cfg.switches()
    prep = prepare(sweep_shaped(arrays), sw)
    out = replay_configs(pad_configs(stack_params([cfg.params()]), LEAST_CONFIGS), prep, sw)
    return prep, jax.tree.map(lambda a: a[0], out)


def test_replay_equals_infer_and_scoring_its_files(runs):
    from s5jax.audio import read_audio
    from s5jax.dataset import list_soundscapes
    from s5jax.separator import Separator

    root, outs = runs
    names, arrays = cache.load(str(root / "cache"))
    m = _models()
    seps = {0: Separator.from_checkpoint(m["separator"]), 1: Separator.from_checkpoint(m["separator2"])}
    mixtures = {n: read_audio(p, channels=4) for n, p in list_soundscapes(str(root / "data"))}
    separated: dict[tuple, np.ndarray] = {}

    def reference(clip: str, sigma: int, q: tuple) -> np.ndarray:
        """Separator sigma run directly on the clip with query tuple q -> stems [3, n]; each (clip,
        separator, tuple) once: the configs and slots of a clip mostly name the same ones."""
        if (clip, sigma, q) not in separated:
            separated[clip, sigma, q] = np.asarray(seps[sigma](mixtures[clip][None], np.asarray(q, np.int32)[None]))[0]
        return separated[clip, sigma, q]

    seen_labels = set()
    stats = {"second pass": 0, "B kept, scored": 0, "gated": 0, "stems compared": 0}
    for name, cfg in CONFIGS.items():
        sw = cfg.switches()
        prep, out = _replay(cfg, arrays)
        clips = out.clips
        assert not np.asarray(clips.missing).any(), name            # the cache holds every entry reached
        scored = np.load(outs[name] / "scores" / "matrices.npz")
        assert list(scored["names"]) == names
        # labels written by infer (slot index from the file names, silence where no file) == replayed
        np.testing.assert_array_equal(np.asarray(clips.labels), scored["est_labels"], err_msg=name)
        file_scores = [_clip_score(jnp.asarray(e), jnp.asarray(r), jnp.asarray(S), jnp.asarray(M))
                       for e, r, S, M in zip(scored["est_labels"], scored["ref_labels"], scored["S"], scored["M"])]
        for i, d in enumerate(file_scores):
            assert bool(d.valid) == bool(clips.valid[i]), (name, i)
            if bool(d.valid):
                assert abs(float(d.score) - float(clips.score[i])) <= 1e-5, (name, i, float(d.score), float(clips.score[i]))
        summary = json.loads((outs[name] / "scores" / "summary.json").read_text())
        replayed = np.asarray(clips.score)[np.asarray(clips.valid)]
        assert summary["clips_scored"] == len(replayed)
        assert abs(summary["ca_sdri"] - float(np.mean(replayed))) <= 1e-5
        seen_labels.add(np.asarray(clips.labels).tobytes())
        # every written stem == separator A or B (as replayed for that slot) on the final query tuple
        labels, entry, use_b = (np.asarray(a) for a in (clips.labels, clips.entry, clips.use_b))
        keys = np.asarray(prep.keys)
        for i, clip in enumerate(names):
            for k in range(3):
                if labels[i, k] == SILENCE:
                    assert not list((outs[name]).glob(f"{clip}_{k}_*.wav")), (name, clip, k)
                    continue
                sigma, q = decode_key(int(keys[i, entry[i, k]]))
                assert int(sigma) == int(use_b[i, k])
                want = reference(clip, int(sigma), tuple(int(c) for c in q))[k]
                got = read_audio(outs[name] / f"{clip}_{k}_{CLASSES[labels[i, k]]}.wav")[0]
                assert np.linalg.norm(got - want) <= 1e-5 * max(np.linalg.norm(want), 1e-12), (name, clip, k)
                stats["stems compared"] += 1
                if use_b[i, k] and labels[i, k] in set(scored["ref_labels"][i]):
                    stats["B kept, scored"] += 1
        # what the decisions did: Q (fusion), Q' (refine, from the cached re-tag of Q's stems), final labels
        params = cfg.params()
        q, conf = (np.asarray(a) for a in _fuse_pairs(prep.pairs, params, sw))
        for i in range(len(names)):
            q2 = q[i]
            if sw.refine and (q[i] != SILENCE).any():
                e = list(np.asarray(prep.keys[i])).index(int(entry_key(0, q[i])))
                q2 = np.asarray(_refine(q[i], conf[i], prep.r[i, e], params)[0].queries)
            stats["second pass"] += int((q2 != q[i]).any())
            stats["gated"] += int(((q2 != SILENCE) & (labels[i] == SILENCE)).sum())
    assert len(seen_labels) >= 3, "the configs should decide differently"
    assert all(v > 0 for v in stats.values()), stats


def _two_processes(commands: list[list[str]], tmp) -> None:
    """Run the `s5jax` commands one after another in each of 2 jax.distributed processes on localhost
    (CPU, one job: a process joins it at its first command); every command must succeed in both."""
    import os
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = ("import json, sys; from s5jax.cli import main\n"
            "for argv in json.loads(sys.argv[1]):\n"
            "    code = main(argv)\n"
            "    if code:\n"
            "        sys.exit(code)\n")
    procs = [subprocess.Popen([sys.executable, "-c", code, json.dumps([
                                   [*args, "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2",
                                    "--process-id", str(i)] for args in commands])],
                              stdout=open(tmp / f"p{i}.out", "w"), stderr=subprocess.STDOUT,
                              env=dict(os.environ, JAX_PLATFORMS="cpu"))
             for i in range(2)]
    for i, p in enumerate(procs):
        assert p.wait(timeout=900) == 0, (tmp / f"p{i}.out").read_text()[-3000:]


# The two-process run's clips: the last two of the `runs` fixture's (world_test_0004, 0005: B kept on
# a scored slot in `dual` on both), one per process: what is split and merged is the same with one clip
# per process as with two, and each clip is a full cache + infer of the bundled models
SPLIT = 2


def test_two_processes_build_the_same_cache_and_outputs(runs, tmp_path):
    """cache and infer split over 2 jax.distributed processes: each writes only its clips, process 0
    the manifest / results and scores; everything equals the single-process runs of these clips."""
    import csv

    from s5jax.audio import read_audio
    from s5jax.demo import _subset

    root, outs = runs
    m = _models()
    models = ["--tagger", m["tagger-4ch"], "--tagger2", m["tagger-1ch"], "--separator", m["separator"],
              "--separator2", m["separator2"], "--quiet"]
    data = _subset(str(root / "data"), str(tmp_path / "data"), SPLIT, start=CLIPS - SPLIT)
    out = tmp_path / "out"
    # both commands in one job of 2 processes (each process starts, loads the models and reads their
    # programs once): the cache, then infer
    _two_processes([["cache", data, *models, "--out", str(tmp_path / "cache"), "--system", str(root / "dual.json")],
                    ["infer", data, *models, "--system", str(root / "dual.json"), "--out", str(out)]], tmp_path)
    assert f"process 0: {SPLIT // 2} clip(s) tagged" in (tmp_path / "p0.out").read_text()
    assert f"process 1: {SPLIT // 2} clip(s) tagged" in (tmp_path / "p1.out").read_text()
    names, split = cache.load(str(tmp_path / "cache"))
    names1, single = cache.load(str(root / "cache"))
    assert names == names1[CLIPS - SPLIT:] and len(names) == SPLIT
    for i, name in enumerate(names):
        j = names1.index(name)
        keys = split.keys[i][split.keys[i] != np.iinfo(np.int32).max]
        idx = [list(single.keys[j]).index(k) for k in keys]       # a subset of the single run's entries
        for f in ("retag", "S"):
            np.testing.assert_allclose(getattr(split, f)[i, :len(keys)], getattr(single, f)[j, idx],
                                       rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(split.P4[i], single.P4[j], rtol=1e-4, atol=1e-6)

    assert "CA-SDRi" in (tmp_path / "p0.out").read_text() and "CA-SDRi" not in (tmp_path / "p1.out").read_text()
    r2 = json.loads((out / "results.json").read_text())
    r1 = json.loads((outs["dual"] / "results.json").read_text())
    r1["probabilities"] = [c for c in r1["probabilities"] if c["soundscape"] in names]
    assert [[e["filename"] for e in c["estimate"]] for c in r2["probabilities"]] == \
           [[e["filename"] for e in c["estimate"]] for c in r1["probabilities"]]
    for c in r1["probabilities"]:
        for e in c["estimate"]:
            a, b = (read_audio(o / e["filename"])[0] for o in (out, outs["dual"]))
            assert np.linalg.norm(a - b) <= 1e-5 * max(np.linalg.norm(b), 1e-12)
    with open(outs["dual"] / "scores" / "per_clip.csv", newline="") as f:
        s1 = [float(r["ca_sdri"]) for r in csv.DictReader(f) if r["soundscape"] in names]
    s2 = json.loads((out / "scores" / "summary.json").read_text())
    assert len(s1) == SPLIT and s2["clips"] == SPLIT and abs(s2["ca_sdri"] - float(np.mean(s1))) <= 1e-5
