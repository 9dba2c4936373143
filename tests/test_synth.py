"""Scene synthesis from a tiny dataset in the official layout (written at test time)."""
from __future__ import annotations

import os
import shutil
from collections import Counter

import numpy as np
import pytest
import soundfile as sf

from s5jax.errors import DataError
from s5jax.labels import CLASSES, SILENCE
from s5jax.synth import rir as rir_lib
from s5jax.synth.scenes import SceneSynth, SynthConfig, read_metadata, write_metadata
from tinyset import make_dataset, room_irs, write_sofa


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("ds"))


@pytest.fixture(scope="module")
def synth(root):
    return SceneSynth(root, "train", SynthConfig.tagger(seconds=1.0))


def test_shapes_labels_and_silence_last(synth):
    for i in range(20):
        spec = synth.draw(3, i)
        sc = synth.render(spec)
        assert sc["mixture"].shape == (4, 32000) and sc["mixture"].dtype == np.float32
        assert sc["refs"].shape == (3, 32000) and sc["labels"].shape == (3,)
        k = len(spec["events"])
        assert 0 <= k <= 3
        # label multiset = the events' classes, in the spec's order, silence padded at the end
        assert sc["labels"][:k].tolist() == [CLASSES.index(e["label"]) for e in spec["events"]]
        assert (sc["labels"][k:] == SILENCE).all()
        assert (sc["refs"][k:] == 0).all() and all(np.abs(sc["refs"][j]).max() > 0 for j in range(k))
        assert len(spec["interferers"]) <= 2


@pytest.mark.parametrize("share", [None, 0.4, 0.0])
def test_zero_target_share_over_many_draws(synth, share):
    n = 1500
    zero = sum(len(synth.draw(11, i, zero_share=share)["events"]) == 0 for i in range(n)) / n
    want = 0.25 if share is None else share            # None = official uniform count over [0, 3]
    assert abs(zero - want) < 0.035, (share, zero)


def test_separator_recipe_never_silent(root):
    s = SceneSynth(root, "train", SynthConfig.separator(seconds=1.0))
    counts = Counter(len(s.draw(0, i)["events"]) for i in range(300))
    assert set(counts) == {1, 2, 3}


def test_duplicates_respect_angle_and_folder_rules(synth):
    dup_clips = 0
    for i in range(600):
        spec = synth.draw(5, i)
        room = synth.room(os.path.join(synth.root, spec["room"]))
        by_class = {}
        for e in spec["events"]:
            by_class.setdefault(e["label"], []).append(e)
        if any(len(v) > 1 for v in by_class.values()):
            dup_clips += 1
        for evs in by_class.values():
            for a in range(len(evs)):
                for b in range(a + 1, len(evs)):
                    ang = rir_lib.angle_deg(room.directions[evs[a]["position"]], room.directions[evs[b]["position"]])
                    assert ang > 60.0, (i, evs)
                    fa, fb = evs[a]["file"], evs[b]["file"]
                    assert fa != fb
                    ga, gb = (os.path.dirname(f).split(os.sep)[-1] for f in (fa, fb))
                    assert ga != gb or evs[a]["label"] in (ga, gb)     # different group folders (or top level)
    # count >= 2 in half the clips, duplicates in half of those: about 25 % of tagger clips
    assert 0.18 < dup_clips / 600 < 0.32, dup_clips


def test_references_equal_the_direct_path_and_levels(synth):
    cfg = synth.cfg
    for i in range(40):
        spec = synth.draw(7, i)
        if spec["events"]:
            break
    sc = synth.render(spec)
    room = synth.room(os.path.join(synth.root, spec["room"]))
    for slot, ev in enumerate(spec["events"]):
        x, _ = sf.read(os.path.join(synth.root, ev["file"]), dtype="float32")
        x = x[ev["offset"]:ev["offset"] + ev["frames"]].astype(np.float64)
        x /= np.abs(x).max()
        ir = room.irs[ev["position"]].astype(np.float64)
        ir = ir / np.sqrt(np.mean(np.sum(ir ** 2, -1)))
        wet = np.stack([np.convolve(x, ir[c]) for c in range(4)])         # direct (time-domain) convolution
        gain = np.sqrt(10 ** ((cfg.ref_db + ev["snr"]) / 10) / np.mean(wet ** 2))
        peak = int(np.argmax(np.abs(ir[0])))
        win = np.zeros_like(ir[0])
        lo, hi = peak - round(0.006 * 32000), peak + round(0.050 * 32000) + 1
        win[max(lo, 0):hi] = ir[0, max(lo, 0):hi]
        dry = np.zeros(cfg.samples)
        seg = gain * np.convolve(x, win)
        k = min(seg.size, cfg.samples - ev["start"])
        dry[ev["start"]:ev["start"] + k] = seg[:k]
        np.testing.assert_allclose(sc["refs"][slot], dry, rtol=0, atol=1e-6 * np.abs(dry).max())
        # the reference is not the reverberant channel 0: the tail after 50 ms is missing
        reverb = np.zeros(cfg.samples)
        reverb[ev["start"]:ev["start"] + k] = gain * np.convolve(x, ir[0])[:k]
        assert np.linalg.norm(sc["refs"][slot] - reverb) > 0.05 * np.linalg.norm(reverb)


