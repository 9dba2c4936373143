"""Checked audio reads, atomic writes, dataset naming conventions, synthetic scene sets."""
import os

import numpy as np
import pytest
import soundfile as sf

from s5jax.audio import read_audio, write_audio
from s5jax.dataset import estimate_files, estimate_name, list_soundscapes, reference_files
from s5jax.errors import AudioError, S5Error
from s5jax.labels import label_index
from s5jax.synth.toy import SceneConfig, make_scene, write_scene_set


def _wav(path, data, sr=32000, subtype="FLOAT"):
    sf.write(str(path), np.asarray(data, np.float32).T, sr, subtype=subtype)
    return str(path)


def test_read_audio_roundtrip_exact(tmp_path):
    x = np.random.default_rng(0).standard_normal((4, 3200)).astype(np.float32) * 0.1
    write_audio(tmp_path / "a.wav", x)
    y = read_audio(tmp_path / "a.wav", channels=4)
    assert y.dtype == np.float32 and y.shape == (4, 3200)
    np.testing.assert_array_equal(x, y)
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".part")]


@pytest.mark.parametrize("case, message", [
    ("rate", "sample rate 16000 Hz, expected 32000 Hz"),
    ("channels", "2 channel(s), expected 4"),
    ("nan", "NaN or Inf"),
    ("truncated", "truncated wav"),
    ("notaudio", "not a readable audio file"),
    ("missing", "no such file"),
])
def test_read_audio_errors_name_file_and_problem(tmp_path, case, message):
    x = np.zeros((4, 3200), np.float32)
    p = tmp_path / f"{case}.wav"
    if case == "rate":
        _wav(p, x, sr=16000)
    elif case == "channels":
        _wav(p, x[:2])
    elif case == "nan":
        x[1, 10] = np.nan
        _wav(p, x)
    elif case == "truncated":
        _wav(p, x)
        p.write_bytes(p.read_bytes()[:-1000])
    elif case == "notaudio":
        p.write_bytes(b"this is not a wav file" * 20)
    with pytest.raises(AudioError) as e:
        read_audio(p, channels=4)
    msg = str(e.value)
    assert str(p) in msg and message in msg and "\n" not in msg


def test_reference_and_estimate_naming(tmp_path):
    for f in ["s1_Speech.wav", "s1_0_Dishes.wav", "s1_1_Dishes.wav", "s10_Cough.wav",
              "s1_extra_Speech.wav", "s1_Unknown.wav"]:
        (tmp_path / f).write_bytes(b"")
    refs = reference_files(str(tmp_path), "s1")
    assert [(os.path.basename(p), c) for p, c in refs] == [
        ("s1_0_Dishes.wav", label_index("Dishes")), ("s1_1_Dishes.wav", label_index("Dishes")),
        ("s1_Speech.wav", label_index("Speech"))]
    assert estimate_name("s1", 2, label_index("Pour")) == "s1_2_Pour.wav"
    est = tmp_path / "est"
    est.mkdir()
    for f in ["s1_2_Pour.wav", "s1_0_Speech.wav", "s10_0_Cough.wav", "s1_Speech.wav"]:
        (est / f).write_bytes(b"")
    assert [(s, c) for _, s, c in estimate_files(str(est), "s1")] == [
        (0, label_index("Speech")), (2, label_index("Pour"))]


def test_scene_set_layout(tmp_path):
    names = write_scene_set(tmp_path, 5, seed=3, cfg=SceneConfig(seconds=1.0, silent_rate=0.3))
    assert [n for n, _ in list_soundscapes(str(tmp_path))] == names
    total = 0
    for seed, name in enumerate(names):
        mix = read_audio(tmp_path / "soundscape" / f"{name}.wav", channels=4)
        _, labels, dry = make_scene(3 * 100003 + seed, SceneConfig(seconds=1.0, silent_rate=0.3))
        refs = reference_files(str(tmp_path / "oracle_target"), name)
        assert sorted(c for _, c in refs) == sorted(labels)
        total += len(refs)
        assert mix.shape == (4, 32000) and np.abs(mix).max() > 0
    assert total > 0


def test_empty_folder_is_an_error(tmp_path):
    with pytest.raises(S5Error, match="no .wav soundscapes"):
        list_soundscapes(str(tmp_path))
