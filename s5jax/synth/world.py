"""The bundled sound world: a procedural dev set in the official layout, made by code in about a minute.

    s5jax world make OUT          (make_world(OUT))

    OUT/sound_event/{train,valid,test}/<Class>/[<group>/]*.wav   mono events, 18 classes (sounds.py)
    OUT/interference/{train,valid,test}/<label>/*.wav             mono non-target sounds
    OUT/noise/{train,valid,test}/*.wav                            4-channel backgrounds
    OUT/room_ir/{train,valid,test}/*.sofa                         4-channel RIRs (SOFA GeneralFIR)
    OUT/metadata/valid.json, valid/*.json                          the fixed validation scenes (SpAudSyn)
    OUT/metadata/test.json, test/*.json                            the test split's scenes (SpAudSyn)
    OUT/synthesized/test/{soundscape,oracle_target}/               the held-out test split, rendered
                                                                   (24-bit PCM; `render` clips, or all)
    OUT/world.json                                                 what made it (config, version)

The official dev set has train and valid splits; the world adds a `test` split of its own sources,
interferers, backgrounds and rooms, so the rendered test scenes share no file and no room with
training or validation. Rooms are shoebox rooms simulated with pyroomacoustics (image source method)
for a small tetrahedral 4-microphone array (radius 4.2 cm) at many source positions around it.

Everything is drawn from seeded NumPy generators keyed by (seed, split, kind, index), so two makes of
the same config are byte-identical (the SOFA files' date attributes are fixed). The folder is built
beside OUT under a temporary name and renamed into place when complete.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import zlib
from dataclasses import dataclass

import numpy as np

from ..errors import S5Error
from ..labels import CLASSES, SAMPLE_RATE
from . import sounds

FORMAT = "s5jax-world"
VERSION = 1
SPLITS = ("train", "valid", "test")
# classes whose files come in sub-folders (a speaker, an instrument, a bell model), so the duplicate
# rule (a class's second source from another sub-folder) acts on them
GROUPED = ("Speech", "MusicalKeyboard", "Doorbell", "Percussion", "Cough", "AlarmClock")
ARRAY_RADIUS = 0.042
_TETRA = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]], np.float64) / np.sqrt(3)


@dataclass(frozen=True)
class WorldConfig:
    seed: int = 2026
    events: tuple[int, int, int] = (24, 6, 6)          # files per class in train / valid / test
    group_size: tuple[int, int, int] = (3, 2, 2)       # files per sub-folder of a GROUPED class (valid and
                                                       # test: 3 groups, so a third same-class source fits)
    interferers: tuple[int, int, int] = (6, 2, 2)      # files per interferer kind
    noises: tuple[int, int, int] = (6, 2, 2)           # 4-channel backgrounds
    noise_seconds: float = 16.0
    rooms: tuple[int, int, int] = (4, 2, 2)            # SOFA files
    positions: int = 36                                # source positions per room
    rir_seconds: float = 0.4                           # impulse responses cut to this length
    valid_scenes: int = 64
    test_clips: int = 200

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


def _rng(cfg: WorldConfig, *key) -> np.random.Generator:
    words = [cfg.seed] + [zlib.crc32(str(k).encode()) for k in key]
    return np.random.default_rng(words)


def _write_wav(path: str, x: np.ndarray, subtype: str = "PCM_16") -> None:
    """Integer PCM only: libsndfile stamps float WAVs with the time of writing (PEAK chunk), which
    would make two makes differ. Atomic (s5jax.audio.write_audio)."""
    from ..audio import write_audio

    os.makedirs(os.path.dirname(path), exist_ok=True)
    write_audio(path, x, subtype=subtype)


# --------------------------------------------------------------------------------------------- audio
def _event_files(root: str, cfg: WorldConfig, split: str, label: str) -> None:
    s = SPLITS.index(split)
    folder = os.path.join(root, "sound_event", split, label)
    voice = None
    for i in range(cfg.events[s]):
        group = i // cfg.group_size[s]
        if label in GROUPED:
            if i % cfg.group_size[s] == 0:
                voice = sounds.class_voice(label, _rng(cfg, split, label, "group", group))
            path = os.path.join(folder, f"{split}{group:02d}", f"{label}_{split}_{i:03d}.wav")
        else:
            voice = sounds.class_voice(label, _rng(cfg, split, label, "voice", i))
            path = os.path.join(folder, f"{label}_{split}_{i:03d}.wav")
        _write_wav(path, sounds.class_sound(label, _rng(cfg, split, label, i), voice))


def _other_files(root: str, cfg: WorldConfig, split: str, _label=None) -> None:
    s = SPLITS.index(split)
    for label in sounds.INTERFERERS:
        for i in range(cfg.interferers[s]):
            x = sounds.interferer_sound(label, _rng(cfg, split, "interference", label, i))
            _write_wav(os.path.join(root, "interference", split, label, f"{label}_{split}_{i:03d}.wav"), x)
    for i in range(cfg.noises[s]):
        x = sounds.background(_rng(cfg, split, "noise", i), cfg.noise_seconds)
        _write_wav(os.path.join(root, "noise", split, f"noise_{split}_{i:03d}.wav"), x)


def _pool(workers: int):
    import concurrent.futures
    import multiprocessing

    # spawn: the parent may hold JAX's threads, which a fork would copy in a broken state
    return concurrent.futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))


def make_sources(root: str, cfg: WorldConfig, log=print, workers: int = 0) -> None:
    """Every audio file of every split. Each file is keyed by its own seed, so the files are the same
    whatever the number of worker processes (0 = in this process)."""
    jobs = [(_event_files, split, label) for split in SPLITS for label in CLASSES]
    jobs += [(_other_files, split, None) for split in SPLITS]
    if workers <= 0:
        for fn, split, label in jobs:
            fn(root, cfg, split, label)
    else:
        with _pool(workers) as pool:
            for f in [pool.submit(fn, root, cfg, split, label) for fn, split, label in jobs]:
                f.result()
    log(f"  sources: {sum(cfg.events) * len(CLASSES)} events, "
        f"{sum(cfg.interferers) * len(sounds.INTERFERERS)} interferers, {sum(cfg.noises)} backgrounds")


# --------------------------------------------------------------------------------------------- rooms
def simulate_room(rng: np.random.Generator, positions: int, rir_seconds: float) -> dict:
    """One shoebox room: -> {"irs" [M, 4, N] float32, "sources" [M, 3] m relative to the array centre,
    "size" [3], "rt60"}. Image-source method (pyroomacoustics), absorption from Sabine's formula."""
    import pyroomacoustics as pra  # a maintained room-acoustics simulator; only needed to make rooms

    size = np.array([rng.uniform(4.0, 8.0), rng.uniform(3.5, 7.0), rng.uniform(2.5, 3.5)])
    rt60 = float(rng.uniform(0.2, 0.55))
    absorption, order = pra.inverse_sabine(rt60, size)
    room = pra.ShoeBox(size, fs=SAMPLE_RATE, materials=pra.Material(absorption), max_order=min(order, 14),
                       air_absorption=False)
    centre = size * np.array([rng.uniform(0.4, 0.6), rng.uniform(0.4, 0.6), 0.0]) + np.array([0, 0, rng.uniform(1.0, 1.5)])
    room.add_microphone_array((centre + ARRAY_RADIUS * _TETRA).T)
    rel = []
    while len(rel) < positions:
        az, el, dist = rng.uniform(-np.pi, np.pi), rng.uniform(-0.35, 0.6), rng.uniform(0.8, 2.2)
        p = dist * np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])
        if np.all(centre + p > 0.3) and np.all(centre + p < size - 0.3):
            rel.append(p)
    for p in rel:
        room.add_source(centre + p)
    room.compute_rir()
    n = int(rir_seconds * SAMPLE_RATE)
    irs = np.zeros((positions, 4, n), np.float32)
    for m in range(4):
        for k in range(positions):
            h = np.asarray(room.rir[m][k], np.float64)[:n]
            irs[k, m, :len(h)] = h
    return {"irs": irs, "sources": np.array(rel), "size": size, "rt60": rt60}


