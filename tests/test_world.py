"""The bundled world (`s5jax world make`): layout, determinism, rooms, the rendered test split."""
from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import pytest
import soundfile as sf

from s5jax.errors import S5Error
from s5jax.labels import CLASSES
from s5jax.synth import world

TINY = world.WorldConfig(seed=7, events=(3, 3, 3), group_size=(1, 1, 1), interferers=(1, 1, 1), noises=(1, 1, 1),
                         noise_seconds=11.0, rooms=(1, 1, 1), positions=6, rir_seconds=0.1, valid_scenes=2,
                         test_clips=4)


def _digest(root: str) -> dict[str, str]:
    out = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            p = os.path.join(dirpath, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, root)] = hashlib.sha256(fh.read()).hexdigest()
    return out


@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory):
    root = tmp_path_factory.mktemp("w") / "world"
    world.make_world(root, TINY, log=lambda m: None, workers=0)
    return str(root)


def test_layout(tiny_world):
    for split in ("train", "valid", "test"):
        for label in CLASSES:
            files = [f for _, _, fs in os.walk(os.path.join(tiny_world, "sound_event", split, label)) for f in fs]
            assert len(files) == TINY.events[world.SPLITS.index(split)], (split, label)
        assert os.listdir(os.path.join(tiny_world, "room_ir", split)) == [f"room_{split}_00.sofa"]
        noise = os.path.join(tiny_world, "noise", split, f"noise_{split}_000.wav")
        info = sf.info(noise)
        assert (info.channels, info.samplerate, info.frames) == (4, 32000, 11 * 32000)
    # grouped classes: files in sub-folders of group_size files (the duplicate-exclusion unit)
    speech = os.path.join(tiny_world, "sound_event", "train", "Speech")
    assert sorted(os.listdir(speech)) == ["train00", "train01", "train02"]
    assert len(os.listdir(os.path.join(speech, "train00"))) == 1
    ev = sf.read(os.path.join(tiny_world, "sound_event", "train", "Doorbell", "train00", "Doorbell_train_000.wav"))[0]
    assert ev.ndim == 1 and 0.85 < np.abs(ev).max() < 0.95          # peak 0.9, 16-bit PCM
    soundscapes = sorted(os.listdir(os.path.join(tiny_world, "synthesized", "test", "soundscape")))
    assert soundscapes == [f"world_test_{i:04d}.wav" for i in range(4)]
    with open(os.path.join(tiny_world, "world.json")) as f:
        assert json.load(f)["config"] == TINY.to_dict()


def test_rooms_are_readable_rirs(tiny_world):
    from s5jax.synth.rir import read_room

    room = read_room(os.path.join(tiny_world, "room_ir", "train", "room_train_00.sofa"))
    assert room.irs.shape == (6, 4, 3200)
    # the direct path reaches each microphone after distance / c: the peak of channel 0 lies within a
    # sample or two of the time of flight from the source position the file states
    dist = np.linalg.norm(room.positions, axis=1)     # metres from the array centre: 0.8-2.2 m
    assert ((dist >= 0.8) & (dist <= 2.2)).all(), dist
    peaks = np.argmax(np.abs(room.irs[:, 0]), axis=-1) / 32000 * 343.0
    # time of flight x c = distance, up to the simulator's fixed delay, the microphone's 4.2 cm offset
    # from the centre and a sample (1.1 cm)
    assert np.ptp(peaks - dist) < 0.11, (peaks, dist)


def test_test_split_references_sum_into_the_mixture_and_splits_are_disjoint(tiny_world):
    from s5jax.dataset import reference_files
    from s5jax.synth.metadata import read_scenes

    oracle = os.path.join(tiny_world, "synthesized", "test", "oracle_target")
    scenes = read_scenes(os.path.join(tiny_world, "metadata", "test.json"))
    used = json.dumps([m for _, m in scenes])
    assert "/train" not in used and "/valid" not in used and "room_ir/test" in used
    n_refs = 0
    for i in range(4):
        refs = reference_files(oracle, f"world_test_{i:04d}")
        n_refs += len(refs)
        for path, _ in refs:
            x = sf.read(path)[0]
            assert np.abs(x).max() > 0
    assert n_refs == sum(len(m["fg_events"]) for _, m in scenes)


