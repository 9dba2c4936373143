"""`s5jax segment`: windows, stitching (known answers from a fake per-window system), resume after
kill -9, one-line errors; the real tiny models: a 10 s clip equals `infer`, resampled input."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from s5jax.errors import S5Error
from s5jax.segment import (SegmentConfig, assign_lanes, fade_in, read_events_csv, run_segment, window_starts,
                           window_weights)

sys.path.insert(0, os.path.dirname(__file__))
from bandlimited import OUT_RATE_RTOL, at, inner, lowpass, rel  # noqa: E402
from segment_fakes import fake_engine, fake_recording  # noqa: E402

SR = 32000
FAST = SegmentConfig(window_seconds=1.0, hop_seconds=0.5, batch_size=2)


def _write(path, x, sr=SR):
    sf.write(str(path), np.asarray(x).T, sr, subtype="FLOAT")
    return str(path)


def _read(path):
    data, sr = sf.read(str(path), dtype="float32")
    return data, sr


# ---------------------------------------------------------------- pure pieces
def test_window_layout_and_weights_by_hand():
    # 5.3 s, 1 s windows every 0.5 s: ceil(4.3 / 0.5) + 1 = 10 windows, the last padded to 5.5 s
    starts, w = window_starts(int(5.3 * SR), SR, SR // 2)
    assert w == SR and starts == [k * SR // 2 for k in range(10)]
    assert window_starts(SR, SR, SR // 2) == ([0], SR)            # one window: infer's own length
    assert window_starts(700, SR, SR // 2) == ([0], 700)
    # complementary sin²/cos² cross-fade over the overlap
    L = 8
    f = fade_in(L)
    assert np.allclose(f, [np.sin(np.pi * (u + 0.5) / 16) ** 2 for u in range(L)])
    w0, w1 = window_weights(16, 8, True, False), window_weights(16, 8, False, True)
    assert np.allclose(w0[:8], 1) and np.allclose(w0[8:], np.cos(np.pi * (np.arange(8) + 0.5) / 16) ** 2)
    assert np.allclose(w1[8:], 1)
    assert np.allclose(w0[8:] + w1[:8], 1.0, atol=1e-15)
    # hop between window/2 and window
    with pytest.raises(S5Error, match="hop"):
        SegmentConfig(window_seconds=10, hop_seconds=4).samples()


def test_assign_lanes_rule():
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal(50), rng.standard_normal(50)
    assert assign_lanes([b, a], [a, b]) == [1, 0]                 # by correlation
    assert assign_lanes([a], [None, -a]) == [1]                   # a continuing lane beats a silent one
    assert assign_lanes([a], [None]) == [0]                       # a silent lane beats a new one
    assert assign_lanes([a, b], []) == [0, 1]                     # new lanes in slot order
    assert assign_lanes([a, b], [b]) == [1, 0]


# ---------------------------------------------------------------- stitching: known answers
@pytest.fixture(scope="module")
def presence(tmp_path_factory):
    root = tmp_path_factory.mktemp("presence")
    x = fake_recording(5.3, "presence")
    rec = _write(root / "rec.wav", x)
    r = run_segment(rec, str(root / "out"), engine=fake_engine("presence"), config=FAST, progress=False)
    return x, r, root


def test_stitched_stem_equals_signal_and_absent_class_is_silent(presence):
    x, r, root = presence
    from s5jax.labels import LABELS

    assert sorted(r.stems) == sorted([LABELS[3], LABELS[7]])

    a, sr = _read(r.stems[LABELS[3]])
    assert sr == SR and a.shape == (x.shape[1],)
    np.testing.assert_allclose(a, x[0], rtol=0, atol=1e-6)        # present everywhere: the signal itself
    b, _ = _read(r.stems[LABELS[7]])
    # class 7 only in windows 2 ([1.0, 2.0) s) and 3 ([1.5, 2.5) s): fade in, whole, fade out, silence
    h = SR // 2
    expect = np.zeros_like(b)
    f = np.sin(np.pi * (np.arange(h) + 0.5) / (2 * h)) ** 2
    expect[2 * h:3 * h] = f * x[1, 2 * h:3 * h]
    expect[3 * h:4 * h] = x[1, 3 * h:4 * h]
    expect[4 * h:5 * h] = (1 - f) * x[1, 4 * h:5 * h]
    np.testing.assert_allclose(b, expect, rtol=0, atol=1e-6)
    assert not b[:2 * h].any() and not b[5 * h:].any()


def test_events_merged_per_lane(presence):
    x, r, root = presence
    from s5jax.labels import LABELS

    ev = read_events_csv(os.path.join(r.out_dir, "events.csv"))
    assert ev == r.events
    by = {e.label: e for e in ev}
    assert len(ev) == 2
    assert (by[LABELS[3]].onset, by[LABELS[3]].offset) == (0.0, 5.3)
    assert by[LABELS[3]].confidence == pytest.approx(0.9, abs=1e-6)
    assert (by[LABELS[7]].onset, by[LABELS[7]].offset) == (1.0, 2.5)
    assert by[LABELS[7]].confidence == pytest.approx(0.7, abs=1e-6)   # mean of 0.6 and 0.8
    png = open(os.path.join(r.out_dir, "timeline.png"), "rb").read()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert not os.path.exists(os.path.join(r.out_dir, ".s5jax", "windows"))   # removed once complete


def test_duplicates_linked_across_windows(tmp_path):
    x = fake_recording(4.2, "duplicates", seed=5)
    rec = _write(tmp_path / "rec.wav", x)
    r = run_segment(rec, str(tmp_path / "out"), engine=fake_engine("duplicates"), config=FAST, progress=False)
    from s5jax.labels import LABELS

    name = LABELS[5]
    assert sorted(r.stems) == [name, f"{name}_2"]
    lane0, _ = _read(r.stems[name])
    lane1, _ = _read(r.stems[f"{name}_2"])
    np.testing.assert_allclose(lane0, x[0], rtol=0, atol=1e-6)    # slot order swapped in odd windows
    np.testing.assert_allclose(lane1, x[1], rtol=0, atol=1e-6)


# ---------------------------------------------------------------- resume
def test_resume_after_kill_9(tmp_path):
    x = fake_recording(5.3, "presence", seed=2)
    rec = _write(tmp_path / "rec.wav", x)
    out = tmp_path / "out"
    code = ("import sys; sys.path.insert(0, {t!r}); from segment_fakes import run_killed; "
            "run_killed({r!r}, {o!r}, 'presence', 3)").format(t=os.path.dirname(__file__), r=rec, o=str(out))
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert p.returncode == -9, p.stderr
    windows = sorted(os.listdir(out / ".s5jax" / "windows"))
    assert windows == ["000000.npz", "000001.npz", "000002.npz", "000003.npz"]   # 2 batches of 2 survived
    assert not [f for f in os.listdir(out) if f.endswith(".wav") and not f.startswith(".part-")]
    # other settings are refused in one line, nothing touched
    for config, engine, what in ((SegmentConfig(1.0, 0.6, batch_size=2), fake_engine("presence"), "segment.hop"),
                                 (FAST, fake_engine("presence", tag="v2"), "engine.version")):
        with pytest.raises(S5Error) as e:
            run_segment(rec, str(out), engine=engine, config=config, progress=False)
        assert what in str(e.value) and "\n" not in str(e.value)
    assert sorted(os.listdir(out / ".s5jax" / "windows")) == windows
    calls = []
    r = run_segment(rec, str(out), engine=fake_engine("presence", calls=calls), config=FAST, progress=False)
    assert (r.resumed, r.computed, sum(calls)) == (4, 6, 6)
    assert not [f for f in os.listdir(out) if f.startswith(".part-")]       # the dead run's temporaries
    clean = run_segment(rec, str(tmp_path / "clean"), engine=fake_engine("presence"), config=FAST, progress=False)
    assert sorted(os.path.basename(p) for p in r.stems.values()) == sorted(
        os.path.basename(p) for p in clean.stems.values())
    for name, path in r.stems.items():
        np.testing.assert_array_equal(_read(path)[0], _read(clean.stems[name])[0])
    assert r.events == clean.events
    # a finished run is returned as it is
    again = run_segment(rec, str(out), engine=fake_engine("presence", calls=calls), config=FAST, progress=False)
    assert again.computed == 0 and sum(calls) == 6 and again.events == r.events


# ---------------------------------------------------------------- bad input: one line, nothing written
def _bad_files(root):
    good = fake_recording(1.5, "presence")
    files = {"two_channels.wav": ("2 channel(s), expected 4", lambda p: _write(p, good[:2])),
             "nan.wav": ("NaN or Inf", lambda p: _write(p, np.where(np.arange(good.shape[1]) == 30000, np.nan, good))),
             "rate.wav": ("sample rate 48000 Hz, expected 32000 Hz (--resample", lambda p: _write(p, good, 48000)),
             "text.wav": ("not a readable audio file", lambda p: open(p, "w").write("not audio at all\n" * 50)),
             "missing.wav": ("no such file", lambda p: None)}
    for name, (_, make) in files.items():
        make(str(root / name))
    full = _write(root / "full.wav", good)
    data = open(full, "rb").read()
    open(root / "truncated.wav", "wb").write(data[:len(data) // 2])
    files["truncated.wav"] = ("truncated wav", None)
    return files


def test_bad_recordings_one_line(tmp_path, capsys):
    from s5jax.cli import main

    for name, (why, _) in _bad_files(tmp_path).items():
        out = tmp_path / f"out_{name}"
        with pytest.raises(S5Error) as e:
            run_segment(str(tmp_path / name), str(out), engine=fake_engine("presence"), config=FAST, progress=False)
        msg = str(e.value)
        assert why in msg and str(tmp_path / name) in msg and "\n" not in msg, msg
        assert not out.exists()
    # through the command: one line, exit status 2
    code = main(["segment", str(tmp_path / "nan.wav"), "--tagger", "t", "--separator", "s", "--out",
                 str(tmp_path / "cli_out"), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "NaN or Inf" in err[0] and not (tmp_path / "cli_out").exists()


def test_foreign_out_folder_refused(tmp_path):
    rec = _write(tmp_path / "rec.wav", fake_recording(1.5, "presence"))
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(S5Error, match="not made by s5jax segment"):
        run_segment(rec, str(out), engine=fake_engine("presence"), config=FAST, progress=False)
    assert os.listdir(out) == ["notes.txt"]


# ---------------------------------------------------------------- resampling on load
def test_streamed_resampling_equals_whole_file_read(tmp_path):
    from s5jax.audio import AudioStream, read_audio, read_audio_rate

    x = fake_recording(1.3, "presence", seed=3)
    path = _write(tmp_path / "r48.wav", np.repeat(x, 3, axis=1)[:, ::2], 48000)     # any 48 kHz content
    n48 = sf.info(path).frames
    whole, rate, frames = read_audio_rate(path, channels=4, resample=True)
    assert (rate, frames) == (48000, n48) and whole.shape == (4, round(n48 * 32000 / 48000))
    stream = AudioStream(path, channels=4, resample=True, block=7001)
    streamed = np.concatenate(list(stream.blocks()), axis=1)
    assert stream.length == whole.shape[1]
    np.testing.assert_array_equal(streamed, whole)
    with pytest.raises(S5Error, match="sample rate 48000 Hz, expected 32000 Hz"):
        read_audio(path, channels=4)
    # a 32 kHz file is read as it is, flag or not
    p32 = _write(tmp_path / "r32.wav", x)
    np.testing.assert_array_equal(read_audio(p32, resample=True), read_audio(p32))


def test_cache_manifest_records_resampling(tmp_path):
    from s5jax.replay.cache import CacheError, _open_folder, _resampler

    models = {"tagger-4ch": {"sha256": "a"}, "tagger-1ch": {"sha256": "b"}, "separator": {"sha256": "c"},
              "separator2": None}
    cache = str(tmp_path / "cache")
    _open_folder(cache, models, str(tmp_path), str(tmp_path), _resampler(True))
    _open_folder(cache, models, str(tmp_path), str(tmp_path), _resampler(True))     # same: accepted
    with pytest.raises(CacheError, match="made with --resample"):
        _open_folder(cache, models, str(tmp_path), str(tmp_path), None)
    plain = str(tmp_path / "plain")
    _open_folder(plain, models, str(tmp_path), str(tmp_path), None)
    with pytest.raises(CacheError, match="made without --resample"):
        _open_folder(plain, models, str(tmp_path), str(tmp_path), _resampler(True))


class _Sink:
    def __init__(self):
        self.parts = []

    def write(self, block):
        self.parts.append(np.array(block))

    def close(self):
        self.data = np.concatenate(self.parts)


def test_lane_silent_in_previous_window_does_not_compete_by_its_old_stem():
    """Window 0: C and D; window 1: D alone; window 2: C alone. Lane 0 (C) was silent in window 1, so
    by the rule the continuing lane 1 takes window 2's slot, although lane 0's window-0 stem (C is
    periodic with the hop) would correlate perfectly."""
    from s5jax.segment import Stitcher

    W, hop, n = 8, 4, 16
    rng = np.random.default_rng(0)
    period = rng.standard_normal(hop)
    C, D = np.tile(period, n // hop + 1)[:n], rng.standard_normal(n)
    sinks = {}
    st = Stitcher(n, W, hop, lambda name: sinks.setdefault(name, _Sink()))
    silent = np.zeros(W)
    st.add([5, 5, 18], [0.9, 0.8, 0], [C[0:8], D[0:8], silent])
    st.add([5, 18, 18], [0.7, 0, 0], [D[4:12], silent, silent])
    st.add([5, 18, 18], [0.6, 0, 0], [C[8:16], silent, silent])
    events = st.finish()
    from s5jax.labels import LABELS

    lane0, lane1 = sinks[LABELS[5]].data, sinks[f"{LABELS[5]}_2"].data
    f = np.sin(np.pi * (np.arange(4) + 0.5) / 8) ** 2
    np.testing.assert_allclose(lane0, np.r_[C[0:4], (1 - f) * C[4:8], np.zeros(8)], atol=1e-6)
    np.testing.assert_allclose(lane1, np.r_[D[0:4], D[4:8], (1 - f) * D[8:12] + f * C[8:12], C[12:16]], atol=1e-6)
    assert [(e.stem, e.onset * 32000, e.offset * 32000) for e in events] == [
        (LABELS[5], 0, 8), (f"{LABELS[5]}_2", 0, 16)]


def test_out_rate_input_needs_resample(tmp_path, capsys):
    """Without --resample the recording must be at 32 kHz, so `--out-rate input` would do nothing:
    refused in one line (as `infer` does), before anything is read or written."""
    from s5jax.cli import main

    rec = _write(tmp_path / "rec.wav", fake_recording(1.5, "presence"))
    with pytest.raises(S5Error, match="--out-rate input .* give --resample too"):
        run_segment(rec, str(tmp_path / "api"), engine=fake_engine("presence"), progress=False,
                    config=SegmentConfig(1.0, 0.5, out_rate="input"))
    assert not (tmp_path / "api").exists()
    code = main(["segment", rec, "--tagger", "t", "--separator", "s", "--out", str(tmp_path / "cli"),
                 "--out-rate", "input", "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "give --resample too" in err[0], err
    assert not (tmp_path / "cli").exists()
    # with --resample it is accepted (a 32 kHz recording: stems at 32 kHz, its own rate)
    r = run_segment(rec, str(tmp_path / "ok"), engine=fake_engine("presence"), progress=False,
                    config=SegmentConfig(1.0, 0.5, resample=True, out_rate="input"))
    assert r.sample_rate == SR and sf.info(r.stems[sorted(r.stems)[0]]).frames == 48000


# ---------------------------------------------------------------- the real tiny models
@pytest.fixture(scope="module")
def tiny_scene(tmp_path_factory, tiny_models):
    """(folder, {"tagger": tiny 4-ch tagger, "separator": tiny separator A}, a 10 s toy scene's wav)."""
    from tiny_system import baseline_scene

    return baseline_scene(tmp_path_factory.mktemp("segment_tiny"), tiny_models["paths"])


def test_segment_resampled_and_system_preset(tiny_scene):
    """segment of a 48 kHz recording (--resample --out-rate input) and through --system baseline:
    3 s recording in 1 s windows, the same labels and stems as the 32 kHz plain run. Here, not in
    test_segment_models.py (10 s clips, XLA's default optimisations): 1 s windows at batch size 2 run
    the programs `infer` compiles in test_infer.py and test_system_pipeline.py (plain and --system
    baseline) at this file's compile settings, so in the suite they come from the run's compile cache."""
    from s5jax.cli import main
    from s5jax.labels import LABELS

    root, models, clip = tiny_scene
    x, _ = sf.read(clip, dtype="float32", always_2d=True)
    x = lowpass(np.ascontiguousarray(x[:3 * 32000].T))
    sf.write(str(root / "r32.wav"), x.T, 32000, subtype="FLOAT")
    sf.write(str(root / "r48.wav"), at(x, 48000).T, 48000, subtype="FLOAT")
    # batch size 2: 1 s windows at the infer tests' batch size (test_infer.py), one compiled program
    common = ["--tagger", models["tagger"], "--separator", models["separator"], "--window", "1", "--hop", "0.5",
              "--batch-size", "2", "--quiet"]
    assert main(["segment", str(root / "r32.wav"), "--out", str(root / "s32"), *common]) == 0
    assert main(["segment", str(root / "r32.wav"), "--out", str(root / "ssys"), "--system", "baseline", *common]) == 0
    assert main(["segment", str(root / "r48.wav"), "--out", str(root / "s48"), "--resample", "--out-rate", "input",
                 *common]) == 0
    rec = {k: json.loads((root / k / ".s5jax" / "segment.json").read_text()) for k in ("s32", "ssys", "s48")}
    assert rec["s32"]["windows"] == 5
    assert sorted(rec["ssys"]["stems"]) == sorted(rec["s32"]["stems"]) == sorted(rec["s48"]["stems"])
    assert rec["ssys"]["events"] == rec["s32"]["events"]
    assert rec["s48"]["made_by"]["resampler"]["name"] == "soxr" and rec["s48"]["sample_rate"] == 48000
    for name, f in rec["s32"]["stems"].items():
        a, _ = sf.read(root / "s32" / f, dtype="float32")
        b, _ = sf.read(root / "ssys" / f, dtype="float32")
        c, sr = sf.read(root / "s48" / f, dtype="float32")
        assert rel(b, a) <= 1e-5
        assert sr == 48000 and c.shape == (3 * 48000,)
        assert inner(c, at(lowpass(a), 48000), 480) <= OUT_RATE_RTOL, name
    assert [LABELS.index(e[0]) for e in rec["s32"]["events"]]