def write_sofa(path: str, irs: np.ndarray, sources: np.ndarray, comment: str) -> None:
    """Impulse responses [M, R, N] and source positions [M, 3] (cartesian, metres, relative to the
    listener at the origin) as a SOFA GeneralFIR file, with fixed dates (reproducible bytes)."""
    import sofar

    sofa = sofar.Sofa("GeneralFIR")
    sofa.Data_IR = irs.astype(np.float64)
    sofa.Data_SamplingRate = float(SAMPLE_RATE)
    sofa.Data_Delay = np.zeros((1, irs.shape[1]))
    sofa.SourcePosition = sources
    sofa.SourcePosition_Type, sofa.SourcePosition_Units = "cartesian", "metre"
    sofa.ListenerPosition = np.zeros((1, 3))
    sofa.ReceiverPosition = ARRAY_RADIUS * _TETRA
    sofa.GLOBAL_Comment = comment
    sofa.GLOBAL_DateCreated = sofa.GLOBAL_DateModified = "2026-01-01 00:00:00"
    sofa.GLOBAL_Title = "s5jax world room"
    sofa.GLOBAL_AuthorContact = sofa.GLOBAL_Organization = "s5jax"
    sofa.GLOBAL_License = "CC0"
    sofar.write_sofa(path, sofa, compression=4)


def make_rooms(root: str, cfg: WorldConfig, log=print) -> None:
    for s, split in enumerate(SPLITS):
        folder = os.path.join(root, "room_ir", split)
        os.makedirs(folder, exist_ok=True)
        for i in range(cfg.rooms[s]):
            room = simulate_room(_rng(cfg, split, "room", i), cfg.positions, cfg.rir_seconds)
            write_sofa(os.path.join(folder, f"room_{split}_{i:02d}.sofa"), room["irs"], room["sources"],
                       f"shoebox {np.round(room['size'], 2).tolist()} m, RT60 {room['rt60']:.2f} s")
        log(f"  rooms: {split} done")