def test_two_makes_are_byte_identical_and_a_world_is_kept(tiny_world, tmp_path):
    again = world.make_world(tmp_path / "again", TINY, log=lambda m: None, workers=2)
    assert _digest(again) == _digest(tiny_world)
    msgs = []
    world.make_world(again, TINY, log=msgs.append)                 # complete: kept as is
    assert "the world is there" in msgs[0]


def test_the_tests_test_split_world_is_the_full_makes_test_split(tiny_world, tmp_path):
    """conftest's world_dir builds the test split alone (the tests read nothing else): the same files,
    byte for byte, as the test split of a full make, and taken as that world by make_world."""
    from conftest import make_test_split_world

    part = make_test_split_world(tmp_path / "w", TINY)
    full = _digest(tiny_world)
    split = {k: v for k, v in full.items()
             if k == "world.json" or k.split(os.sep)[1:2] in (["test"], ["test.json"])}
    assert {k.split(os.sep)[0] for k in split} == {"sound_event", "interference", "noise", "room_ir", "synthesized",
                                                  "metadata", "world.json"}
    assert _digest(part) == split
    msgs = []
    world.make_world(part, TINY, log=msgs.append)
    assert "the world is there" in msgs[0]


def test_refuses_a_foreign_folder(tmp_path):
    (tmp_path / "mine.txt").write_text("user data")
    with pytest.raises(S5Error, match="not an s5jax world"):
        world.make_world(tmp_path, TINY, log=lambda m: None)
    assert (tmp_path / "mine.txt").read_text() == "user data"
    assert sorted(os.listdir(tmp_path.parent)).count(".%s.part" % tmp_path.name) == 0


def test_world_training_configs_load(tmp_path):
    """The committed recipe (train/configs/world/*.json) parses and points at runs/world; the separator B
    run starts from separator A's best export, as the recipe script copies it."""
    from s5jax.training.config import load_config

    root = os.path.join(os.path.dirname(__file__), "..", "train", "configs", "world")
    kinds = {"tagger4": "tagger", "tagger4_zero_target": "tagger", "tagger1": "tagger", "tagger1_more": "tagger", "quick_tagger": "tagger", "separator_a": "separator",
             "separator_b": "separator"}
    for name, model in kinds.items():
        cfg = load_config(os.path.join(root, f"{name}.json"), model)
        assert os.path.normpath(cfg.data_root).endswith(os.path.join("runs", "world")), name
    b = load_config(os.path.join(root, "separator_b.json"), "separator")
    assert b.init == "checkpoint" and os.path.normpath(b.init_path).endswith(
        os.path.join("separator_a", "export", "best"))
    t4 = load_config(os.path.join(root, "tagger4.json"), "tagger")
    assert t4.in_channels == 4 and t4.zero_share_at(0) < t4.zero_share_at(t4.steps) == t4.zero_share   # curriculum
    zt = load_config(os.path.join(root, "tagger4_zero_target.json"), "tagger")
    assert os.path.normpath(zt.init_path).endswith(os.path.join("tagger4", "export", "best"))
    assert zt.zero_share_at(zt.steps) > t4.zero_share


def test_bundled_names():
    from s5jax import bundled
    from s5jax.cli import _resolve_bundled

    with pytest.raises(S5Error, match="world:tagger-9ch: no such bundled model"):
        bundled.resolve("world:tagger-9ch")
    assert bundled.resolve("ckpt/tagger") == "ckpt/tagger"

    class Args:
        tagger, separator, out = "world:tagger-4ch", "some/folder", "world:not-a-checkpoint-arg"
    a = Args()
    _resolve_bundled(a)
    assert a.tagger == bundled.path("tagger-4ch") and a.separator == "some/folder"
    assert a.out == "world:not-a-checkpoint-arg"
    assert os.path.isfile(os.path.join(a.tagger, "config.json"))
