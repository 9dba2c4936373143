"""`s5jax segment`: an S5 system over one recording of any length, in windows, in bounded memory.

    result = run_segment("walk.wav", "out/walk", tagger_dir="ckpt/t4", separator_dir="ckpt/sep")
    result.stems      # {"Speech": "out/walk/Speech.wav", "Speech_2": ..., "Dog": ...}: whole-recording stems
    result.events     # [Event(label, onset, offset, confidence, stem)], also out/walk/events.csv

The models are trained on 10 s clips; a recording is cut into windows of that native length with
overlap (`SegmentConfig`: 10 s windows, 5 s hop by default), each window goes through the chosen
system — the baseline or a refined system, the same jitted programs `s5jax infer` runs (its `Engine`)
— batched across windows on the local devices, and the windows' stems are stitched into one stem per
detected source. What the report leaves open, decided here:

- Windows: window k covers samples [k*hop, k*hop + window) at 32 kHz; there are
  ceil((n - window) / hop) + 1 of them and the last is zero-padded past the recording's end (it holds
  at least window - hop real samples). A recording no longer than one window is one window of its own
  length: exactly what `s5jax infer` computes for it. hop must lie in [window/2, window], so at most two
  windows overlap anywhere.
- Stitching: overlap-add with a complementary cross-fade. Over the overlap L = window - hop the earlier
  window fades out by cos² and the later one fades in by sin² (sin²(pi (u + 1/2) / 2L), u = 0..L-1:
  the two weights sum to 1, so a source present in both windows with the same stem is reproduced
  exactly); the recording's first and last samples are not faded. A class absent from a window
  contributes silence there (its weight is not renormalised away: a source detected in one window only
  fades in and out over the overlaps).
- Lanes (duplicates): each output stem is a lane, a chain of per-window slots of one class. A window's
  slots of class c are assigned to c's lanes by one rule: maximise the summed score, where a lane that
  was active in the previous window scores the cosine similarity (correlation at lag 0) between its
  previous stem on the overlap and the slot's stem on the same samples, a lane that was silent there
  scores -2 (so a continuing lane is always preferred) and a new lane -3 (so a class has as many lanes
  as it ever has simultaneous slots). Ties go to the lower lane, then the lower slot (with hop = window
  there is no overlap and slots keep their order). Lane 0 of a class is `<Class>.wav`, lane i >= 1
  `<Class>_<i+1>.wav`.
- Events: a lane's detections in consecutive (overlapping) windows merge into one event from the first
  window's start to the last window's end (cut at the recording's end): the timeline's resolution is
  the window. Confidence = the mean of the merged windows' slot probabilities. `events.csv` (class,
  onset, offset, confidence, stem; seconds) and `timeline.png` (one row per lane).
- Memory: the recording is read in soundfile blocks (`audio.AudioStream`, resampled on the way with
  `resample`), at most a batch of windows is held, and each lane keeps one window of accumulator;
  stems are streamed to their files. Peak memory does not grow with the recording's length.
- Resume: each finished window's result (labels, probabilities, non-silent stems) is kept in
  `OUT/.s5jax/windows/<k>.npz` (atomic). The run record `OUT/.s5jax/segment.json` holds what made them
  — the engine's settings (checkpoint identities, system, precision), the window/hop/resampling
  settings and the recording's identity (path, size, mtime, frames, rate); a run with other settings is
  refused in one line naming the difference; otherwise finished windows are not recomputed (the
  stitching, cheap, is redone from them). When the stems are in place the window files are deleted.
- Safety: OUT must be new, empty, or a folder of this command's (holding its record); outputs are
  written under `.part-<pid>-*` names and renamed into place; only files the record claims are replaced.
- Rates: with `resample` a recording at another rate is resampled to 32 kHz on load (soxr, see
  s5jax.audio); `out_rate="input"` writes the stems back at the recording's rate and length.
"""
from __future__ import annotations

import csv
import io
import itertools
import json
import math
import os
import sys
from dataclasses import dataclass, field
from typing import Callable, NamedTuple

import numpy as np

from .audio import AudioStream, RESAMPLE_QUALITY, resampler_identity
from .errors import S5Error
from .files import (clean_stale_parts, temp_file, write_bytes_atomic, write_json_atomic,
                    write_text_atomic)
