"""4-channel training scenes as the official recipe draws and renders them (SpAudSyn + the baseline's
DatasetS3, reference §5), described in SpAudSyn's metadata format (metadata.py).

    synth = SceneSynth(root, "train", SynthConfig.tagger())
    spec = synth.draw(seed, index, zero_share=0.4)   # a SpAudSyn scene (JSON-able dict), pure in its arguments
    scene = synth.render(spec)      # mixture [4, n], labels [3] (18 = silence, last), refs [3, n]
    scenes = read_scenes("data/dev_set/metadata/valid.json")      # [(name, spec)]: the official valid set
    write_scenes("out/metadata/valid.json", [(name, spec), ...])   # the same format, written

Drawing (the baseline's `generate` mode): a room uniformly among `room_ir/<split>/*.sofa`; the count
uniform in nevent_range (or the curriculum's zero share); with probability dupse_rate, when the count is
at least 2, n_dup uniform in [1, min(count - 1, max_n_dupse)] duplicates: count - n_dup distinct classes
(uniform without replacement among the class folders present), then each duplicate copies one of them
(with replacement), sits at a room position more than dupse_min_angle from every source of its class
(angles between the position vectors) and takes an unused file of the class outside the folders, at
dupse_exclusion_folder_depth, of its files already used — when none is left, the official code fails and
so does this (a DataError naming the room or the class folder). Each event: a file uniformly among the
class's files, source_time uniform in [0, length - max_event_dur] for longer files (else 0),
event_duration = min(length, max_event_dur), event_time uniform in [0, duration - event_duration],
a position uniformly among the room's, SNR uniform in snr_range. Interferers: count uniform in
ninterference_range, each from a label folder of `interference/<split>` (uniform, with replacement),
SNR uniform in interference_snr_range. Background: a file uniformly among `noise/<split>/**/*.wav`,
its excerpt from floor(uniform(0, length - duration)) whole seconds (the whole file, looped, when not
longer than the scene); a file whose channel count is not the room's is warned about and the scene has
no background, as in SpAudSyn. Events are stored sorted by event_time.

Rendering (SpAudSyn's `synthesize` on a scene, what the baseline's `metadata` mode does with valid.json):
each excerpt is read as librosa.load does (sources.load), peak-normalised, convolved (scipy's
fftconvolve) with the RIR at its position normalised to unit energy averaged over channels, and
scaled so that the mean square of the whole wet event (all channels, the full convolution) is
ref_db + snr dB; it starts at sample int(event_time · sr) and is cut at the scene's end. The
background excerpt is scaled to mean square ref_db + its snr (0) dB. The dry target of a target
event is the excerpt convolved with the channel-0 RIR kept from int(6 ms) before to int(50 ms) after
its peak (direct_range_ms of the room), with the event's scale and onset. An all-zero excerpt is
warned about and adds nothing (its target is zeros), as in SpAudSyn. `render` gives the targets in
event_time order (the metadata mode); `scene` (training) shuffles them as the generate mode does.
"""
from __future__ import annotations

import dataclasses
import math
import os
import warnings
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from ..errors import ConfigError, DataError
from ..labels import CLASSES, NUM_SLOTS, SAMPLE_RATE, SILENCE
from . import rir as rir_lib
from .metadata import (ROOM_MODULE, Paths, check_scene, official_folder, read_scenes,  # noqa: F401
                       write_scenes)
from .sources import SourceFile, load, scan_labelled, scan_noise


