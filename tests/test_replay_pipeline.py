"""Replay == pipeline, exactly: configs replayed over the cache give the same per-clip labels and the
same CA-SDRi (to 1e-5 dB) as running `s5jax infer --system` and scoring the files it wrote.

Tiny random-weight models, 6 clips of 1 s; thresholds inside the range of these models' outputs so
that fusion, refine (with second passes), both gates and the selection of separator B all act."""
from __future__ import annotations

import dataclasses
import json

import jax.numpy as jnp
import numpy as np
import pytest

from s5jax import metric
from s5jax.cli import main
from s5jax.labels import SILENCE
from s5jax.replay import cache
from s5jax.replay.arrays import entry_key
from s5jax.replay.replay import prepare, replay
from s5jax.system import decisions as D
from s5jax.system.config import preset
from tiny_system import write_models, write_scenes

pytestmark = pytest.mark.slow

_S1 = dict(proposal="best_nonsilence", solo1=0.5, solo4=0.5, energy_db=-9.0)
CONFIGS = {
    "baseline": preset("baseline"),
    "system1": dataclasses.replace(preset("system1"), **_S1, verify=(0.5,) * 18, drop=(0.9999,) * 18),
    "per_class": dataclasses.replace(preset("system2"), **_S1, verify=tuple(0.2 + 0.04 * c for c in range(18)),
                                     drop=(0.9999,) * 13 + (0.5,) + (0.9999,) * 4,
                                     gate=(0.3,) * 8 + (0.99999995,) + (0.3,) * 9),
    "dual": dataclasses.replace(preset("system3"), **_S1, verify=(0.5,) * 18,
                                drop=(0.9999,) * 13 + (0.5,) + (0.9999,) * 4),
    "dual_gate_first": dataclasses.replace(preset("system3"), **_S1, verify=(0.5,) * 18, drop=(0.9999,) * 18,
                                           gate_before_select=True, confirm="argmax", order="track"),
    "weighted": dataclasses.replace(preset("system1"), solo_conf="weighted", w1=0.3, w4=0.7, solo1=0.6,
                                    solo4=0.4, verify=(0.6,) * 18, drop=(0.7,) * 18, gate=(0.45,) * 18),
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("replay_pipeline")
    m = write_models(str(root / "models"))
    data = write_scenes(str(root / "data"), count=6)
    files = {}
    for name, cfg in CONFIGS.items():
        files[name] = root / f"{name}.json"
        files[name].write_text(cfg.to_json())
    models = ["--tagger", m["tagger-1ch"], "--tagger2", m["tagger-4ch"], "--separator", m["separator"],
              "--separator2", m["separator2"], "--batch-size", "2", "--quiet"]
    args = ["cache", data, *models, "--out", str(root / "cache")]
    for f in files.values():
        args += ["--system", str(f)]
    assert main(args) == 0
    outs = {}
    for name, f in files.items():
        outs[name] = root / f"out_{name}"
        assert main(["infer", data, *models, "--system", str(f), "--out", str(outs[name])]) == 0
    return root, outs


def test_replay_equals_infer_and_scoring_its_files(runs):
    root, outs = runs
    names, arrays = cache.load(str(root / "cache"))
    seen_labels = set()
    stats = {"second pass": 0, "B kept": 0, "gated": 0}
    for name, cfg in CONFIGS.items():
        sw = cfg.switches()
        out = replay(cfg.params(), prepare(arrays, sw), sw)
        clips = out.clips
        assert not np.asarray(clips.missing).any(), name            # the cache holds every entry reached
        scored = np.load(outs[name] / "scores" / "matrices.npz")
        assert list(scored["names"]) == names
        # labels written by infer (slot index from the file names, silence where no file) == replayed
        np.testing.assert_array_equal(np.asarray(clips.labels), scored["est_labels"], err_msg=name)
        file_scores = [metric.clip_score_detail(jnp.asarray(e), jnp.asarray(r), jnp.asarray(S), jnp.asarray(M))
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
        # what the decisions did: Q (fusion), Q' (refine, from the cached re-tag of Q's stems), final labels
        prep = prepare(arrays, sw)
        params = cfg.params()
        q, conf = (np.asarray(a) for a in D.fuse_pairs(prep.pairs, params, sw))
        labels = np.asarray(clips.labels)
        for i in range(len(names)):
            q2 = q[i]
            if sw.refine and (q[i] != SILENCE).any():
                e = list(np.asarray(prep.keys[i])).index(int(entry_key(0, q[i])))
                q2 = np.asarray(D.refine(q[i], conf[i], prep.r[i, e], params)[0].queries)
            stats["second pass"] += int((q2 != q[i]).any())
            stats["gated"] += int(((q2 != SILENCE) & (labels[i] == SILENCE)).sum())
        stats["B kept"] += int(np.asarray(clips.use_b).sum())
    assert len(seen_labels) >= 4, "the configs should decide differently"
    assert all(v > 0 for v in stats.values()), stats


def _two_processes(args: list[str], tmp) -> None:
    """Run `s5jax ARGS` as 2 jax.distributed processes on localhost (CPU), both must succeed."""
    import os
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = "import sys; from s5jax.cli import main; sys.exit(main(sys.argv[1:]))"
    procs = [subprocess.Popen([sys.executable, "-c", code, *args, "--coordinator", f"127.0.0.1:{port}",
                               "--num-processes", "2", "--process-id", str(i)],
                              stdout=open(tmp / f"p{i}.out", "w"), stderr=subprocess.STDOUT,
                              env=dict(os.environ, JAX_PLATFORMS="cpu"))
             for i in range(2)]
    for i, p in enumerate(procs):
        assert p.wait(timeout=900) == 0, (tmp / f"p{i}.out").read_text()[-3000:]


def test_two_processes_build_the_same_cache_and_outputs(runs, tmp_path):
    """cache and infer split over 2 jax.distributed processes: each writes only its clips, process 0
    the manifest / results and scores; everything equals the single-process runs."""
    from s5jax.audio import read_audio

    root, outs = runs
    models = ["--tagger", str(root / "models" / "t4"), "--tagger2", str(root / "models" / "t1"),
              "--separator", str(root / "models" / "sepA"), "--separator2", str(root / "models" / "sepB"),
              "--batch-size", "2", "--quiet"]
    data = str(root / "data")
    _two_processes(["cache", data, *models, "--out", str(tmp_path / "cache"), "--system", str(root / "dual.json")],
                   tmp_path)
    assert "process 0: 3 clip(s) tagged" in (tmp_path / "p0.out").read_text()
    assert "process 1: 3 clip(s) tagged" in (tmp_path / "p1.out").read_text()
    names, split = cache.load(str(tmp_path / "cache"))
    names1, single = cache.load(str(root / "cache"))
    assert names == names1 and len(names) == 6
    for i in range(len(names)):
        keys = split.keys[i][split.keys[i] != np.iinfo(np.int32).max]
        idx = [list(single.keys[i]).index(k) for k in keys]       # a subset of the single run's entries
        for f in ("retag", "S"):
            np.testing.assert_allclose(getattr(split, f)[i, :len(keys)], getattr(single, f)[i, idx],
                                       rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(split.P4[i], single.P4[i], rtol=1e-4, atol=1e-6)

    out = tmp_path / "out"
    _two_processes(["infer", data, *models, "--system", str(root / "dual.json"), "--out", str(out)], tmp_path)
    assert "CA-SDRi" in (tmp_path / "p0.out").read_text() and "CA-SDRi" not in (tmp_path / "p1.out").read_text()
    r2 = json.loads((out / "results.json").read_text())
    r1 = json.loads((outs["dual"] / "results.json").read_text())
    assert [[e["filename"] for e in c["estimate"]] for c in r2["probabilities"]] == \
           [[e["filename"] for e in c["estimate"]] for c in r1["probabilities"]]
    for c in r1["probabilities"]:
        for e in c["estimate"]:
            a, b = (read_audio(o / e["filename"])[0] for o in (out, outs["dual"]))
            assert np.linalg.norm(a - b) <= 1e-5 * max(np.linalg.norm(b), 1e-12)
    s1 = json.loads((outs["dual"] / "scores" / "summary.json").read_text())
    s2 = json.loads((out / "scores" / "summary.json").read_text())
    assert s2["clips"] == 6 and abs(s2["ca_sdri"] - s1["ca_sdri"]) <= 1e-5