from .labels import LABELS, SAMPLE_RATE, SILENCE

RECORD = "segment.json"
OUT_RATES = ("model", "input")


@dataclass(frozen=True)
class SegmentConfig:
    """How a recording is cut and written. batch_size (windows per batch, None: `infer`'s default,
    one per device on CPU) does not change the results and is not recorded."""
    window_seconds: float = 10.0
    hop_seconds: float = 5.0
    resample: bool = False          # a recording at another rate is resampled to 32 kHz (else an error)
    out_rate: str = "model"         # "model": stems at 32 kHz; "input": at the recording's rate
    batch_size: int | None = None

    def samples(self) -> tuple[int, int]:
        """(window, hop) in samples at 32 kHz, checked (S5Error)."""
        window, hop = int(round(self.window_seconds * SAMPLE_RATE)), int(round(self.hop_seconds * SAMPLE_RATE))
        if window < 1 or hop < 1:
            raise S5Error(f"window ({self.window_seconds} s) and hop ({self.hop_seconds} s) must be positive")
        if not window / 2 <= hop <= window:
            raise S5Error(f"hop {self.hop_seconds} s must lie between half the window and the window "
                          f"({self.window_seconds / 2:g}..{self.window_seconds:g} s): at most two windows "
                          "may overlap for the cross-fade")
        if self.out_rate not in OUT_RATES:
            raise S5Error(f"out rate must be one of {', '.join(OUT_RATES)}, got {self.out_rate!r}")
        if self.out_rate == "input" and not self.resample:
            # without --resample the recording must be at 32 kHz, the stems' rate already: the flag would
            # silently do nothing (infer refuses it the same way)
            raise S5Error("--out-rate input writes stems at a resampled recording's rate: give --resample too")
        if self.batch_size is not None and self.batch_size < 1:
            raise S5Error(f"batch size must be at least 1, got {self.batch_size}")
        return window, hop

    def record(self) -> dict:
        """What decides the outputs (recorded; batch_size left out)."""
        window, hop = self.samples()
        return {"window": window, "hop": hop, "resample": self.resample, "out_rate": self.out_rate}


class Event(NamedTuple):
    label: str
    onset: float        # seconds
    offset: float       # seconds
    confidence: float
    stem: str           # stem name (file without .wav)


@dataclass
class SegmentResult:
    stems: dict[str, str]                 # stem name -> path of its wav
    events: list[Event]
    windows: int                          # windows of the recording
    computed: int = 0                     # windows computed by this run
    resumed: int = 0                      # windows taken from an earlier run's files
    sample_rate: int = SAMPLE_RATE        # of the written stems
    out_dir: str = ""
    record: dict = field(default_factory=dict)


# ---------------------------------------------------------------- windows and weights (pure)
def window_starts(n: int, window: int, hop: int) -> tuple[list[int], int]:
    """Window starts over n samples and the window length actually run: one window of n samples when
    n <= window, else every hop, the last reaching (zero-padded) past n."""
    if n <= window:
        return [0], n
    count = math.ceil((n - window) / hop) + 1
    return [k * hop for k in range(count)], window


def fade_in(overlap: int) -> np.ndarray:
    """The later window's weight over an overlap of `overlap` samples: sin²; the earlier's is 1 - it."""
    return np.sin(np.pi * (np.arange(overlap) + 0.5) / (2 * overlap)) ** 2


def window_weights(window: int, hop: int, first: bool, last: bool) -> np.ndarray:
    """float64 [window]: fade in over the first window - hop samples (unless first), fade out over
    the last window - hop samples (unless last), 1 elsewhere."""
    w = np.ones(window)
    overlap = window - hop
    if overlap > 0:
        f = fade_in(overlap)
        if not first:
            w[:overlap] = f
        if not last:
            w[hop:] = 1.0 - f
    return w


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity (correlation at lag 0) of two equally long signals; 0 if either is silent."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    return float(a @ b / (na * nb)) if na > 0 and nb > 0 else 0.0


