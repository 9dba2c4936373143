"""`s5jax infer` end to end: synthetic scenes in the official layout, the tiny random-weight models of
tests/tiny_system.py and forced-label copies of its 1-ch tagger (the file handling does not depend on
the models' size; full-size models run end to end in test_demo.py), outputs checked against the models
and the metric. Every run here is at 1 s clips and batch size 2 with one of two model pairs (4-ch or
1-ch tagger + separator A), so the whole module compiles two system programs, shared with the
safety and submit tests through the run's compile cache."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from s5jax import metric
from s5jax.audio import read_audio
from s5jax.cli import main
from s5jax.dataset import reference_files
from s5jax.labels import LABELS, SILENCE
from s5jax.synth.toy import SceneConfig, write_scene_set

SECONDS = 1.0           # short clips; any length works
NAME_RE = re.compile(r"^(synth_\d{4})_([0-2])_([A-Za-z]+)\.wav$")


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_models, tiny_forced):
    root = tmp_path_factory.mktemp("infer")
    data = root / "data"
    write_scene_set(data, 5, seed=7, cfg=SceneConfig(seconds=SECONDS, silent_rate=0.2))
    paths = tiny_models["paths"]
    ckpt = {"tagger-4ch": paths["tagger-4ch"], "tagger-1ch": paths["tagger-1ch"], "separator": paths["separator"],
            "forced": tiny_forced["forced"]}
    return root, data, ckpt


def _infer(data, out, ckpt, tagger="tagger-4ch", extra=()):
    return main(["infer", str(data), "--tagger", ckpt[tagger], "--separator", ckpt["separator"],
                 "--out", str(out), "--batch-size", "2", "--quiet", *extra])


def test_infer_outputs_stems_and_scores(setup, tiny_models, capsys):
    root, data, ckpt = setup
    out = root / "out"
    assert _infer(data, out, ckpt) == 0
    printed = capsys.readouterr().out
    assert "CA-SDRi" in printed and "Accuracy (mixture)" in printed

    results = json.loads((out / "results.json").read_text())
    # the tiny models' own count (the full-size count, > 100 M, is checked in test_demo.py)
    assert isinstance(results["nparams"], int) and results["nparams"] > 0
    names = sorted(p[:-4] for p in os.listdir(data / "soundscape"))
    assert [r["soundscape"] for r in results["probabilities"]] == names

    # the models of ckpt's tagger-4ch and separator folders, loaded once per session (their jitted
    # forward passes shared with other tests)
    tagger, separator = tiny_models["models"]["t4"], tiny_models["models"]["A"]
    wavs = [f for f in os.listdir(out) if f.endswith(".wav")]
    assert all(NAME_RE.match(f) for f in wavs), wavs
    per_clip = {row.split(",")[0]: row.split(",")[1]
                for row in (out / "scores" / "per_clip.csv").read_text().splitlines()[1:]}
    recomputed = []
    for rec in results["probabilities"]:
        name = rec["soundscape"]
        mix = read_audio(data / "soundscape" / f"{name}.wav", channels=4)
        pred = tagger.predict(mix[None])
        labels = np.asarray(pred.labels[0])
        order = sorted(range(3), key=lambda i: (labels[i] == SILENCE, i))   # silence last, stable
        labels = labels[order]
        est = [e["filename"] for e in rec["estimate"]]
        assert est == [f"{name}_{i}_{LABELS[l]}.wav" for i, l in enumerate(labels) if l != SILENCE]
        for e, p in zip(rec["estimate"], np.asarray(pred.probs[0])[order]):
            assert e["probability"] == pytest.approx(float(p), rel=1e-5)
        # the stems are the separator's output for the predicted queries
        stems = np.asarray(separator(mix[None], labels[None].astype(np.int32)))[0]
        for i, l in enumerate(labels):
            if l == SILENCE:
                assert not (out / f"{name}_{i}_silence.wav").exists()
                continue
            written = read_audio(out / f"{name}_{i}_{LABELS[l]}.wav", channels=1)[0]
            assert np.linalg.norm(written - stems[i]) <= 1e-5 * max(np.linalg.norm(stems[i]), 1e-12)
        # the reported CA-SDRi equals the metric recomputed from the written files
        est_wf = np.zeros((3, mix.shape[1]), np.float32)
        for i, l in enumerate(labels):
            if l != SILENCE:
                est_wf[i] = read_audio(out / f"{name}_{i}_{LABELS[l]}.wav")[0]
        refs = reference_files(str(data / "oracle_target"), name)
        ref_wf = np.stack([read_audio(p)[0] for p, _ in refs]) if refs else np.zeros((0, mix.shape[1]), np.float32)
        value = metric.ca_sdri_reference(est_wf, list(labels), ref_wf, [c for _, c in refs], mix[0])
        if value is None:
            assert per_clip[name] == ""
        else:
            assert float(per_clip[name]) == pytest.approx(value, abs=1e-4)
            recomputed.append(value)
    summary = json.loads((out / "scores" / "summary.json").read_text())
    assert summary["clips"] == len(names)
    if recomputed:
        assert summary["ca_sdri"] == pytest.approx(np.mean(recomputed), abs=1e-4)

    # resume: nothing to redo; a clip left unfinished (record not complete, a stem missing: what a kill
    # mid-clip leaves) is redone, the others skipped
    assert _infer(data, out, ckpt) == 0
    assert "resuming: 5 clip(s) already done, 0 to go" in capsys.readouterr().out
    rec_path = out / ".s5jax" / "clips" / f"{names[0]}.json"
    rec = json.loads(rec_path.read_text())
    rec_path.write_text(json.dumps(dict(rec, complete=False)))
    if rec["estimate"]:
        os.unlink(out / rec["estimate"][0]["filename"])
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    killed = out / f".part-{gone.pid}-x.wav"                   # what a killed run leaves behind
    killed.write_bytes(b"half a wav")
    assert _infer(data, out, ckpt) == 0
    assert not killed.exists()
    assert "resuming: 4 clip(s) already done, 1 to go" in capsys.readouterr().out
    again = json.loads((out / "results.json").read_text())
    assert [[e["filename"] for e in c["estimate"]] for c in again["probabilities"]] == \
           [[e["filename"] for e in c["estimate"]] for c in results["probabilities"]]


def test_bad_inputs_are_skipped_with_one_line_each(setup, tmp_path, monkeypatch, capsys):
    from s5jax.system import engine

    root, data, ckpt = setup
    bad = tmp_path / "bad"
    (bad / "soundscape").mkdir(parents=True)
    good = sorted(os.listdir(data / "soundscape"))[:2]
    for f in good:
        (bad / "soundscape" / f).write_bytes((data / "soundscape" / f).read_bytes())
    n = int(SECONDS * 32000)
    sf.write(str(bad / "soundscape" / "rate.wav"), np.zeros((n, 4), np.float32), 16000, subtype="FLOAT")
    sf.write(str(bad / "soundscape" / "mono.wav"), np.zeros((n, 1), np.float32), 32000, subtype="FLOAT")
    x = np.zeros((n, 4), np.float32)
    x[5, 2] = np.nan
    sf.write(str(bad / "soundscape" / "nan.wav"), x, 32000, subtype="FLOAT")
    sf.write(str(bad / "soundscape" / "short.wav"), np.zeros((300, 4), np.float32), 32000, subtype="FLOAT")
    raw = (data / "soundscape" / good[0]).read_bytes()
    (bad / "soundscape" / "cut.wav").write_bytes(raw[: len(raw) // 2])
    out = tmp_path / "out"
    prepared = []           # the clip lengths the engine compiles for before the run

    def spied(*a, **k):
        eng = real(*a, **k)
        prepare = eng.prepare
        eng.prepare = lambda samples: (prepared.append(samples), prepare(samples))[1]
        return eng

    real = engine.baseline_engine
    monkeypatch.setattr(engine, "baseline_engine", spied)
    assert _infer(bad, out, ckpt) == 1
    # the good clips' length, not the truncated cut.wav's (the first by name, whose header libsndfile
    # reads as a shorter clip): no program compiled for a length no clip has
    assert prepared == [n]
    err = capsys.readouterr().out
    for f, why in [("rate.wav", "sample rate 16000 Hz"), ("mono.wav", "1 channel(s), expected 4"),
                   ("nan.wav", "NaN or Inf"), ("cut.wav", "truncated wav"), ("short.wav", "too short")]:
        assert any(f in line and why in line for line in err.splitlines()), (f, err)
    assert "5 clip(s) skipped" in err
    done = json.loads((out / "results.json").read_text())["probabilities"]
    assert sorted(r["soundscape"] + ".wav" for r in done) == good


def test_empty_and_unwritable_are_one_line_errors(setup, tmp_path, capsys):
    _, data, ckpt = setup
    (tmp_path / "empty").mkdir()
    assert _infer(tmp_path / "empty", tmp_path / "o", ckpt) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no .wav soundscapes" in err[0] and "empty" in err[0]
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert _infer(data, blocker / "out", ckpt) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not writable" in err[0] and str(blocker) in err[0]


@pytest.mark.slow
def test_eight_devices_give_the_same_outputs(setup, tmp_path):
    """Data parallel over 8 forced CPU devices (1-ch tagger; a process of its own, as the device count
    is fixed when JAX starts) equals the single-device run (this process's one CPU device)."""
    import jax

    root, data, ckpt = setup
    assert jax.local_device_count() == 1
    outs = {1: tmp_path / "out1", 8: tmp_path / "out8"}
    assert _infer(data, outs[1], ckpt, tagger="tagger-1ch") == 0
    # compiled from nothing (no other test runs on 8 devices): at LLVM -O0, about half the compile time
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8 --xla_backend_optimization_level=0")
    code = ("import jax, sys; from s5jax.cli import main; "
            "assert jax.local_device_count() == 8; sys.exit(main(sys.argv[1:]))")
    r = subprocess.run([sys.executable, "-c", code, "infer", str(data), "--tagger", ckpt["tagger-1ch"],
                        "--separator", ckpt["separator"], "--out", str(outs[8]), "--batch-size", "2",
                        "--quiet"], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    r1 = json.loads((outs[1] / "results.json").read_text())
    r8 = json.loads((outs[8] / "results.json").read_text())
    assert len(r1["probabilities"]) == 5
    assert [[e["filename"] for e in c["estimate"]] for c in r1["probabilities"]] == \
           [[e["filename"] for e in c["estimate"]] for c in r8["probabilities"]]
    for c1, c8 in zip(r1["probabilities"], r8["probabilities"]):
        for e1, e8 in zip(c1["estimate"], c8["estimate"]):
            assert e1["probability"] == pytest.approx(e8["probability"], rel=1e-5)
            a, b = (read_audio(o / e1["filename"])[0] for o in (outs[1], outs[8]))
            assert np.linalg.norm(a - b) <= 1e-5 * max(np.linalg.norm(a), 1e-12)


def test_unreadable_oracle_target_is_reported_and_fails_the_run(setup, tmp_path, capsys):
    import shutil

    _, data, ckpt = setup
    copy = tmp_path / "data"
    shutil.copytree(data, copy)
    target = sorted((copy / "oracle_target").iterdir())[0]
    sf.write(str(target), np.zeros((int(SECONDS * 32000), 1), np.float32), 16000, subtype="FLOAT")
    assert _infer(copy, tmp_path / "out", ckpt) == 1
    out = capsys.readouterr().out
    assert any("not scored" in l and str(target) in l and "sample rate 16000" in l for l in out.splitlines())
    summary = json.loads((tmp_path / "out" / "scores" / "summary.json").read_text())
    assert len(summary["skipped"]) == 1 and summary["clips"] == 4


def test_forced_silent_slot_end_to_end(setup, tiny_models, tmp_path, capsys):
    """A tagger forced to (silence, Buzzer, Speech): silence moves last, stems are named by their slot
    after the move, no file for the silent slot, the record keeps it, and scoring counts it."""
    _, _, ckpt = setup
    data = tmp_path / "data"
    write_scene_set(data, 2, seed=3, cfg=SceneConfig(seconds=SECONDS, silent_rate=0.0))
    out = tmp_path / "out"
    assert _infer(data, out, ckpt, tagger="forced") == 0
    capsys.readouterr()
    separator = tiny_models["models"]["A"]            # ckpt["separator"], loaded once per session
    rows = (out / "scores" / "per_clip.csv").read_text().splitlines()[1:]
    for name in sorted(p[:-4] for p in os.listdir(data / "soundscape")):
        assert sorted(f for f in os.listdir(out) if f.startswith(name)) == \
            [f"{name}_0_Buzzer.wav", f"{name}_1_Speech.wav"]
        rec = json.loads((out / ".s5jax" / "clips" / f"{name}.json").read_text())
        assert [s["label"] for s in rec["slots"]] == ["Buzzer", "Speech", "silence"]
        mix = read_audio(data / "soundscape" / f"{name}.wav", channels=4)
        stems = np.asarray(separator(mix[None], np.array([[3, 15, SILENCE]], np.int32)))[0]
        assert not stems[2].any()
        est = np.zeros_like(stems)
        for i, f in enumerate((f"{name}_0_Buzzer.wav", f"{name}_1_Speech.wav")):
            est[i] = read_audio(out / f)[0]
            assert np.linalg.norm(est[i] - stems[i]) <= 1e-6 * np.linalg.norm(stems[i])
        refs = reference_files(str(data / "oracle_target"), name)
        ref_wf = np.stack([read_audio(p)[0] for p, _ in refs])
        value = metric.ca_sdri_reference(est, [3, 15, SILENCE], ref_wf, [c for _, c in refs], mix[0])
        row = next(r.split(",") for r in rows if r.startswith(name + ","))
        assert row[2] == "Buzzer Speech"
        assert (row[1] == "" if value is None else float(row[1]) == pytest.approx(value, abs=1e-4))


def test_same_shape_batches_are_traced_once(setup, tmp_path, monkeypatch, memo_dir):
    """infer's per-batch programs (the tagger's, the separator's) are traced once each for a run:
    5 clips of one length at --batch-size 2 are three batches, the last one (1 clip) padded to the
    same shape, so it reuses them (a retrace per batch or for the short last batch would cost a
    compile each). `memo_dir`: an empty program cache, so the one trace is the export's (none kept
    from an earlier test)."""
    import chex

    from s5jax.system import stages

    for name in ("_tag_fn", "_separate_fn"):
        real = getattr(stages, name)
        monkeypatch.setattr(stages, name, lambda *a, real=real: chex.assert_max_traces(real(*a), n=1))
    _, data, ckpt = setup
    assert len(os.listdir(data / "soundscape")) == 5
    assert _infer(data, tmp_path / "out", ckpt) == 0
    assert len(json.loads((tmp_path / "out" / "results.json").read_text())["probabilities"]) == 5
