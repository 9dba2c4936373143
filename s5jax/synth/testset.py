"""Scene lists as files: a rendered set in the dev-test layout, and drawn scenes' metadata.

    render_set(data, "data/dev_set/metadata/valid.json", "out/valid_set")
        -> out/valid_set/soundscape/<name>.wav                 4-channel mixture (32-bit float)
           out/valid_set/oracle_target/<name>_<Label>.wav      dry channel-0 target, one per target event
           out/valid_set/oracle_target/<name>_<k>_<Label>.wav  (k = the event's index in event_time order,
                                                               when the class occurs more than once)
    draw_set(data, "valid", 100, "out/metadata/valid.json", cfg, seed)
        -> out/metadata/valid.json + out/metadata/valid/<prefix>_<i>.json   (SpAudSyn scenes)

A rendered set is what `s5jax infer` / `cache` / `sweep` read (s5jax.dataset names the files the same
way). It is resumable: a scene is done when its mixture exists (targets are written first, the mixture
last, each atomically); `OUT/.s5jax-scenes.json` records the data and the list it was made from, and
a folder holding anything else, or made from another list, is refused and left untouched.
"""
from __future__ import annotations

import json
import os
from collections import Counter

from ..audio import write_audio
from ..errors import DataError, S5Error
from ..files import read_record, write_text_atomic
from .metadata import check_scene_files, read_scenes, write_scenes
from .scenes import SceneRenderer, SceneSynth, SynthConfig

MARKER = ".s5jax-scenes.json"
FORMAT = "s5jax-rendered-scenes"


def target_names(name: str, labels: list[str]) -> list[str]:
    """Oracle target file names of a scene's target events (in event_time order)."""
    counts = Counter(labels)
    return [f"{name}_{k}_{lab}.wav" if counts[lab] > 1 else f"{name}_{lab}.wav" for k, lab in enumerate(labels)]


def _check_names(path: str, names: list[str]) -> None:
    srt = sorted(names)
    for a, b in zip(srt, srt[1:]):
        if b.startswith(a):
            raise DataError(f"{path}: scene names {a!r} and {b!r}: one begins with the other, and the official "
                            "reader finds a scene's targets by that prefix")


def _claim(out: str, record: dict) -> None:
    """Refuse an OUT that holds anything but an earlier rendering of the same list; record ours."""
    marker = os.path.join(out, MARKER)
    prev = read_record(marker)
    if prev is not None:
        if {k: prev.get(k) for k in record} != record:
            raise S5Error(f"{out}: holds scenes rendered from {prev.get('metadata')} with {prev.get('data')}; "
                          "choose another folder")
        return
    if os.path.exists(out) and (not os.path.isdir(out) or os.listdir(out)):
        raise S5Error(f"{out}: exists and is not a set rendered by `s5jax scenes render`; choose a new or "
                      "empty folder")
    os.makedirs(out, exist_ok=True)
    write_text_atomic(marker, json.dumps({"format": FORMAT, **record}, indent=1))


def render_set(data: str, metadata: str, out: str, progress: bool = False) -> int:
    """Render every scene of `metadata` (a scene JSON or a valid.json list) from the dev set `data`
    into `out` in the dev-test layout. Returns the number of scenes rendered now (others were done)."""
    data, metadata, out = (os.path.abspath(os.fspath(p)) for p in (data, metadata, out))
    if not os.path.isdir(data):
        raise DataError(f"{data}: no such dev set folder")
    named = read_scenes(metadata)
    _check_names(metadata, [n for n, _ in named])
    renderer = SceneRenderer(data)
    for name, meta in named:                 # every file found before OUT is touched
        check_scene_files(meta, renderer.paths, f"{metadata}: {name}")
    _claim(out, {"data": data, "metadata": metadata, "scenes": [n for n, _ in named]})
    mix_dir, tgt_dir = os.path.join(out, "soundscape"), os.path.join(out, "oracle_target")
    os.makedirs(mix_dir, exist_ok=True)
    os.makedirs(tgt_dir, exist_ok=True)
    done = 0
    for i, (name, meta) in enumerate(named):
        mix_path = os.path.join(mix_dir, f"{name}.wav")
        if os.path.isfile(mix_path):
            continue
        r = renderer.render(meta, f"{metadata}: {name}")
        for fname, dry in zip(target_names(name, r["labels"]), r["dry"]):
            write_audio(os.path.join(tgt_dir, fname), dry)
        write_audio(mix_path, r["mixture"])
        done += 1
        if progress:
            print(f"[{i + 1}/{len(named)}] {name}: {len(r['labels'])} target(s)", flush=True)
    return done


def draw_set(data: str, split: str, count: int, out: str, cfg: SynthConfig, seed: int = 0,
             zero_share: float | None = None, prefix: str = "soundscape", absolute_paths: bool = False) -> list[str]:
    """Draw `count` scenes of `split` and write them as the baseline's metadata: `out` (the list, e.g.
    metadata/valid.json) and `<out without .json>/<prefix>_<i>.json`. Existing files are never replaced."""
    out = os.path.abspath(os.fspath(out))
    if not out.endswith(".json"):
        raise S5Error(f"{out}: the scene list must be a .json file (its scenes go to the folder of its name)")
    names = [f"{prefix}_{i:05d}" for i in range(count)]
    folder = out[:-5]
    taken = [p for p in [out] + [os.path.join(folder, f"{n}.json") for n in names] if os.path.exists(p)]
    if taken:
        raise S5Error(f"{taken[0]}: exists; `scenes draw` never replaces files (choose another --out)")
    synth = SceneSynth(data, split, cfg, absolute_paths=absolute_paths)
    scenes = [(n, synth.draw(seed, i, zero_share)) for i, n in enumerate(names)]
    write_scenes(out, scenes)
    return names