@dataclass(frozen=True)
class SynthConfig:
    """The official synthesis settings (the baseline's config/label and config/separation YAMLs);
    `tagger()` / `separator()` give the two recipes."""
    seconds: float = 10.0
    ref_db: float = -55.0
    nevent_range: tuple[int, int] = (0, 3)
    snr_range: tuple[float, float] = (5.0, 20.0)
    max_event_seconds: float = 10.0          # max_event_dur (capped at `seconds`)
    dupse_rate: float = 0.5
    max_n_dupse: int = 2
    dupse_min_angle: float = 60.0
    dupse_exclusion_folder_depth: int = 1
    ninterference_range: tuple[int, int] = (0, 2)
    interference_snr_range: tuple[float, float] = (0.0, 15.0)
    direct_range_ms: tuple[float, float] = (6, 50)
    shuffle_labels: bool = True

    def __post_init__(self):
        for f in ("nevent_range", "snr_range", "ninterference_range", "interference_snr_range", "direct_range_ms"):
            v = tuple(getattr(self, f))
            if len(v) != 2 or (f != "direct_range_ms" and v[0] > v[1]):
                raise ConfigError(f"synth.{f} must be [low, high], got {list(v)}")
            object.__setattr__(self, f, v)
        if not 0 <= self.nevent_range[0] <= self.nevent_range[1] <= NUM_SLOTS:
            raise ConfigError(f"synth.nevent_range must lie in [0, {NUM_SLOTS}]")
        if self.ninterference_range[0] < 0 or self.seconds <= 0 or self.max_event_seconds <= 0:
            raise ConfigError("synth: seconds and max_event_seconds must be positive, ninterference_range >= 0")
        if self.dupse_exclusion_folder_depth < 0 or self.direct_range_ms[0] <= 0:
            raise ConfigError("synth: dupse_exclusion_folder_depth >= 0 and direct_range_ms[0] > 0")

    @classmethod
    def tagger(cls, **kw) -> "SynthConfig":
        return cls(nevent_range=(0, 3), **kw)

    @classmethod
    def separator(cls, **kw) -> "SynthConfig":
        return cls(nevent_range=(1, 3), **kw)

    @property
    def samples(self) -> int:
        return int(self.seconds * SAMPLE_RATE)      # SpAudSyn: int(duration * sr)

    @property
    def max_event_dur(self) -> float:
        return min(self.max_event_seconds, self.seconds)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "SynthConfig":
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ConfigError(f"unknown synth config keys {sorted(unknown)}")
        return cls(**d)


