"""On-the-fly 4-channel training scenes, the official recipe (reference §5, SpAudSyn levels).

    synth = SceneSynth(root, "train", SynthConfig.tagger())
    spec = synth.draw(seed, index, zero_share=0.4)   # JSON-able description, pure in (seed, index, share)
    scene = synth.render(spec)      # mixture [4, n], labels [3] (18 = silence, last), refs [3, n]

A scene is drawn first (which files, offsets, onsets, room positions, SNRs) and rendered second, so
fixed validation scenes are just specs stored in a metadata JSON (`write_metadata` / `read_metadata`)
and rebuilt bit-identically. Paths in specs are relative to the dataset root.

Levels: a source is peak-normalised, convolved with its 4-channel RIR (normalised to unit energy averaged
over channels) and scaled so that the mean square of the whole wet event (all channels, every sample of
the full convolution) is ref_db + SNR dB; the background noise excerpt has mean square ref_db. The dry
reference is the source convolved with the direct-path window of the channel-0 RIR, the same scale, at
the same onset (zero elsewhere), so it is time-aligned with what the mixture holds.
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from ..audio import write_text_atomic
from ..errors import ConfigError, DataError
from ..labels import CLASSES, NUM_SLOTS, SAMPLE_RATE, SILENCE
from . import rir as rir_lib
from .sources import SourceFile, read_excerpt, scan_flat, scan_sound_events


@dataclass(frozen=True)
class SynthConfig:
    """The official synthesis settings; `tagger()` / `separator()` give the two recipes."""
    seconds: float = 10.0
    ref_db: float = -55.0
    nevent_range: tuple[int, int] = (0, 3)
    snr_range: tuple[float, float] = (5.0, 20.0)
    max_event_seconds: float = 10.0
    dupse_rate: float = 0.5
    max_n_dupse: int = 2
    dupse_min_angle: float = 60.0
    ninterference_range: tuple[int, int] = (0, 2)
    interference_snr_range: tuple[float, float] = (0.0, 15.0)
    shuffle_labels: bool = True

    def __post_init__(self):
        for f in ("nevent_range", "snr_range", "ninterference_range", "interference_snr_range"):
            v = tuple(getattr(self, f))
            if len(v) != 2 or v[0] > v[1]:
                raise ConfigError(f"synth.{f} must be [low, high], got {list(v)}")
            object.__setattr__(self, f, v)
        if not 0 <= self.nevent_range[0] <= self.nevent_range[1] <= NUM_SLOTS:
            raise ConfigError(f"synth.nevent_range must lie in [0, {NUM_SLOTS}]")

    @classmethod
    def tagger(cls, **kw) -> "SynthConfig":
        return cls(nevent_range=(0, 3), **kw)

    @classmethod
    def separator(cls, **kw) -> "SynthConfig":
        return cls(nevent_range=(1, 3), **kw)

    @property
    def samples(self) -> int:
        return int(round(self.seconds * SAMPLE_RATE))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "SynthConfig":
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ConfigError(f"unknown synth config keys {sorted(unknown)}")
        return cls(**d)


class SceneSynth:
    """Scenes from one split of a dataset in the official layout. Scanning checks every file header;
    rooms are read when first used and kept (per process)."""

    def __init__(self, root: str | os.PathLike, split: str, cfg: SynthConfig = SynthConfig()):
        self.root = os.path.abspath(os.fspath(root))
        self.split = split
        self.cfg = cfg
        self.events = scan_sound_events(self.root, split)
        self.interference = scan_flat(self.root, "interference", split, channels=1)
        self.noise = scan_flat(self.root, "noise", split, channels=4)
        self.room_paths = rir_lib.list_rooms(self.root, split)
        self._rooms: dict[str, rir_lib.Room] = {}
        self._by_path = {f.path: f for files in self.events.values() for f in files}
        self._by_path.update({f.path: f for f in self.interference + self.noise})
        labels = sorted({f.label for f in self.interference})
        self._interf_by_label = {lab: [f for f in self.interference if f.label == lab] for lab in labels}

    # ------------------------------------------------------------------ files
    def room(self, path: str) -> rir_lib.Room:
        if path not in self._rooms:
            self._rooms[path] = rir_lib.read_room(path)
        return self._rooms[path]

    def check_rooms(self) -> None:
        """Read every room now (a bad SOFA file is then named before training starts)."""
        for p in self.room_paths:
            self.room(p)

    def _rel(self, path: str) -> str:
        return os.path.relpath(path, self.root)

    def _file(self, rel: str) -> SourceFile:
        path = os.path.normpath(os.path.join(self.root, rel))
        if path not in self._by_path:
            raise DataError(f"{path}: named by the scene metadata but not in {self.root} ({self.split})")
        return self._by_path[path]

    # ------------------------------------------------------------------ drawing
    def _placement(self, rng, src: SourceFile) -> dict:
        n = self.cfg.samples
        frames = int(min(src.frames, round(self.cfg.max_event_seconds * SAMPLE_RATE), n))
        return {"file": self._rel(src.path), "offset": int(rng.integers(0, src.frames - frames + 1)),
                "frames": frames, "start": int(rng.integers(0, n - frames + 1))}

    def draw(self, seed: int, index: int, zero_share: float | None = None) -> dict:
        """The description of scene `index` of the stream `seed` (pure in its arguments).

        zero_share: probability of a scene without target events (the curriculum, report §3); None =
        the official uniform count over nevent_range.
        """
        cfg = self.cfg
        rng = np.random.default_rng([int(seed), int(index)])
        room_path = self.room_paths[int(rng.integers(len(self.room_paths)))]
        room = self.room(room_path)
        npos = room.irs.shape[0]
        lo, hi = cfg.nevent_range
        if zero_share is None:
            count = int(rng.integers(lo, hi + 1))
        else:
            count = 0 if rng.random() < zero_share else int(rng.integers(max(lo, 1), hi + 1))
        n_dup = 0
        if count >= 2 and rng.random() < cfg.dupse_rate:
            n_dup = int(rng.integers(1, min(count - 1, cfg.max_n_dupse) + 1))
        classes = [CLASSES[i] for i in rng.choice(len(CLASSES), count - n_dup, replace=False)]
        events = []
        for label in classes:
            src = self.events[label][int(rng.integers(len(self.events[label])))]
            events.append({**self._placement(rng, src), "label": label, "position": int(rng.integers(npos)),
                           "snr": float(rng.uniform(*cfg.snr_range))})
        for _ in range(n_dup):
            events.append(self._draw_duplicate(rng, events, room, classes))
        events.sort(key=lambda e: e["start"])                       # time order, then shuffled labels
        order = rng.permutation(len(events)) if cfg.shuffle_labels else np.arange(len(events))
        events = [events[i] for i in order]
        interferers = []
        if self._interf_by_label:
            labels = sorted(self._interf_by_label)
            for _ in range(int(rng.integers(cfg.ninterference_range[0], cfg.ninterference_range[1] + 1))):
                files = self._interf_by_label[labels[int(rng.integers(len(labels)))]]
                src = files[int(rng.integers(len(files)))]
                interferers.append({**self._placement(rng, src), "position": int(rng.integers(npos)),
                                    "snr": float(rng.uniform(*cfg.interference_snr_range))})
        noise = self.noise[int(rng.integers(len(self.noise)))]
        n = cfg.samples
        return {"seed": int(seed), "index": int(index), "room": self._rel(room_path), "events": events,
                "interferers": interferers, "noise": {"file": self._rel(noise.path),
                                                      "offset": int(rng.integers(0, max(noise.frames - n, 0) + 1))}}

    def _draw_duplicate(self, rng, events: list[dict], room: rir_lib.Room, classes: list[str]) -> dict:
        """A second (or third) source of a class already present: an unused file outside the folders of
        the class's files already used, at a position > dupse_min_angle from every source of the class.
        When the chosen class has no such file or position, the others are tried; failing all, the
        event gets a class not yet in the scene (so the count is kept)."""
        cfg = self.cfg
        for label in [classes[i] for i in rng.permutation(len(classes))]:
            same = [e for e in events if e["label"] == label]
            used = {os.path.normpath(os.path.join(self.root, e["file"])) for e in same}
            groups = {self._by_path[p].group for p in used}
            files = [f for f in self.events[label] if f.path not in used and (f.group not in groups or not f.group)]
            dirs = [room.directions[e["position"]] for e in same]
            positions = [m for m in range(room.irs.shape[0])
                         if all(rir_lib.angle_deg(room.directions[m], d) > cfg.dupse_min_angle for d in dirs)]
            if files and positions:
                src = files[int(rng.integers(len(files)))]
                return {**self._placement(rng, src), "label": label,
                        "position": positions[int(rng.integers(len(positions)))],
                        "snr": float(rng.uniform(*cfg.snr_range))}
        present = {e["label"] for e in events}
        free = [c for c in CLASSES if c not in present]
        label = free[int(rng.integers(len(free)))]
        src = self.events[label][int(rng.integers(len(self.events[label])))]
        return {**self._placement(rng, src), "label": label, "position": int(rng.integers(room.irs.shape[0])),
                "snr": float(rng.uniform(*cfg.snr_range))}

    # ------------------------------------------------------------------ rendering
    def _spatialise(self, ev: dict, room: rir_lib.Room, dry: bool):
        cfg = self.cfg
        src = self._file(ev["file"])
        x = read_excerpt(src, ev["offset"], ev["frames"])[0].astype(np.float64)
        peak = np.abs(x).max()
        if peak == 0:
            raise DataError(f"{src.path}: silent excerpt at offset {ev['offset']} (all zeros)")
        x = x / peak
        ir = rir_lib.normalise_rir(room.irs[ev["position"]])
        wet = rir_lib.fft_convolve(x, ir)                                # [4, frames + taps - 1]
        gain = np.sqrt(10 ** ((cfg.ref_db + ev["snr"]) / 10) / np.mean(wet ** 2))
        ref = rir_lib.fft_convolve(x, rir_lib.direct_path(ir[0])) * gain if dry else None
        return wet * gain, ref

    def render(self, spec: Mapping) -> dict[str, np.ndarray]:
        """spec (from `draw` or a metadata JSON) -> {"mixture" [4, n] float32, "labels" [3] int32
        (class ids in the spec's order, silence = 18 after them), "refs" [3, n] float32 (dry channel 0,
        zeros for silence)}."""
        n = self.cfg.samples
        room = self.room(os.path.normpath(os.path.join(self.root, spec["room"])))
        noise_src = self._file(spec["noise"]["file"])
        noise = read_excerpt(noise_src, spec["noise"]["offset"], n).astype(np.float64)
        if noise.shape[1] < n:                                         # short recording: loop it
            noise = np.tile(noise, (1, -(-n // noise.shape[1])))[:, :n]
        ms = np.mean(noise ** 2)
        if ms == 0:
            raise DataError(f"{noise_src.path}: silent noise excerpt (all zeros)")
        mixture = noise * np.sqrt(10 ** (self.cfg.ref_db / 10) / ms)
        refs = np.zeros((NUM_SLOTS, n))
        labels = np.full(NUM_SLOTS, SILENCE, np.int32)
        for slot, ev in enumerate(spec["events"]):
            wet, ref = self._spatialise(ev, room, dry=True)
            s, k = ev["start"], min(wet.shape[1], n - ev["start"])
            mixture[:, s:s + k] += wet[:, :k]
            refs[slot, s:s + k] = ref[:k]
            labels[slot] = CLASSES.index(ev["label"])
        for ev in spec["interferers"]:
            wet, _ = self._spatialise(ev, room, dry=False)
            s, k = ev["start"], min(wet.shape[1], n - ev["start"])
            mixture[:, s:s + k] += wet[:, :k]
        return {"mixture": mixture.astype(np.float32), "labels": labels, "refs": refs.astype(np.float32)}

    def scene(self, seed: int, index: int, zero_share: float | None = None) -> dict[str, np.ndarray]:
        return self.render(self.draw(seed, index, zero_share))


# ---------------------------------------------------------------------- fixed validation scenes
def write_metadata(path: str | os.PathLike, specs: list[dict], cfg: SynthConfig) -> None:
    """Store validation scene specs (and the synthesis settings that render them) as JSON, atomically."""
    doc = {"format": "s5jax-scenes", "version": 1, "synth": dataclasses.asdict(cfg), "scenes": specs}
    write_text_atomic(path, json.dumps(doc, indent=1))


def read_metadata(path: str | os.PathLike) -> tuple[SynthConfig, list[dict]]:
    path = os.fspath(path)
    try:
        with open(path) as f:
            doc = json.load(f)
        if doc.get("format") != "s5jax-scenes":
            raise ValueError("not an s5jax scene metadata file")
        return SynthConfig.from_dict(doc["synth"]), list(doc["scenes"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise DataError(f"{path}: unreadable scene metadata ({e})") from None
