"""Scene synthesis in SpAudSyn's metadata format, on tiny dev sets in the official layout written at test
time: hand-written official scenes rendered and checked against a plain numpy rendering written here,
the drawing checked against the official distributions, the official failures and warnings."""
from __future__ import annotations

import json
import math
import os
import shutil
import warnings
from collections import Counter

import numpy as np
import pytest
import soundfile as sf

from s5jax.errors import DataError
from s5jax.labels import CLASSES, SILENCE
from s5jax.synth.scenes import SceneSynth, SynthConfig, read_scenes
from tinyset import POSITIONS_DEG, make_dataset, room_irs, write_sofa

SR = 32000
ROOM_MODULE = "src.modules.spatial_audio_synthesizer.room"


# ------------------------------------------------------------------------------ the datasets
@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """data/dev_set with train + valid, noise recordings of 3.5 s; extra valid files at 48 kHz (a source,
    a room, a noise recording) and a short noise file (looped); train: no Blender folder, a file directly
    under interference/train/ and a 2-channel noise recording."""
    base = tmp_path_factory.mktemp("repo")
    root = make_dataset(base / "data" / "dev_set", noise_seconds=3.5)
    rng = np.random.default_rng(9)
    v = os.path.join(root, "{}", "valid")
    os.makedirs(os.path.join(v.format("sound_event"), "Speech", "g3"))
    sf.write(os.path.join(v.format("sound_event"), "Speech", "g3", "s48.wav"),
             (0.3 * np.sin(np.arange(24000) * 0.05) * np.hanning(24000)).astype(np.float32), 48000, subtype="FLOAT")
    write_sofa(os.path.join(v.format("room_ir"), "room48.sofa"), room_irs(rng, taps=3600), rate=48000)
    sf.write(os.path.join(v.format("noise"), "n48.wav"), 0.1 * rng.standard_normal((48000 * 2, 4)), 48000,
             subtype="PCM_16")
    sf.write(os.path.join(v.format("noise"), "short.wav"), 0.1 * rng.standard_normal((12000, 4)), SR,
             subtype="PCM_16")
    t = os.path.join(root, "{}", "train")
    shutil.rmtree(os.path.join(t.format("sound_event"), "Blender"))
    sf.write(os.path.join(t.format("interference"), "loose.wav"), 0.1 * rng.standard_normal(8000), SR)
    sf.write(os.path.join(t.format("noise"), "stereo.wav"), 0.1 * rng.standard_normal((SR * 3, 2)), SR)
    return root


def pos(m: int) -> list[list[float]]:
    a = math.radians(POSITIONS_DEG[m])
    return [[1.5 * math.cos(a), 1.5 * math.sin(a), 0.0]]


def config(folders: dict) -> dict:
    return {"duration": 1.0, "sr": SR, "max_event_overlap": 3, "max_event_dur": 1.0, "ref_db": -55,
            "foreground_dir": folders["sound_event"], "background_dir": folders["noise"],
            "interference_dir": folders["interference"],
            "room_config": {"module": ROOM_MODULE, "main": "SofaRoom",
                            "args": {"path": folders["room_ir"], "direct_range_ms": [6, 50]}},
            "verbose": False}


def ev(label, source_file, source_time, event_time, event_duration, m, snr, role="foreground"):
    return {"label": label, "source_file": source_file, "source_time": source_time, "event_time": event_time,
            "event_duration": event_duration, "event_position": pos(m), "snr": snr, "role": role}


def room(sofa_path, rate=SR, taps=2400):
    return {"module": ROOM_MODULE, "main": "SofaRoom.from_metadata",
            "args": {"metadata": {"sofa_path": sofa_path, "sr": rate, "nchan": 4, "nrir": 8, "rir_len": taps,
                                  "direct_range_ms": [6, 50]}}}