def test_deterministic_per_seed_and_index(synth):
    a, b = synth.scene(1, 17), synth.scene(1, 17)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    c = synth.scene(2, 17)
    assert not np.array_equal(a["mixture"], c["mixture"])
    assert synth.draw(1, 18) != synth.draw(1, 17)


def test_metadata_round_trip_rebuilds_identical_scenes(synth, tmp_path):
    specs = [synth.draw(9, i) for i in range(4)]
    path = tmp_path / "valid.json"
    write_metadata(path, specs, synth.cfg)
    cfg, back = read_metadata(path)
    assert cfg == synth.cfg and back == specs
    for s in specs:
        np.testing.assert_array_equal(synth.render(s)["mixture"], synth.scene(9, s["index"])["mixture"])


def test_fft_convolution_equals_direct():
    rng = np.random.default_rng(0)
    x, ir = rng.standard_normal(1000), rng.standard_normal((4, 77))
    np.testing.assert_allclose(rir_lib.fft_convolve(x, ir), np.stack([np.convolve(x, h) for h in ir]), atol=1e-10)


# ------------------------------------------------------------------------------ bad input
def _broken(root, tmp_path, breaker):
    dst = tmp_path / "broken"
    shutil.copytree(root, dst)
    return breaker(dst)


def _break_missing_class(d):
    shutil.rmtree(d / "sound_event" / "train" / "Speech")
    return d / "sound_event" / "train" / "Speech"


def _break_sofa(d):
    p = d / "room_ir" / "train" / "room1.sofa"
    p.write_bytes(b"not a netcdf file")
    return p


def _break_event_rate(d):
    p = d / "sound_event" / "train" / "Cough" / "g1" / "Cough_g1.wav"
    sf.write(p, np.zeros(8000, np.float32) + 0.1, 16000)
    return p


def _break_sofa_rate(d):
    p = d / "room_ir" / "train" / "room0.sofa"
    write_sofa(p, room_irs(np.random.default_rng(0)), rate=48000)
    return p


def _break_mono_noise(d):
    p = d / "noise" / "train" / "noise1.wav"
    sf.write(p, np.zeros(32000, np.float32) + 0.1, 32000)
    return p


def _break_mono_rir(d):
    p = d / "room_ir" / "train" / "room0.sofa"
    write_sofa(p, room_irs(np.random.default_rng(0), channels=1))
    return p


def _break_empty_split(d):
    for f in os.listdir(d / "noise" / "train"):
        os.unlink(d / "noise" / "train" / f)
    return d / "noise" / "train"


@pytest.mark.parametrize("breaker,message", [
    (_break_missing_class, "missing class folder"),
    (_break_sofa, "unreadable SOFA file"),
    (_break_event_rate, "sample rate 16000 Hz, expected 32000 Hz"),
    (_break_sofa_rate, "sample rate 48000 Hz, expected 32000 Hz"),
    (_break_mono_noise, "1 channel(s), a noise recording must be 4-channel"),
    (_break_mono_rir, "expected [positions, 4 receivers"),
    (_break_empty_split, "empty split"),
])
def test_bad_dataset_is_one_error_naming_the_file(root, tmp_path, breaker, message):
    bad = _broken(root, tmp_path, breaker)
    with pytest.raises(DataError) as e:
        SceneSynth(tmp_path / "broken", "train", SynthConfig.tagger(seconds=1.0)).check_rooms()
    text = str(e.value)
    assert "\n" not in text and message in text and str(bad) in text, text