def assign_lanes(heads: list[np.ndarray], tails: list[np.ndarray | None]) -> list[int]:
    """Assign a window's m slots of one class to that class's lanes (the module docstring's rule).

    heads: each slot's stem on the overlap with the previous window; tails: per existing lane its
    previous-window stem on the same samples, None when the lane was silent there. Returns per slot a
    lane index; indices >= len(tails) are new lanes (numbered in slot order)."""
    m, n = len(heads), len(tails)
    options = list(range(n + m))
    def score(i, lane):
        if lane >= n:
            return -3.0
        return -2.0 if tails[lane] is None else similarity(tails[lane], heads[i])
    table = [[score(i, lane) for lane in options] for i in range(m)]
    best, best_total = None, -np.inf
    for perm in itertools.permutations(options, m):
        total = sum(table[i][lane] for i, lane in enumerate(perm))
        if total > best_total + 1e-12:
            best, best_total = perm, total
    new = {lane: n + j for j, lane in enumerate(sorted(l for l in best if l >= n))}
    return [new.get(lane, lane) for lane in best]


def merge_events(activity: list[tuple[int, float]], starts: list[int], window: int, n: int,
                 label: str, stem: str) -> list[Event]:
    """A lane's per-window detections [(window index, probability)] -> events: consecutive windows
    merged, from the first one's start to the last one's end (cut at n), mean probability; values
    rounded to 6 decimals (what events.csv holds)."""
    events, run = [], []
    for k, p in sorted(activity) + [(None, 0.0)]:
        if run and (k is None or k != run[-1][0] + 1):
            onset, offset = starts[run[0][0]], min(starts[run[-1][0]] + window, n)
            events.append(Event(label, round(onset / SAMPLE_RATE, 6), round(offset / SAMPLE_RATE, 6),
                                round(float(np.mean([q for _, q in run])), 6), stem))
            run = []
        if k is not None:
            run.append((k, p))
    return events


def stem_name(label: int, lane: int) -> str:
    return LABELS[label] if lane == 0 else f"{LABELS[label]}_{lane + 1}"


# ---------------------------------------------------------------- stitching (streamed)
class _Lane:
    def __init__(self, label: int, index: int, sink, window: int):
        self.label, self.index, self.sink = label, index, sink
        self.name = stem_name(label, index)
        self.acc = np.zeros(window)                  # samples [start of the current window, + window)
        self.tail: np.ndarray | None = None          # last window's stem on the next overlap (None: silent)
        self.activity: list[tuple[int, float]] = []


class Stitcher:
    """Windows' stems, given in window order, -> one stem per lane, streamed to sinks.

    `open_sink(name)` returns an object with `write(block float32 [m])` and `close()`; each sink receives
    exactly n samples (32 kHz) in order. Holds one window per lane."""

    def __init__(self, n: int, window: int, hop: int, open_sink: Callable[[str], object]):
        self.n, self.window, self.hop = n, window, hop
        self.starts, self.window = window_starts(n, window, hop)
        self.overlap = self.window - hop if len(self.starts) > 1 else 0
        self.open_sink = open_sink
        self.lanes: list[_Lane] = []
        self.next = 0                                # next window index expected
        self.emitted = 0                             # samples emitted per lane

    def _new_lane(self, label: int) -> _Lane:
        lane = _Lane(label, sum(l.label == label for l in self.lanes), None, self.window)
        lane.sink = self.open_sink(lane.name)
        left = self.emitted                          # silence before the lane's first window
        while left > 0:
            step = min(left, 1 << 18)
            lane.sink.write(np.zeros(step, np.float32))
            left -= step
        self.lanes.append(lane)
        return lane

    def add(self, labels, probs, stems) -> None:
        """The next window: labels [3], probs [3], stems [3, window] (silent slots ignored)."""
        k = self.next
        if k >= len(self.starts):
            raise ValueError("more windows than the recording has")
        first, last = k == 0, k == len(self.starts) - 1
        weights = window_weights(self.window, self.hop, first, last) if len(self.starts) > 1 else np.ones(self.window)
        slots = [i for i, lab in enumerate(labels) if int(lab) != SILENCE]
        placed: dict[int, _Lane] = {}
        for label in sorted({int(labels[i]) for i in slots}):
            mine = [i for i in slots if int(labels[i]) == label]
            lanes = [l for l in self.lanes if l.label == label]
            heads = [np.asarray(stems[i][:self.overlap]) for i in mine]
            chosen = assign_lanes(heads, [l.tail for l in lanes])
            for i, c in zip(mine, chosen):
                placed[i] = lanes[c] if c < len(lanes) else self._new_lane(label)
        for lane in self.lanes:
            lane.tail = None
        for i, lane in placed.items():
            stem = np.asarray(stems[i], np.float64)
            lane.acc += weights * stem
            lane.tail = np.asarray(stems[i][self.hop:], np.float32) if self.overlap else None
            lane.activity.append((k, float(probs[i])))
        step = self.hop if not last else self.n - self.starts[k]
        for lane in self.lanes:
            lane.sink.write(lane.acc[:step].astype(np.float32))
            lane.acc = np.concatenate([lane.acc[step:], np.zeros(step)]) if not last else lane.acc
        self.emitted += step
        self.next += 1

    def finish(self) -> list[Event]:
        """Close the sinks; the events of every lane, by onset."""
        if self.next != len(self.starts):
            raise ValueError(f"{self.next} of {len(self.starts)} windows stitched")
        for lane in self.lanes:
            lane.sink.close()
        events = [e for l in self.lanes
                  for e in merge_events(l.activity, self.starts, self.window, self.n, LABELS[l.label], l.name)]
        return sorted(events, key=lambda e: (e.onset, e.label, e.stem))


