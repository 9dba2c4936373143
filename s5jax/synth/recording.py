"""Long 4-channel recordings from a dev set in the official layout (the bundled world's test split by
default), with sources entering and leaving and their true images: the known answer `s5jax segment`
is checked against.

    rec = render_recording(world, RecordingConfig(seconds=300), seed=7)
    rec.mixture                       # [4, n] float32 at 32 kHz
    rec.events                        # [LongEvent(label, onset, offset, position, snr, parts)], by onset
    rec.image("Speech", start, stop)  # float64 [stop - start]: the class's true (dry) image there

Drawing (pure in (root, config, seed)): one room among `room_ir/<split>`, one background among
`noise/<split>` (looped over the whole recording at the official 0 dB re ref_db). `tracks` (default 2)
independent tracks each alternate a silence of `gap_seconds` (uniform) and an event of
`event_seconds` (uniform), the first gap drawn from `lead_seconds`, so at most `tracks` sources sound
at once and stretches with none occur. Classes are given to the events in onset order, uniformly among
`classes` (all 18 by default) not yet used — all of them once used, uniformly among all — excluding
every class of an event (any track) within `class_gap_seconds` of this one: two events of one class
are that far apart, so a timeline can tell them apart and a class's image is one source at a time.
An event sits at one room position (uniform) at one SNR (uniform in `snr_range`) and is made of the
class's files played back to back (a pause of `pause_seconds` between them; a grouped class — files in
sub-folders, e.g. a speaker — keeps to one sub-folder), the last one cut at the event's offset (the
event ends early, by at most a pause plus MIN_PART, rather than with a sliver of a file).

Rendering is SpAudSyn's (scenes.SceneRenderer, the path the test split and training use): every
file played is a one-event SpAudSyn scene of its length plus the room's impulse response (peak
normalised, convolved with the position's RIR normalised to unit energy, scaled to ref_db + snr dB
mean square over the wet event, dry target = the direct path on channel 0 with that scale), added
into the recording at its start; the background is a one-background scene of the recording's length.
An event's true image is the sum of its files' dry targets, the reference `s5jax infer` scores
against on 10 s clips. No interferers: the recording checks windows and stitching, not robustness.
"""
from __future__ import annotations

import os
import zlib
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from ..errors import ConfigError, DataError
from ..labels import CLASSES, SAMPLE_RATE
from .metadata import ROOM_MODULE
from .scenes import SceneSynth, SynthConfig

MIN_PART = 0.5          # seconds: the shortest piece of a file an event ends with


@dataclass(frozen=True)
class RecordingConfig:
    seconds: float = 300.0
    split: str = "test"
    classes: tuple[str, ...] | None = None           # the classes drawn from (None: all 18)
    tracks: int = 2                                   # at most this many sources at once
    event_seconds: tuple[float, float] = (20.0, 60.0)
    gap_seconds: tuple[float, float] = (10.0, 40.0)   # silence between a track's events
    lead_seconds: tuple[float, float] = (0.0, 40.0)   # silence before a track's first event
    class_gap_seconds: float = 20.0                   # two events of one class at least this far apart
    pause_seconds: tuple[float, float] = (0.2, 1.0)   # between the files played within an event
    snr_range: tuple[float, float] = (10.0, 20.0)     # dB re ref_db (the background sits at 0 dB)
    ref_db: float = -55.0

    def __post_init__(self):
        for f in ("event_seconds", "gap_seconds", "lead_seconds", "pause_seconds", "snr_range"):
            v = tuple(float(x) for x in getattr(self, f))
            if len(v) != 2 or v[0] > v[1] or (f != "snr_range" and v[0] < 0):
                raise ConfigError(f"recording.{f} must be [low, high] (non-negative), got {list(v)}")
            object.__setattr__(self, f, v)
        if self.seconds <= 0 or self.tracks < 1 or self.event_seconds[0] <= 0:
            raise ConfigError("recording: seconds, tracks and event_seconds must be positive")
        if self.classes is not None:
            unknown = [c for c in self.classes if c not in CLASSES]
            if unknown or not self.classes:
                raise ConfigError(f"recording.classes: {unknown or 'empty'} (the classes are {', '.join(CLASSES)})")
            object.__setattr__(self, "classes", tuple(self.classes))