# --------------------------------------------------------------------------------------- scene sets
def render_set(root: str, out: str, scenes: list[tuple[str, dict]]) -> list[str]:
    """Render SpAudSyn scenes [(name, metadata)] of the world into the dev-test layout (soundscape/,
    oracle_target/, the official names), 24-bit PCM (quantisation 2^-23, ≈ 115 dB below the scenes'
    levels). A clip's targets are written first, its soundscape last, each atomically."""
    from .scenes import SceneRenderer
    from .testset import target_names

    for sub in ("soundscape", "oracle_target"):
        os.makedirs(os.path.join(out, sub), exist_ok=True)
    renderer = SceneRenderer(root)
    for name, meta in scenes:
        r = renderer.render(meta, name)
        for fname, dry in zip(target_names(name, r["labels"]), r["dry"]):
            _write_wav(os.path.join(out, "oracle_target", fname), np.asarray(dry, np.float32), "PCM_24")
        _write_wav(os.path.join(out, "soundscape", f"{name}.wav"), np.asarray(r["mixture"], np.float32), "PCM_24")
    return [n for n, _ in scenes]


def make_scene_sets(root: str, cfg: WorldConfig, log=print) -> None:
    """metadata/valid.json (the fixed validation scenes) and metadata/test.json (the test split's
    scenes, all `test_clips` of them; `render_test` renders them), as the baseline's SpAudSyn lists."""
    from .metadata import write_scenes
    from .scenes import SceneSynth, SynthConfig

    valid = SceneSynth(root, "valid", SynthConfig.separator())
    write_scenes(os.path.join(root, "metadata", "valid.json"),
                 [(f"world_valid_{i:04d}", valid.draw(cfg.seed + 1, i)) for i in range(cfg.valid_scenes)])
    test = SceneSynth(root, "test", SynthConfig.tagger())
    write_scenes(os.path.join(root, "metadata", "test.json"),
                 [(f"world_test_{i:04d}", test.draw(cfg.seed + 2, i)) for i in range(cfg.test_clips)])


def testset_dir(root: str) -> str:
    return os.path.join(root, "synthesized", "test")


def render_test(root: str, clips: int | None = None, log=print, progress: bool = False) -> str:
    """Render the first `clips` scenes of the test split (all when None) that are not rendered yet;
    returns the set folder. An interrupted render resumes (a clip with its soundscape is complete)."""
    from .metadata import read_scenes

    scenes = read_scenes(os.path.join(root, "metadata", "test.json"))
    scenes = scenes if clips is None else scenes[:clips]
    out = testset_dir(root)
    todo = [(n, m) for n, m in scenes if not os.path.isfile(os.path.join(out, "soundscape", n + ".wav"))]
    if todo:
        from tqdm import tqdm

        for item in tqdm(todo, desc="rendering test clips", unit="clip", disable=not progress):
            render_set(root, out, [item])
        log(f"  test split: {len(todo)} clip(s) rendered ({len(scenes)} asked)")
    return out


def is_world(path: str, cfg: WorldConfig | None = None) -> bool:
    try:
        with open(os.path.join(path, "world.json")) as f:
            doc = json.load(f)
    except (OSError, ValueError):
        return False
    return doc.get("format") == FORMAT and doc.get("version") == VERSION and \
        (cfg is None or doc.get("config") == cfg.to_dict())


def make_world(out: str | os.PathLike, cfg: WorldConfig = WorldConfig(), log=print,
               workers: int | None = None, render: int | None = None, progress: bool = False) -> str:
    """Make the world in `out` (a new or empty folder) and render the first `render` test clips (all
    when None); a world of the same config already there is kept, and only missing clips rendered.
    Returns `out`."""
    out = os.path.abspath(os.fspath(out))
    if is_world(out, cfg):
        log(f"{out}: the world is there")
        render_test(out, render, log, progress)
        return out
    if os.path.exists(out) and (not os.path.isdir(out) or os.listdir(out)):
        raise S5Error(f"{out}: exists and is not an s5jax world of this config; choose a new or empty folder")
    parent = os.path.dirname(out)
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.join(parent, f".{os.path.basename(out)}.part-{os.getpid()}")
    try:
        os.makedirs(tmp)
        log(f"making the world in {out}")
        make_sources(tmp, cfg, log, (os.cpu_count() or 1) if workers is None else workers)
        make_rooms(tmp, cfg, log)
        make_scene_sets(tmp, cfg, log)
        with open(os.path.join(tmp, "world.json"), "w") as f:
            json.dump({"format": FORMAT, "version": VERSION, "config": cfg.to_dict()}, f, indent=1)
        if os.path.isdir(out):
            os.rmdir(out)                    # empty (checked above)
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    render_test(out, render, log, progress)
    return out