class _LaneFile:
    """A stem written as it comes: float wav under a temporary name, optionally resampled from 32 kHz
    to `rate` on the way (soxr's streaming resampler) and cut or padded to `frames`."""

    def __init__(self, path: str, rate: int, frames: int):
        import soundfile as sf

        self.path, self.left = path, frames
        fd, self.tmp = temp_file(path, suffix=".wav")
        self.file = os.fdopen(fd, "w+b")
        fmt = "WAV" if frames * 4 < 2 ** 32 - 2 ** 20 else "RF64"     # RIFF's 4 GB limit
        self.snd = sf.SoundFile(self.file, "w", samplerate=rate, channels=1, subtype="FLOAT", format=fmt)
        self.stream = None
        if rate != SAMPLE_RATE:
            import soxr

            self.stream = soxr.ResampleStream(SAMPLE_RATE, rate, 1, dtype="float32", quality=RESAMPLE_QUALITY)

    def _put(self, block: np.ndarray) -> None:
        block = block[:self.left]
        if block.size:
            self.snd.write(block)
            self.left -= block.size

    def write(self, block: np.ndarray) -> None:
        self._put(self.stream.resample_chunk(block) if self.stream is not None else block)

    def close(self) -> None:
        if self.stream is not None:
            self._put(self.stream.resample_chunk(np.zeros(0, np.float32), last=True))
        while self.left > 0:
            self._put(np.zeros(min(self.left, 1 << 18), np.float32))
        self.snd.close()
        self.file.close()

    def discard(self) -> None:
        try:
            self.snd.close()
            self.file.close()
        except Exception:
            pass
        if os.path.exists(self.tmp):
            os.unlink(self.tmp)


# ---------------------------------------------------------------- the run
def _engine_factory(tagger_dir, separator_dir, system, tagger2_dir, separator2_dir, precision):
    """engine(batch_size) -> system.engine.Engine: the refined `system` (preset or config JSON), else the baseline."""
    if not (tagger_dir and separator_dir):
        raise S5Error("give --tagger and --separator checkpoint folders")
    if system is not None:
        from .system.engine import system_engine

        return lambda b: system_engine(system, [tagger_dir, tagger2_dir], separator_dir, separator2_dir, b,
                                       precision)
    if tagger2_dir or separator2_dir:
        raise S5Error("--tagger2 and --separator2 are used by a refined system: give --system CONFIG|PRESET")
    from .system.engine import baseline_engine

    return lambda b: baseline_engine(tagger_dir, separator_dir, b, precision)


def _recording_identity(stream: AudioStream) -> dict:
    st = os.stat(stream.path)
    return {"file": os.path.realpath(stream.path), "bytes": st.st_size, "mtime_ns": st.st_mtime_ns,
            "frames": stream.frames, "sample_rate": stream.rate, "channels": stream.channels}