class LongEvent(NamedTuple):
    label: str
    onset: float                   # seconds: the first file's first sample
    offset: float                  # seconds: the last file's last dry sample (the reverb tail follows)
    position: list[float]          # [x, y, z] m, a position of the room
    snr: float                     # dB re ref_db
    parts: list[tuple[str, float, float]]   # (source file relative to sound_event/<split>, start s, seconds)


@dataclass
class Recording:
    mixture: np.ndarray                        # [4, n] float32
    events: list[LongEvent]                    # by onset
    images: list[list[tuple[int, np.ndarray]]]  # per event, per file: (start sample, dry float32 [m])
    room: str = ""
    background: str = ""
    meta: dict = field(default_factory=dict)

    @property
    def samples(self) -> int:
        return self.mixture.shape[-1]

    def image(self, label: str, start: int = 0, stop: int | None = None) -> np.ndarray:
        """float64 [stop - start]: the summed true images of `label`'s events on samples [start, stop)."""
        stop = self.samples if stop is None else stop
        out = np.zeros(stop - start)
        for ev, parts in zip(self.events, self.images):
            if ev.label != label:
                continue
            for s, x in parts:
                a, b = max(s, start), min(s + x.size, stop)
                if a < b:
                    out[a - start:b - start] += x[a - s:b - s]
        return out

    def active(self, label: str) -> list[tuple[float, float]]:
        """The (onset, offset) intervals of `label`'s events, seconds."""
        return [(e.onset, e.offset) for e in self.events if e.label == label]


def _rng(seed: int, *key) -> np.random.Generator:
    return np.random.default_rng([int(seed)] + [zlib.crc32(str(k).encode()) for k in key])


def draw_layout(cfg: RecordingConfig, seed: int) -> list[tuple[int, float, float]]:
    """[(track, onset, offset)] of the events, by onset: each track alternates a gap and an event,
    the last event of a track cut at the recording's end (kept when at least event_seconds[0] / 2)."""
    out = []
    for track in range(cfg.tracks):
        rng = _rng(seed, "layout", track)
        t = rng.uniform(*cfg.lead_seconds)
        while t < cfg.seconds:
            end = min(t + rng.uniform(*cfg.event_seconds), cfg.seconds)
            if end - t >= cfg.event_seconds[0] / 2:
                out.append((track, float(t), float(end)))
            t = end + rng.uniform(*cfg.gap_seconds)
    return sorted(out, key=lambda e: (e[1], e[0]))


def _classes_for(layout, cfg: RecordingConfig, seed: int, present: list[str]) -> list[str]:
    rng = _rng(seed, "classes")
    pool = [c for c in (cfg.classes or CLASSES) if c in present]
    if not pool:
        raise DataError(f"recording: none of the classes {list(cfg.classes or CLASSES)} has files")
    labels, used = [], set()
    for i, (_, on, off) in enumerate(layout):
        near = {labels[j] for j, (_, on2, off2) in enumerate(layout[:i])
                if on2 < off + cfg.class_gap_seconds and on < off2 + cfg.class_gap_seconds}
        allowed = [c for c in pool if c not in near]
        if not allowed:
            raise DataError(f"recording: no class left for the event at {on:.1f} s ({len(pool)} classes, "
                            f"{cfg.tracks} tracks, class gap {cfg.class_gap_seconds:g} s)")
        fresh = [c for c in allowed if c not in used]
        label = (fresh or allowed)[int(rng.integers(len(fresh or allowed)))]
        labels.append(label)
        used.add(label)
    return labels


def _scene(synth: SceneSynth, room_path: str, room, seconds: float, fg: list, bg: list) -> dict:
    """A SpAudSyn scene of `seconds` in the room (the fields SceneSynth.draw writes)."""
    direct = list(synth.cfg.direct_range_ms)
    config = {"duration": seconds, "sr": SAMPLE_RATE, "max_event_overlap": 3, "max_event_dur": seconds,
              "ref_db": synth.cfg.ref_db, "foreground_dir": synth.folder("sound_event"),
              "background_dir": synth.folder("noise"), "interference_dir": synth.folder("interference"),
              "room_config": {"module": ROOM_MODULE, "main": "SofaRoom",
                              "args": {"path": synth.folder("room_ir"), "direct_range_ms": direct}},
              "verbose": False}
    info = {"sofa_path": os.path.join(synth.folder("room_ir"), os.path.basename(room_path)), "sr": room.rate,
            "nchan": int(room.irs.shape[1]), "nrir": int(room.positions.shape[0]), "rir_len": room.taps,
            "direct_range_ms": direct}
    return {"config": config, "fg_events": fg, "bg_events": bg, "int_events": [],
            "room": {"module": ROOM_MODULE, "main": "SofaRoom.from_metadata", "args": {"metadata": info}}}