def hand_written(root) -> dict:
    """Three scenes written from the format: the baseline's relative paths, absolute paths, 48 kHz files."""
    rel = {k: f"data/dev_set/{k}/valid" for k in ("sound_event", "noise", "interference", "room_ir")}
    absolute = {k: os.path.join(root, k, "valid") for k in rel}
    a = {"config": config(rel),
         "fg_events": [ev("Speech", "Speech/g1/Speech_g1.wav", 0.05, 0.5, 0.2, 0, 12.0),
                       ev("Speech", "Speech/g2/Speech_g2.wav", 0, 0.1, 0.25, 4, 7.5),
                       ev("Doorbell", "Doorbell/Doorbell_top.wav", 0.0, 0.9, 0.3, 2, 18.0)],   # cut at the end
         "bg_events": [{"label": None, "source_file": "noise1.wav", "source_time": 1, "event_time": 0,
                        "event_duration": 1.0, "event_position": None, "snr": 0, "role": "background"}],
         "int_events": [ev("Siren", "Siren/Siren.wav", 0, 0.3, 0.4, 6, 3.0, "interference")],
         "room": room("data/dev_set/room_ir/valid/room1.sofa")}
    b = {"config": config(absolute),
         "fg_events": [],
         "bg_events": [{"label": None, "source_file": os.path.join(absolute["noise"], "short.wav"),
                        "source_time": None, "event_time": 0, "event_duration": 1.0, "event_position": None,
                        "snr": 0, "role": "background"}],
         "int_events": [ev("Engine", "Engine/Engine.wav", 0.1, 0.25, 0.3, 1, 9.0, "interference")],
         "room": room(os.path.join(absolute["room_ir"], "room0.sofa"))}
    c = {"config": config(rel),
         "fg_events": [ev("Speech", "Speech/g3/s48.wav", 0.1, 0.2, 0.3, 3, 10.0),
                       ev("Cough", "Cough/g1/Cough_g1.wav", 0, 0.05, 0.2, 7, 6.0)],
         "bg_events": [{"label": None, "source_file": "n48.wav", "source_time": 1, "event_time": 0,
                        "event_duration": 1.0, "event_position": None, "snr": 0, "role": "background"}],
         "int_events": [],
         "room": room("data/dev_set/room_ir/valid/room48.sofa", rate=48000, taps=3600)}
    return {"scene_a": a, "scene_b": b, "scene_c": c}


@pytest.fixture(scope="module")
def official(root):
    """metadata/valid.json + metadata/valid/<name>.json, written as the baseline's files are."""
    scenes = hand_written(root)
    os.makedirs(os.path.join(root, "metadata", "valid"))
    for name, meta in scenes.items():
        with open(os.path.join(root, "metadata", "valid", f"{name}.json"), "w") as f:
            json.dump(meta, f, indent=4)
    with open(os.path.join(root, "metadata", "valid.json"), "w") as f:
        json.dump([{"metadata_path": f"valid/{n}.json"} for n in scenes], f)
    return os.path.join(root, "metadata", "valid.json"), scenes


# ------------------------------------------------------------------------------ a plain rendering
def _resampled(x, rate):
    if rate == SR:
        return x
    import soxr

    n = math.ceil(x.shape[-1] * SR / rate)
    y = np.stack([soxr.resample(r, rate, SR, "HQ") for r in np.atleast_2d(x)])
    y = np.pad(y, ((0, 0), (0, max(0, n - y.shape[-1]))))[:, :n]
    return y if x.ndim == 2 else y[0]