def _read_record(out_dir: str) -> dict | None:
    path = os.path.join(out_dir, ".s5jax", RECORD)
    try:
        with open(path) as f:
            rec = json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise S5Error(f"{path}: unreadable segment record ({e}); delete {out_dir} to start over") from None
    if not isinstance(rec, dict):
        raise S5Error(f"{path}: not a segment record; delete {out_dir} to start over")
    return rec


def _check_out(out_dir: str) -> dict | None:
    """OUT must be new, empty, or ours (holding our record): -> the record or None."""
    if os.path.isfile(out_dir):
        raise S5Error(f"{out_dir}: is a file, not an output folder")
    rec = _read_record(out_dir) if os.path.isdir(out_dir) else None
    if rec is None and os.path.isdir(out_dir) and any(files for _, _, files in os.walk(out_dir)):
        # (only empty folders: a run killed before its record was written)
        raise S5Error(f"{out_dir}: not empty and not made by s5jax segment; choose a new or empty --out "
                      "(nothing was touched)")
    return rec


def _window_path(out_dir: str, k: int) -> str:
    return os.path.join(out_dir, ".s5jax", "windows", f"{k:06d}.npz")


def _load_window(out_dir: str, k: int, length: int):
    """A finished window's (labels [3], probs [3], stems [3, length]) or None (absent or damaged)."""
    try:
        with np.load(_window_path(out_dir, k)) as z:
            labels, probs, live = z["labels"], z["probs"], z["stems"]
    except Exception:
        return None
    slots = [i for i, lab in enumerate(labels) if int(lab) != SILENCE]
    if labels.shape != (3,) or live.shape != (len(slots), length):
        return None
    stems = np.zeros((3, length), np.float32)
    stems[slots] = live
    return labels, probs, stems


def _save_window(out_dir: str, k: int, labels, probs, stems) -> None:
    live = [i for i, lab in enumerate(labels) if int(lab) != SILENCE]
    buf = io.BytesIO()
    np.savez(buf, labels=np.asarray(labels, np.int32), probs=np.asarray(probs, np.float32),
             stems=np.asarray(stems, np.float32)[live])
    write_bytes_atomic(_window_path(out_dir, k), buf.getvalue())


def _windows(stream: AudioStream, starts: list[int], window: int):
    """(k, mixture [4, window]) for every window, in order, from the stream's blocks (zero-padded past
    the end); holds about one window plus one block."""
    blocks = stream.blocks()
    buf, buf_start, ended = np.zeros((stream.channels, 0), np.float32), 0, False
    for k, s in enumerate(starts):
        while buf_start + buf.shape[1] < s + window and not ended:
            b = next(blocks, None)
            if b is None:
                ended = True
            else:
                buf = np.concatenate([buf, b], axis=1)
        mix = buf[:, s - buf_start:s - buf_start + window]
        if mix.shape[1] < window:
            mix = np.concatenate([mix, np.zeros((mix.shape[0], window - mix.shape[1]), np.float32)], axis=1)
        yield k, np.ascontiguousarray(mix)
        nxt = starts[k + 1] if k + 1 < len(starts) else s + window
        buf, buf_start = buf[:, nxt - buf_start:], nxt


def write_events_csv(path: str, events: list[Event]) -> None:
    text = io.StringIO()
    w = csv.writer(text, lineterminator="\n")
    w.writerow(["class", "onset", "offset", "confidence", "stem"])
    for e in events:
        w.writerow([e.label, repr(e.onset), repr(e.offset), repr(e.confidence), e.stem])   # 6 decimals at most
    write_text_atomic(path, text.getvalue())


def read_events_csv(path: str) -> list[Event]:
    with open(path, newline="") as f:
        return [Event(r["class"], float(r["onset"]), float(r["offset"]), float(r["confidence"]), r["stem"])
                for r in csv.DictReader(f)]