# ---------------------------------------------------------------------------------------- rendering
class SceneRenderer:
    """Renders SpAudSyn scenes from one dev set folder (paths resolved as metadata.Paths says); rooms
    are read when first used and kept (per process)."""

    def __init__(self, root: str | os.PathLike):
        self.paths = Paths(root)
        self.root = self.paths.root
        self._rooms: dict[str, rir_lib.Room] = {}

    def room(self, path: str) -> rir_lib.Room:
        if path not in self._rooms:
            self._rooms[path] = rir_lib.read_room(path)
        return self._rooms[path]

    def render(self, meta: Mapping, where: str = "scene") -> dict[str, Any]:
        """-> {"mixture" [channels, n] float64, "labels" [k] class names, "dry" [k, n] float64}, the
        target events in event_time order (stable)."""
        check_scene(meta, where)
        cfg = meta["config"]
        sr = cfg["sr"]
        if sr != SAMPLE_RATE:
            raise DataError(f"{where}: config.sr {sr}, s5jax works at {SAMPLE_RATE} Hz")
        n = int(cfg["duration"] * sr)
        info = meta["room"]["args"]["metadata"]
        room = self.room(self.paths.locate(info["sofa_path"], f"{where}: room sofa_path", want_dir=False))
        if "sr" in info and info["sr"] != room.rate:
            raise DataError(f"{where}: room sr {info['sr']} but {room.path} is at {room.rate} Hz")
        direct_ms = info.get("direct_range_ms", [6, 50])
        mixture = np.zeros((room.irs.shape[1], n))
        for i, ev in enumerate(meta["bg_events"]):
            self._background(mixture, ev, cfg, f"{where}: bg_events[{i}]")
        fg = sorted(meta["fg_events"], key=lambda e: e["event_time"])
        if len(fg) > NUM_SLOTS:
            raise DataError(f"{where}: {len(fg)} target events, at most {NUM_SLOTS}")
        labels, dry = [], np.zeros((len(fg), n))
        for i, ev in enumerate(fg):
            if ev["label"] not in CLASSES:
                raise DataError(f"{where}: fg_events label {ev['label']!r} is not one of the {len(CLASSES)} classes")
            labels.append(ev["label"])
            dry[i] = self._event(mixture, ev, cfg, room, direct_ms, f"{where}: fg_events", want_dry=True)
        for ev in sorted(meta["int_events"], key=lambda e: e["event_time"]):
            self._event(mixture, ev, cfg, room, direct_ms, f"{where}: int_events", want_dry=False)
        return {"mixture": mixture, "labels": labels, "dry": dry}

    def _background(self, mixture: np.ndarray, ev: Mapping, cfg: Mapping, where: str) -> None:
        path = self.paths.source(ev["source_file"], cfg["background_dir"], where)
        n = mixture.shape[-1]
        if ev["source_time"] is not None:
            amb = load(path, offset=ev["source_time"], duration=ev["event_duration"], mono=False)
        else:                                     # the whole recording, looped to the scene's length
            amb = load(path, mono=False)
            amb = np.tile(amb, (1, -(-n // amb.shape[-1])))[:, :n]
        amb = np.atleast_2d(amb)
        if amb.shape[0] not in (1, mixture.shape[0]) or amb.shape[-1] != n:
            raise DataError(f"{path}: background of {amb.shape[0]} channel(s) x {amb.shape[-1]} samples from "
                            f"{ev['source_time']} s, the scene needs {mixture.shape[0]} x {n}")
        if np.max(np.abs(amb)) == 0:
            warnings.warn(f"{path}: an all-zero background excerpt")
            mixture += amb
            return
        energy_db = 10 * np.log10(np.mean(np.square(amb)))
        mixture += 10 ** ((cfg["ref_db"] + ev["snr"] - energy_db) / 20) * amb

    def _event(self, mixture: np.ndarray, ev: Mapping, cfg: Mapping, room: rir_lib.Room, direct_ms,
               where: str, want_dry: bool) -> np.ndarray | None:
        key = "foreground_dir" if ev["role"] == "foreground" else "interference_dir"
        path = self.paths.source(ev["source_file"], cfg[key], where)
        n = mixture.shape[-1]
        onset = int(ev["event_time"] * cfg["sr"])
        if not 0 <= onset < n:
            raise DataError(f"{where}: event_time {ev['event_time']} lies outside the {cfg['duration']} s scene")
        x = load(path, offset=ev["source_time"], duration=ev["event_duration"], mono=True)
        peak = np.max(np.abs(x))
        if peak == 0:
            warnings.warn(f"{path}: an all-zero excerpt from {ev['source_time']} s (adds nothing)")
        else:
            x = x / peak
        irs = rir_lib.normalise_rir(room.irs[rir_lib.find_position(room, ev["event_position"])])
        wet = rir_lib.fft_convolve(x, irs[0])                       # [channels, len + taps - 1]
        scale = 1.0
        if peak != 0:
            energy_db = 10 * np.log10(np.mean(np.square(wet)))
            scale = 10 ** ((cfg["ref_db"] + ev["snr"] - energy_db) / 20)
            wet = scale * wet
        end = min(onset + wet.shape[-1], n)
        mixture[:, onset:end] += wet[:, :end - onset]
        if not want_dry:
            return None
        dry = scale * rir_lib.fft_convolve(x, rir_lib.direct_path(irs[0, 0], direct_ms, cfg["sr"]))[0]
        out = np.zeros(n)
        out[onset:end] = dry[:end - onset]
        return out


def pack(rendered: Mapping) -> dict[str, np.ndarray]:
    """A rendering -> {"mixture" [4, n] float32, "labels" [3] int32 (silence = 18 last), "refs" [3, n]
    float32 (zeros for silence)}."""
    n = rendered["mixture"].shape[-1]
    labels = np.full(NUM_SLOTS, SILENCE, np.int32)
    refs = np.zeros((NUM_SLOTS, n), np.float32)
    for k, (lab, d) in enumerate(zip(rendered["labels"], rendered["dry"])):
        labels[k], refs[k] = CLASSES.index(lab), d
    return {"mixture": rendered["mixture"].astype(np.float32), "labels": labels, "refs": refs}


# ---------------------------------------------------------------------------------------- drawing
class SceneSynth:
    """Draws scenes from one split of a dev set in the official layout and renders them. Scanning
    checks every file header; only the class folders present are drawn from."""

    def __init__(self, root: str | os.PathLike, split: str, cfg: SynthConfig = SynthConfig(),
                 absolute_paths: bool = False):
        self.renderer = SceneRenderer(root)
        self.root, self.split, self.cfg, self.absolute_paths = self.renderer.root, split, cfg, absolute_paths
        self.events = scan_labelled(self.root, "sound_event", split, cfg.dupse_exclusion_folder_depth, CLASSES)
        if cfg.nevent_range[1] > 0 and not self.events:
            raise DataError(f"{os.path.join(self.root, 'sound_event', split)}: no class folders")
        self.interference = scan_labelled(self.root, "interference", split, 0, classes=None)
        if cfg.ninterference_range[1] > 0 and not self.interference:
            raise DataError(f"{os.path.join(self.root, 'interference', split)}: no label folders (interferers "
                            "are drawn from interference/<split>/<label>/)")
        self.noise = scan_noise(self.root, split)
        if not self.noise:
            warnings.warn(f"{os.path.join(self.root, 'noise', split)}: no .wav files: scenes without background")
        self.room_paths = rir_lib.list_rooms(self.root, split)

    # ------------------------------------------------------------------ files
    def room(self, path: str) -> rir_lib.Room:
        return self.renderer.room(path)

    def check_rooms(self) -> None:
        """Read every room now (a bad SOFA file is then named before training starts)."""
        for p in self.room_paths:
            self.room(p)

    def folder(self, kind: str) -> str:
        return official_folder(self.root, kind, self.split, self.absolute_paths)

    # ------------------------------------------------------------------ drawing
    def _event(self, rng, src: SourceFile, kind: str, position, snr_range) -> dict:
        cfg = self.cfg
        length, max_dur = src.seconds, cfg.max_event_dur
        source_time = float(rng.uniform(0, length - max_dur)) if length > max_dur else 0
        duration = max_dur if length > max_dur else length
        return {"label": src.label,
                "source_file": os.path.relpath(src.path, os.path.join(self.root, kind, self.split)),
                "source_time": source_time,
                "event_time": float(rng.uniform(0, cfg.seconds - duration)),
                "event_duration": duration,
                "event_position": [[float(v) for v in position]],
                "snr": float(rng.uniform(*snr_range)),
                "role": "foreground" if kind == "sound_event" else "interference"}

    def draw(self, seed: int, index: int, zero_share: float | None = None) -> dict:
        """SpAudSyn scene `index` of the stream `seed` (pure in its arguments).

        zero_share: probability of a scene without target events (the curriculum, report §3); None =
        the official uniform count over nevent_range.
        """
        cfg = self.cfg
        rng = np.random.default_rng([int(seed), int(index)])
        room_path = self.room_paths[int(rng.integers(len(self.room_paths)))]
        room = self.room(room_path)
        npos = room.positions.shape[0]
        lo, hi = cfg.nevent_range
        if zero_share is None:
            count = int(rng.integers(lo, hi + 1))
        else:
            count = 0 if rng.random() < zero_share else int(rng.integers(max(lo, 1), hi + 1))
        n_dup = 0
        if count >= 2 and rng.random() < cfg.dupse_rate:
            n_dup = int(rng.integers(1, min(count - 1, cfg.max_n_dupse) + 1))
        present = sorted(self.events)
        if count - n_dup > len(present):
            raise DataError(f"{os.path.join(self.root, 'sound_event', self.split)}: {len(present)} class folder(s), "
                            f"a scene needs {count - n_dup} distinct classes")
        fg = []
        for i in rng.choice(len(present), count - n_dup, replace=False):
            files = self.events[present[int(i)]]
            fg.append(self._event(rng, files[int(rng.integers(len(files)))], "sound_event",
                                  room.positions[int(rng.integers(npos))], cfg.snr_range))
        chosen = [e["label"] for e in fg]
        for _ in range(n_dup):
            fg.append(self._duplicate(rng, fg, chosen[int(rng.integers(len(chosen)))], room))
        ints = []
        labels = sorted(self.interference)
        for _ in range(int(rng.integers(cfg.ninterference_range[0], cfg.ninterference_range[1] + 1))):
            files = self.interference[labels[int(rng.integers(len(labels)))]]
            ints.append(self._event(rng, files[int(rng.integers(len(files)))], "interference",
                                    room.positions[int(rng.integers(npos))], cfg.interference_snr_range))
        bg = []
        if self.noise:
            src = self.noise[int(rng.integers(len(self.noise)))]
            if src.channels != room.irs.shape[1]:
                warnings.warn(f"{src.path}: {src.channels} channel(s), the room {room.path} has "
                              f"{room.irs.shape[1]}: scene without background (as SpAudSyn)")
            else:
                start = math.floor(rng.uniform(0, src.seconds - cfg.seconds)) if src.seconds > cfg.seconds else None
                bg.append({"label": None, "source_file": os.path.relpath(src.path, os.path.join(self.root, "noise",
                                                                                               self.split)),
                           "source_time": start, "event_time": 0, "event_duration": cfg.seconds,
                           "event_position": None, "snr": 0, "role": "background"})
        direct = list(cfg.direct_range_ms)
        config = {"duration": cfg.seconds, "sr": SAMPLE_RATE, "max_event_overlap": NUM_SLOTS,
                  "max_event_dur": cfg.max_event_dur, "ref_db": cfg.ref_db,
                  "foreground_dir": self.folder("sound_event"), "background_dir": self.folder("noise"),
                  "interference_dir": self.folder("interference"),
                  "room_config": {"module": ROOM_MODULE, "main": "SofaRoom",
                                  "args": {"path": self.folder("room_ir"), "direct_range_ms": direct}},
                  "verbose": False}
        room_info = {"sofa_path": os.path.join(self.folder("room_ir"), os.path.basename(room_path)),
                     "sr": room.rate, "nchan": int(room.irs.shape[1]), "nrir": npos, "rir_len": room.taps,
                     "direct_range_ms": direct}
        return {"config": config,
                "fg_events": sorted(fg, key=lambda e: e["event_time"]),
                "bg_events": bg,
                "int_events": sorted(ints, key=lambda e: e["event_time"]),
                "room": {"module": ROOM_MODULE, "main": "SofaRoom.from_metadata", "args": {"metadata": room_info}}}

    def _duplicate(self, rng, fg: list[dict], label: str, room: rir_lib.Room) -> dict:
        """One more source of class `label`, as the baseline's dataset adds it (see the module docstring)."""
        cfg = self.cfg
        same = [e for e in fg if e["label"] == label]
        refs = np.array([e["event_position"][0] for e in same], np.float64)
        ok = np.where(np.all(rir_lib.angles(room.positions, refs) > np.deg2rad(cfg.dupse_min_angle), axis=1))[0]
        if not ok.size:
            raise DataError(f"{room.path}: no position more than {cfg.dupse_min_angle:g} degrees from every {label} "
                            "source for a duplicate (the official drawing fails here too)")
        position = room.positions[ok[int(rng.integers(ok.size))]]
        split_dir = os.path.join(self.root, "sound_event", self.split)
        used = {os.path.normpath(os.path.join(split_dir, e["source_file"])) for e in same}
        groups = {f.group for f in self.events[label] if f.path in used and f.group}
        files = [f for f in self.events[label] if f.path not in used and not (f.group and f.group in groups)]
        if not files:
            raise DataError(f"{os.path.join(split_dir, label)}: no unused file outside the folders of the {label} "
                            "files already in the scene for a duplicate (the official drawing fails here too)")
        return self._event(rng, files[int(rng.integers(len(files)))], "sound_event", position, cfg.snr_range)

    # ------------------------------------------------------------------ rendering
    def render(self, spec: Mapping, where: str = "scene") -> dict[str, np.ndarray]:
        """A SpAudSyn scene -> {"mixture" [4, n] float32, "labels" [3] int32 (target classes in
        event_time order, silence = 18 after them), "refs" [3, n] float32 (dry channel 0, zeros for
        silence)} — the baseline's metadata mode."""
        return pack(self.renderer.render(spec, where))

    def scene(self, seed: int, index: int, zero_share: float | None = None) -> dict[str, np.ndarray]:
        """draw + render, the targets shuffled (shuffle_label of the baseline's generate mode)."""
        spec = self.draw(seed, index, zero_share)
        out = self.render(spec)
        k = len(spec["fg_events"])
        if self.cfg.shuffle_labels and k > 1:
            order = np.random.default_rng([int(seed), int(index), 1]).permutation(k)
            out["labels"][:k], out["refs"][:k] = out["labels"][:k][order], out["refs"][:k][order]
        return out