def render_recording(root: str | os.PathLike, cfg: RecordingConfig = RecordingConfig(),
                     seed: int = 0) -> Recording:
    """Draw and render a long recording from the dev set `root` (see the module docstring)."""
    synth = SceneSynth(root, cfg.split, SynthConfig(seconds=cfg.seconds, ref_db=cfg.ref_db, nevent_range=(0, 0),
                                                    ninterference_range=(0, 0)))
    n = int(cfg.seconds * SAMPLE_RATE)
    rng = _rng(seed, "room")
    room_path = synth.room_paths[int(rng.integers(len(synth.room_paths)))]
    room = synth.room(room_path)
    tail = room.irs.shape[-1] / SAMPLE_RATE
    split_dir = os.path.join(synth.root, "sound_event", cfg.split)

    bg, background = [], ""
    if synth.noise:
        src = synth.noise[int(rng.integers(len(synth.noise)))]
        if src.channels != room.irs.shape[1]:
            raise DataError(f"{src.path}: {src.channels} channel(s), the room {room_path} has {room.irs.shape[1]}")
        background = src.path
        bg = [{"label": None, "source_file": os.path.relpath(src.path, os.path.join(synth.root, "noise", cfg.split)),
               "source_time": None, "event_time": 0, "event_duration": cfg.seconds, "event_position": None,
               "snr": 0, "role": "background"}]
    mixture = synth.renderer.render(_scene(synth, room_path, room, cfg.seconds, [], bg), "recording background")["mixture"]
    mixture = mixture.astype(np.float32)

    layout = draw_layout(cfg, seed)
    labels = _classes_for(layout, cfg, seed, sorted(synth.events))
    events, images = [], []
    for i, ((_, onset, offset), label) in enumerate(zip(layout, labels)):
        erng = _rng(seed, "event", i)
        files = synth.events[label]
        groups = sorted({f.group for f in files})
        if groups != [""]:
            group = groups[int(erng.integers(len(groups)))]
            files = [f for f in files if f.group == group]
        position = [float(v) for v in room.positions[int(erng.integers(room.positions.shape[0]))]]
        snr = float(erng.uniform(*cfg.snr_range))
        parts, imgs, t = [], [], onset
        order = list(erng.permutation(len(files)))
        while offset - t >= MIN_PART or not parts:      # no sliver of a file at the end (it may be silent)
            if not order:
                order = list(erng.permutation(len(files)))
            f = files[order.pop()]
            dur = min(f.seconds, offset - t)
            rel = os.path.relpath(f.path, split_dir)
            ev = {"label": label, "source_file": rel, "source_time": 0, "event_time": 0, "event_duration": dur,
                  "event_position": [position], "snr": snr, "role": "foreground"}
            r = synth.renderer.render(_scene(synth, room_path, room, dur + tail, [ev], []),
                                      f"recording event {i} ({label})")
            start = int(round(t * SAMPLE_RATE))
            m = min(r["mixture"].shape[-1], n - start)
            mixture[:, start:start + m] += r["mixture"][:, :m].astype(np.float32)
            imgs.append((start, r["dry"][0, :m].astype(np.float32)))
            parts.append((rel, round(t, 6), round(dur, 6)))
            t += dur + erng.uniform(*cfg.pause_seconds)
        end = parts[-1][1] + parts[-1][2]
        events.append(LongEvent(label, round(onset, 6), round(min(end, offset), 6), position, snr, parts))
        images.append(imgs)
    return Recording(mixture, events, images, room_path, background,
                     {"seed": seed, "config": {k: (list(v) if isinstance(v, tuple) else v)
                                               for k, v in cfg.__dict__.items()}})


__all__ = ["RecordingConfig", "LongEvent", "Recording", "render_recording", "draw_layout"]