def write_timeline_png(path: str, events: list[Event], seconds: float, title: str) -> None:
    """One row per stem, a bar per event (opacity = confidence)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = sorted({e.stem for e in events})
    fig = Figure(figsize=(10, 1.2 + 0.35 * max(len(rows), 1)))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for y, stem in enumerate(rows):
        for e in events:
            if e.stem == stem:
                ax.barh(y, e.offset - e.onset, left=e.onset, height=0.7, color="tab:blue",
                        alpha=0.25 + 0.75 * min(max(e.confidence, 0.0), 1.0))
    ax.set_yticks(range(len(rows)), rows)
    ax.set_ylim(-0.6, max(len(rows), 1) - 0.4)
    ax.set_xlim(0, seconds)
    ax.invert_yaxis()
    ax.set_xlabel("time (s)")
    ax.set_title(title)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    write_bytes_atomic(path, buf.getvalue())


def _result(out_dir: str, rec: dict, computed: int, resumed: int) -> SegmentResult:
    return SegmentResult({name: os.path.join(out_dir, f) for name, f in rec["stems"].items()},
                         [Event(*e) for e in rec["events"]], rec["windows"], computed, resumed,
                         rec["sample_rate"], out_dir, rec)


def run_segment(recording: str, out_dir: str, tagger_dir: str | None = None, separator_dir: str | None = None,
                system: str | None = None, *, tagger2_dir: str | None = None, separator2_dir: str | None = None,
                precision: str | None = None, config: SegmentConfig = SegmentConfig(),
                engine: Callable | None = None, progress: bool = True, log=print) -> SegmentResult:
    """Segment `recording` (4 channels) into `out_dir`: a stem per lane, events.csv, timeline.png.

    The system: the baseline from `tagger_dir` + `separator_dir`, a refined `system` (preset name or
    config JSON, with `tagger2_dir`/`separator2_dir` as it needs), or `engine(batch_size) -> system.engine.Engine`.
    Everything is checked (config, recording, output folder, record) before models load or outputs are
    touched. A finished run with the same settings is returned as it is."""
    from tqdm import tqdm

    from .infer import default_batch_size, settings_difference
    from .runtime.memory import HeapGuard

    window, hop = config.samples()
    stream = AudioStream(recording, channels=4, resample=config.resample)
    old = _check_out(out_dir)
    stream.check()                                     # NaN/Inf, a short body: before models and outputs
    if engine is None:
        engine = _engine_factory(tagger_dir, separator_dir, system, tagger2_dir, separator2_dir, precision)
    starts, length = window_starts(stream.length, window, hop)
    out_rate = stream.rate if config.out_rate == "input" else SAMPLE_RATE
    out_frames = stream.frames if config.out_rate == "input" else stream.length
    batch_size = config.batch_size or default_batch_size()
    eng = engine(batch_size)
    settings = {"engine": eng.settings, "segment": config.record(), "recording": _recording_identity(stream)}
    if stream.rate != SAMPLE_RATE or out_rate != SAMPLE_RATE:
        settings["resampler"] = resampler_identity()
    if old is not None:
        diff = settings_difference(old.get("made_by") or {}, settings)
        if diff:
            state = "the results" if old.get("complete") else "unfinished windows"
            raise S5Error(f"{out_dir}: holds {state} of a segment run with other settings ({diff}); use "
                          "another --out, or delete that folder to start over")
        if old.get("complete") and all(os.path.isfile(os.path.join(out_dir, f)) for f in old["stems"].values()):
            log(f"{out_dir}: already complete")
            return _result(out_dir, old, 0, len(starts))
    if length < eng.min_samples:
        raise S5Error(f"{recording}: {length} samples is too short for the models (at least {eng.min_samples})")
    if eng.prepare is not None:
        eng.prepare(length)                            # a checkpoint that fails to read fails here
    windows_dir = os.path.join(out_dir, ".s5jax", "windows")
    try:
        os.makedirs(windows_dir, exist_ok=True)
    except OSError as e:
        raise S5Error(f"{out_dir}: output folder is not writable ({e.strerror})") from None
    for folder in (out_dir, os.path.dirname(windows_dir), windows_dir):
        clean_stale_parts(folder)
    claimed = set((old or {}).get("claimed", []))
    record = {"made_by": settings, "complete": False, "claimed": sorted(claimed), "windows": len(starts)}
    write_json_atomic(os.path.join(out_dir, ".s5jax", RECORD), record)

    sinks: dict[str, _LaneFile] = {}

    def open_sink(name: str) -> _LaneFile:
        sinks[name] = _LaneFile(os.path.join(out_dir, f"{name}.wav"), out_rate, out_frames)
        return sinks[name]

    stitcher = Stitcher(stream.length, window, hop, open_sink)
    heap = HeapGuard()
    computed = resumed = 0
    queue: list[int] = []                     # windows waiting to be stitched, in order
    pending: list[tuple[int, np.ndarray]] = []  # windows waiting to be computed
    fresh: dict[int, tuple] = {}              # computed windows not yet stitched

    def compute() -> None:
        nonlocal computed
        labels, probs, stems = (np.asarray(a) for a in eng.compute(np.stack([m for _, m in pending])))
        for j, (k, _) in enumerate(pending):
            if not (np.isfinite(stems[j]).all() and np.isfinite(probs[j]).all()):
                raise S5Error(f"{recording}: the model output is not finite (NaN/Inf) in the window at "
                              f"{starts[k] / SAMPLE_RATE:.1f} s (input level out of range?); finished "
                              "windows are kept")
            _save_window(out_dir, k, labels[j], probs[j], stems[j])
            fresh[k] = (labels[j], probs[j], stems[j])
        computed += len(pending)
        bar.update(len(pending))
        pending.clear()
        heap.after_call()

    def stitch() -> None:
        for k in queue:
            res = fresh.pop(k, None) or _load_window(out_dir, k, length)
            stitcher.add(*res)
        queue.clear()

    bar = tqdm(total=len(starts), desc="segment", unit="window", disable=not progress, file=sys.stderr)
    try:
        for k, mix in _windows(stream, starts, length):
            queue.append(k)
            if os.path.isfile(_window_path(out_dir, k)) and _load_window(out_dir, k, length) is not None:
                resumed += 1
                bar.update(1)
            else:
                pending.append((k, mix))
                if len(pending) == batch_size:
                    compute()
            if not pending:
                stitch()
        if pending:
            compute()
        stitch()
        events = stitcher.finish()
    except BaseException:
        for s in sinks.values():
            s.discard()
        raise
    finally:
        bar.close()
    if resumed:
        log(f"resumed: {resumed} window(s) from an earlier run, {computed} computed")

    # claim, then put the stems in place; only files we claimed are ever replaced or removed
    names = {name: f"{name}.wav" for name in sinks}
    try:
        for f in names.values():
            if os.path.lexists(os.path.join(out_dir, f)) and f not in claimed:
                raise S5Error(f"{os.path.join(out_dir, f)}: exists and was not written by s5jax segment; "
                              "not overwriting it (move it away or use another --out)")
    except S5Error:
        for s in sinks.values():
            s.discard()
        raise
    record["claimed"] = sorted(claimed | set(names.values()) | {"events.csv", "timeline.png"})
    write_json_atomic(os.path.join(out_dir, ".s5jax", RECORD), record)
    for name, s in sinks.items():
        os.replace(s.tmp, os.path.join(out_dir, names[name]))
    for stale in claimed - set(names.values()) - {"events.csv", "timeline.png"}:
        if os.path.lexists(os.path.join(out_dir, stale)):
            os.unlink(os.path.join(out_dir, stale))
    write_events_csv(os.path.join(out_dir, "events.csv"), events)
    write_timeline_png(os.path.join(out_dir, "timeline.png"), events, stream.length / SAMPLE_RATE,
                       os.path.basename(recording))
    record.update(complete=True, claimed=sorted(set(names.values()) | {"events.csv", "timeline.png"}),
                  stems=names, events=[list(e) for e in events], sample_rate=out_rate)
    write_json_atomic(os.path.join(out_dir, ".s5jax", RECORD), record)
    for k in range(len(starts)):                   # the stems are in place: the windows' files go
        try:
            os.unlink(_window_path(out_dir, k))
        except FileNotFoundError:
            pass
    try:
        os.rmdir(windows_dir)
    except OSError:
        pass
    return _result(out_dir, record, computed, resumed)


__all__ = ["SegmentConfig", "SegmentResult", "Event", "run_segment", "window_starts", "window_weights",
           "fade_in", "assign_lanes", "similarity", "merge_events", "Stitcher", "read_events_csv"]