def reference(root, meta):
    """The scene rendered straightforwardly from the format's definition: (mixture [4, n], [(label,
    dry [n])] in event_time order)."""
    import sofar

    cfg = meta["config"]
    n = int(cfg["duration"] * SR)

    def place(raw, name=""):
        return os.path.join(root, raw.split("data/dev_set/")[-1], name) if not os.path.isabs(raw) else \
            os.path.join(raw, name)

    info = meta["room"]["args"]["metadata"]
    sofa = sofar.read_sofa(place(info["sofa_path"]), verify=False, verbose=False)
    rate = int(np.ravel(sofa.Data_SamplingRate)[0])
    irs = np.stack([_resampled(np.asarray(h, np.float64), rate) for h in sofa.Data_IR])
    az = np.radians(np.asarray(sofa.SourcePosition)[:, 0])
    xyz = np.stack([1.5 * np.cos(az), 1.5 * np.sin(az), np.zeros_like(az)], -1)
    mix = np.zeros((4, n))
    for bg in meta["bg_events"]:
        data, fs = sf.read(place(cfg["background_dir"], bg["source_file"]), dtype="float32", always_2d=True)
        if bg["source_time"] is None:
            x = np.tile(data.T, (1, n // len(data) + 1))[:, :n]
        else:
            s0 = int(bg["source_time"] * fs)
            x = _resampled(data[s0:s0 + int(bg["event_duration"] * fs)].T, fs)
        mix += x * np.sqrt(10 ** ((cfg["ref_db"] + bg["snr"]) / 10) / np.mean(x.astype(np.float64) ** 2))
    targets = []
    events = sorted(meta["fg_events"], key=lambda e: e["event_time"]) + \
        sorted(meta["int_events"], key=lambda e: e["event_time"])
    for e in events:
        folder = cfg["foreground_dir"] if e["role"] == "foreground" else cfg["interference_dir"]
        data, fs = sf.read(place(folder, e["source_file"]), dtype="float32", always_2d=True)
        s0 = int(e["source_time"] * fs)
        x = _resampled(data[s0:s0 + int(e["event_duration"] * fs), 0], fs).astype(np.float64)
        x = x / np.abs(x).max()
        h = irs[np.argmin(np.linalg.norm(xyz - np.asarray(e["event_position"][0]), axis=1))]
        h = h / np.sqrt(np.mean(np.sum(h ** 2, axis=1)))
        wet = np.stack([convolve(x, hc) for hc in h])
        gain = np.sqrt(10 ** ((cfg["ref_db"] + e["snr"]) / 10) / np.mean(wet ** 2))
        on = int(e["event_time"] * SR)
        k = min(wet.shape[1], n - on)
        mix[:, on:on + k] += gain * wet[:, :k]
        if e["role"] == "foreground":
            p = int(np.argmax(np.abs(h[0])))
            win = np.zeros_like(h[0])
            lo, hi = max(p - 192, 0), min(p + 1600, len(win) - 1)          # 6 ms and 50 ms at 32 kHz
            win[lo:hi + 1] = h[0, lo:hi + 1]
            dry = np.zeros(n)
            dry[on:on + k] = gain * convolve(x, win)[:k]
            targets.append((e["label"], dry))
    return mix, targets


def convolve(x, h):
    """Full linear convolution through numpy's FFT (the renderer uses scipy's fftconvolve)."""
    size = x.shape[-1] + h.shape[-1] - 1
    return np.fft.irfft(np.fft.rfft(x, size) * np.fft.rfft(h, size), size)


def close(a, b):
    return np.abs(np.asarray(a, np.float64) - b).max() <= 1e-6 * np.abs(b).max()


# ------------------------------------------------------------------------------ rendering
def test_official_metadata_renders_the_dev_test_layout_as_a_plain_rendering(root, official, tmp_path):
    from s5jax.audio import read_audio
    from s5jax.cli import main

    listing, scenes = official
    out = tmp_path / "set"
    assert main(["scenes", "render", "--data", root, "--metadata", listing, "--out", str(out), "--quiet"]) == 0
    assert sorted(os.listdir(out / "soundscape")) == ["scene_a.wav", "scene_b.wav", "scene_c.wav"]
    # official naming: an index only where a class occurs twice (the index = place in event_time order)
    assert sorted(os.listdir(out / "oracle_target")) == [
        "scene_a_0_Speech.wav", "scene_a_1_Speech.wav", "scene_a_Doorbell.wav", "scene_c_Cough.wav",
        "scene_c_Speech.wav"]
    for name, meta in scenes.items():
        mix, targets = reference(root, meta)
        got = read_audio(out / "soundscape" / f"{name}.wav", channels=4)
        assert close(got, mix), name
        counts = Counter(lab for lab, _ in targets)
        for k, (lab, dry) in enumerate(targets):
            fname = f"{name}_{k}_{lab}.wav" if counts[lab] > 1 else f"{name}_{lab}.wav"
            assert close(read_audio(out / "oracle_target" / fname, channels=1)[0], dry), fname
    # a single scene JSON is a list of one, named after its file; a second call resumes (nothing redone)
    one = tmp_path / "one"
    assert main(["scenes", "render", "--data", root, "--metadata", os.path.join(root, "metadata", "valid",
                                                                                "scene_b.json"),
                 "--out", str(one), "--quiet"]) == 0
    assert os.listdir(one / "soundscape") == ["scene_b.wav"] and os.listdir(one / "oracle_target") == []
    stamp = os.stat(out / "soundscape" / "scene_a.wav").st_mtime_ns
    assert main(["scenes", "render", "--data", root, "--metadata", listing, "--out", str(out), "--quiet"]) == 0
    assert os.stat(out / "soundscape" / "scene_a.wav").st_mtime_ns == stamp


def test_synth_render_gives_targets_in_time_order_and_silence_last(root, official):
    _, scenes = official
    synth = SceneSynth(root, "valid", SynthConfig.tagger(seconds=1.0))
    got = synth.render(scenes["scene_a"])
    mix, targets = reference(root, scenes["scene_a"])
    assert got["mixture"].shape == (4, SR) and got["mixture"].dtype == np.float32
    assert got["labels"].tolist() == [CLASSES.index("Speech"), CLASSES.index("Speech"), CLASSES.index("Doorbell")]
    for k, (_, dry) in enumerate(targets):
        assert close(got["refs"][k], dry)
    b = synth.render(scenes["scene_b"])
    assert (b["labels"] == SILENCE).all() and not b["refs"].any()


def test_rendered_set_scores_through_infer(root, official, tmp_path):
    from s5jax.cli import main
    from tiny_system import write_separator, write_tagger

    listing, _ = official
    data = tmp_path / "set"
    assert main(["scenes", "render", "--data", root, "--metadata", listing, "--out", str(data), "--quiet"]) == 0
    t4, sep = write_tagger(str(tmp_path / "t4"), 4, seed=1), write_separator(str(tmp_path / "sep"), seed=3)
    assert main(["infer", str(data), "--tagger", t4, "--separator", sep, "--out", str(tmp_path / "out"),
                 "--quiet"]) == 0
    rows = (tmp_path / "out" / "scores" / "per_clip.csv").read_text().splitlines()[1:]
    refs = {r.split(",")[0]: sorted(r.split(",")[3].split()) for r in rows}
    assert refs == {"scene_a": ["Doorbell", "Speech", "Speech"], "scene_b": [], "scene_c": ["Cough", "Speech"]}
    summary = json.loads((tmp_path / "out" / "scores" / "summary.json").read_text())
    assert summary["skipped"] == {}


def test_bad_metadata_is_one_line_naming_the_file_and_nothing_is_written(root, official, tmp_path, capsys):
    from s5jax.cli import main

    listing, scenes = official
    bad = tmp_path / "meta"
    bad.mkdir()
    cases = {
        "missing.json": ([{"metadata_path": "nowhere.json"}], "nowhere.json: no such file"),
        "s5jax_old.json": ({"format": "s5jax-scenes", "scenes": []}, "not a SpAudSyn scene (missing config"),
        "nofile.json": ({**scenes["scene_a"], "fg_events": [ev("Speech", "Speech/none.wav", 0, 0.1, 0.1, 0, 5.0)]},
                        "'Speech/none.wav' not found"),
        "badsnr.json": ({**scenes["scene_a"], "int_events": [{**scenes["scene_a"]["int_events"][0], "snr": "x"}]},
                        "int_events[0].snr: not a finite number"),
    }
    for fname, (doc, message) in cases.items():
        (bad / fname).write_text(json.dumps(doc))
        out = tmp_path / f"out_{fname}"
        assert main(["scenes", "render", "--data", root, "--metadata", str(bad / fname), "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
        assert not out.exists()


# ------------------------------------------------------------------------------ drawing
@pytest.fixture(scope="module")
def draws(root):
    synth = SceneSynth(root, "train", SynthConfig.tagger(seconds=1.0))
    with pytest.warns(UserWarning, match="stereo.wav: 2 channel"):
        specs = [synth.draw(11, i) for i in range(3000)]
    return synth, specs


def test_drawing_follows_the_official_distributions(draws):
    """Expected values from the baseline's config/label YAMLs and SpAudSyn, derived by hand."""
    synth, specs = draws
    n = len(specs)

    def near(x, p, k):                   # a share x of k draws is p within 4.5 binomial standard errors
        assert abs(x - p) <= 4.5 * math.sqrt(p * (1 - p) / k) + 1e-9, (x, p)

    counts = Counter(len(s["fg_events"]) for s in specs)
    for c in range(4):                                    # nevent_range [0, 3], uniform
        near(counts[c] / n, 0.25, n)
    distinct = {c: Counter(len({e["label"] for e in s["fg_events"]}) for s in specs if len(s["fg_events"]) == c)
                for c in (2, 3)}
    near(distinct[2][1] / counts[2], 0.5, counts[2])      # dupse_rate 0.5 -> one duplicate
    near(distinct[3][2] / counts[3], 0.25, counts[3])     # 0.5 x n_dup = 1 of [1, 2]
    near(distinct[3][1] / counts[3], 0.25, counts[3])     # 0.5 x n_dup = 2: three of a kind
    first = Counter(e["label"] for s in specs for e in s["fg_events"])
    assert "Blender" not in first and len(first) == len(CLASSES) - 1   # only the class folders present
    snr = np.array([e["snr"] for s in specs for e in s["fg_events"]])
    assert snr.min() >= 5 and snr.max() <= 20
    near(np.mean(snr < 8.75), 0.25, snr.size)             # uniform [5, 20]
    near(np.mean(snr < 12.5), 0.5, snr.size)
    ints = Counter(len(s["int_events"]) for s in specs)
    for c in range(3):                                    # ninterference_range [0, 2]
        near(ints[c] / n, 1 / 3, n)
    ilab = [e["label"] for s in specs for e in s["int_events"]]
    assert set(ilab) == {"Siren", "Engine"}               # label folders only, never loose.wav
    near(ilab.count("Siren") / len(ilab), 0.5, len(ilab))
    isnr = np.array([e["snr"] for s in specs for e in s["int_events"]])
    assert isnr.min() >= 0 and isnr.max() <= 15
    near(np.mean(isnr < 7.5), 0.5, isnr.size)             # inteference_snr_range [0, 15]
    bg = [s["bg_events"] for s in specs]
    near(sum(not b for b in bg) / n, 1 / 3, n)            # the 2-channel recording (1 of 3) is dropped
    starts = Counter(b[0]["source_time"] for b in bg if b)
    k = sum(starts.values())
    assert set(starts) == {0, 1, 2}                       # whole seconds: floor(uniform(0, 3.5 - 1))
    near(starts[0] / k, 0.4, k)
    near(starts[2] / k, 0.2, k)
    rooms = Counter(s["room"]["args"]["metadata"]["sofa_path"] for s in specs)
    assert set(rooms) == {"data/dev_set/room_ir/train/room0.sofa", "data/dev_set/room_ir/train/room1.sofa"}
    near(rooms["data/dev_set/room_ir/train/room0.sofa"] / n, 0.5, n)
    u = np.array([e["event_time"] / (1.0 - e["event_duration"]) for s in specs for e in s["fg_events"]])
    assert u.min() >= 0 and u.max() <= 1
    near(np.mean(u < 0.5), 0.5, u.size)                   # event_time uniform in [0, duration - event_duration]
    for s in specs:
        times = [e["event_time"] for e in s["fg_events"]]
        assert times == sorted(times)


def test_duplicates_keep_the_60_degree_and_folder_rules(draws):
    _, specs = draws
    pairs = 0
    for s in specs:
        by_class = {}
        for e in s["fg_events"]:
            by_class.setdefault(e["label"], []).append(e)
        for evs in by_class.values():
            for i in range(len(evs)):
                for j in range(i + 1, len(evs)):
                    a, b = (np.asarray(e["event_position"][0]) for e in (evs[i], evs[j]))
                    ang = math.degrees(math.acos(np.clip(a @ b / np.linalg.norm(a) / np.linalg.norm(b), -1, 1)))
                    assert ang > 60.0, s
                    fa, fb = evs[i]["source_file"], evs[j]["source_file"]
                    assert fa != fb
                    ga, gb = (f.split("/")[1] if f.count("/") > 1 else None for f in (fa, fb))
                    assert ga is None or ga != gb          # exclusion depth 1: never the same sub-folder
                    pairs += 1
    assert pairs > 300


def test_draw_is_pure_and_json_round_trips(root, tmp_path):
    from s5jax.synth.scenes import write_scenes

    synth = SceneSynth(root, "valid", SynthConfig.separator(seconds=1.0))
    specs = [(f"s{i}", synth.draw(4, i)) for i in range(6)]
    assert specs[2][1] == synth.draw(4, 2) and specs[2][1] != synth.draw(5, 2)
    write_scenes(tmp_path / "metadata" / "valid.json", specs)
    back = read_scenes(tmp_path / "metadata" / "valid.json")
    assert back == specs
    for (_, a), (_, b) in zip(specs, back):
        np.testing.assert_array_equal(synth.render(a)["mixture"], synth.render(b)["mixture"])
    sc = synth.scene(4, 2)                                 # training: the same scene, targets shuffled
    plain = synth.render(specs[2][1])
    k = len(specs[2][1]["fg_events"])
    assert 1 <= k <= 3 and sorted(sc["labels"][:k]) == sorted(plain["labels"][:k])
    np.testing.assert_array_equal(sc["mixture"], plain["mixture"])


@pytest.mark.parametrize("share", [None, 0.4, 0.0])
def test_zero_target_share(draws, root, share):
    synth = draws[0]
    n = 1200
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        zero = sum(len(synth.draw(12, i, zero_share=share)["fg_events"]) == 0 for i in range(n)) / n
    want = 0.25 if share is None else share
    assert abs(zero - want) <= 4.5 * math.sqrt(want * (1 - want) / n) + 1e-9, (share, zero)


def test_a_duplicate_that_cannot_be_placed_is_an_error_as_officially(tmp_path):
    # every position within 60 degrees of the others: no duplicate can be placed
    root = make_dataset(tmp_path / "narrow", splits=("train",), rooms=1)
    sofa = os.path.join(root, "room_ir", "train", "room0.sofa")
    write_sofa(sofa, room_irs(np.random.default_rng(0), positions=3), azimuths=np.array([0.0, 20.0, 40.0]))
    synth = SceneSynth(root, "train", SynthConfig.separator(seconds=1.0))
    with pytest.raises(DataError) as e:
        for i in range(200):
            synth.draw(0, i)
    assert str(e.value).startswith(sofa) and "60 degrees" in str(e.value) and "\n" not in str(e.value)
    # a class whose only file is used: no file left for its duplicate
    root = make_dataset(tmp_path / "single", splits=("train",))
    for label in CLASSES[1:]:
        shutil.rmtree(os.path.join(root, "sound_event", "train", label))
    only = os.path.join(root, "sound_event", "train", CLASSES[0])
    shutil.rmtree(os.path.join(only, "g1"))
    shutil.rmtree(os.path.join(only, "g2"))
    synth = SceneSynth(root, "train", SynthConfig(seconds=1.0, nevent_range=(2, 2), dupse_rate=1.0))
    with pytest.raises(DataError) as e:
        synth.draw(0, 0)
    assert str(e.value).startswith(only) and "no unused file" in str(e.value)


# ------------------------------------------------------------------------------ bad datasets
def _broken(root, tmp_path, breaker):
    dst = tmp_path / "broken"
    shutil.copytree(root, dst)
    return breaker(dst)


def _break_unknown_class(d):
    p = d / "sound_event" / "train" / "Dorbell"
    p.mkdir()
    sf.write(p / "x.wav", np.zeros(800, np.float32) + 0.1, SR)
    return p


def _break_empty_class(d):
    p = d / "sound_event" / "train" / "Speech"
    shutil.rmtree(p)
    p.mkdir()
    return p


def _break_sofa(d):
    p = d / "room_ir" / "train" / "room1.sofa"
    p.write_bytes(b"not a netcdf file")
    return p


def _break_wav(d):
    p = d / "sound_event" / "train" / "Cough" / "g1" / "Cough_g1.wav"
    p.write_bytes(b"RIFF1234WAVEfmt junk")
    return p


def _break_mono_rir(d):
    p = d / "room_ir" / "train" / "room0.sofa"
    write_sofa(p, room_irs(np.random.default_rng(0), channels=1))
    return p


def _break_no_interference_labels(d):
    p = d / "interference" / "train"
    shutil.rmtree(p)
    p.mkdir()
    sf.write(p / "loose.wav", np.zeros(800, np.float32) + 0.1, SR)
    return p


@pytest.mark.parametrize("breaker,message", [
    (_break_unknown_class, "not one of the 18 classes"),
    (_break_empty_class, "label folder without .wav files"),
    (_break_sofa, "unreadable SOFA file"),
    (_break_wav, "not a readable audio file"),
    (_break_mono_rir, "expected [positions, 4 receivers"),
    (_break_no_interference_labels, "no label folders"),
])
def test_bad_dataset_is_one_error_naming_the_file(root, tmp_path, breaker, message):
    bad = _broken(root, tmp_path, breaker)
    with pytest.raises(DataError) as e:
        SceneSynth(tmp_path / "broken", "train", SynthConfig.tagger(seconds=1.0)).check_rooms()
    text = str(e.value)
    assert "\n" not in text and message in text and str(bad) in text, text
