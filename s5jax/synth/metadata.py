"""Scene descriptions in SpAudSyn's metadata format, the one format s5jax draws, stores and renders.

A scene (one JSON file, SpAudSyn's `generate_metadata`):

    {"config": {"duration": 10.0, "sr": 32000, "max_event_overlap": 3, "max_event_dur": 10.0, "ref_db": -55,
                "foreground_dir": "data/dev_set/sound_event/valid", "background_dir": "data/dev_set/noise/valid",
                "interference_dir": "data/dev_set/interference/valid",
                "room_config": {"module": ..., "main": "SofaRoom",
                                "args": {"path": "data/dev_set/room_ir/valid", "direct_range_ms": [6, 50]}},
                "verbose": false},
     "fg_events":  [{"label", "source_file", "source_time", "event_time", "event_duration",
                     "event_position": [[x, y, z]], "snr", "role": "foreground"}, ...],
     "int_events": [... "role": "interference"],
     "bg_events":  [{"label": null, "source_file", "source_time": whole seconds or null, "event_time": 0,
                     "event_duration": duration, "event_position": null, "snr": 0, "role": "background"}],
     "room": {"module": ..., "main": "SofaRoom.from_metadata",
              "args": {"metadata": {"sofa_path", "sr", "nchan", "nrir", "rir_len", "direct_range_ms"}}}}

A list (the baseline's `metadata/valid.json`): `[{"metadata_path": "valid/<name>.json"}, ...]`, each path
relative to the list's folder; the scene's name is its file name without `.json`.

Paths. The baseline runs from its repository root, where the dev set is `data/dev_set`, and opens the
config's folders and `sofa_path` as written (relative to that root, or absolute); a `source_file` is
joined to its folder (foreground_dir for role foreground, interference_dir otherwise, background_dir
for the background) unless it already starts with that folder. s5jax is given the dev set folder
(`--data`, `data_root`) instead of a working directory, and finds each folder in it:
  1. the part from the layout's kind folder on (`sound_event`, `noise`, `interference`, `room_ir`) under
     the dev set: `data/dev_set/sound_event/valid` and `/any/where/sound_event/valid` both name
     `<dev set>/sound_event/valid`;
  2. otherwise the path itself when absolute, else relative to the dev set, else relative to the working
     directory (the official reading).
The first of these that exists is taken; none is a DataError naming the metadata file and the field.
Written scenes name folders the official way, `data/dev_set/<kind>/<split>` (or absolute paths).
"""
from __future__ import annotations

import json
import math
import os
from typing import Any, Mapping

from ..errors import DataError
from ..files import write_text_atomic

KINDS = ("sound_event", "noise", "interference", "room_ir")
ROOM_MODULE = "src.modules.spatial_audio_synthesizer.room"     # where the baseline keeps SpAudSyn's room.py
OFFICIAL_ROOT = "data/dev_set"                                  # the dev set, seen from the baseline's root
FOLDER_FIELDS = {"foreground_dir": "sound_event", "background_dir": "noise", "interference_dir": "interference"}


# ----------------------------------------------------------------------------------------- paths
class Paths:
    """Resolves a scene's folders and files inside one dev set folder (see the module docstring)."""

    def __init__(self, root: str | os.PathLike):
        self.root = os.path.abspath(os.fspath(root))
        self._dirs: dict[str, str | None] = {}

    def candidates(self, raw: str) -> list[str]:
        parts = os.path.normpath(raw).split(os.sep)
        out = []
        anchors = [i for i, p in enumerate(parts) if p in KINDS]
        if anchors:
            out.append(os.path.join(self.root, *parts[anchors[-1]:]))
        if os.path.isabs(raw):
            out.append(os.path.normpath(raw))
        else:
            out += [os.path.normpath(os.path.join(self.root, raw)), os.path.abspath(raw)]
        return out

    def locate(self, raw: str, where: str, want_dir: bool) -> str:
        for c in self.candidates(raw):
            if os.path.isdir(c) if want_dir else os.path.isfile(c):
                return c
        kind = "folder" if want_dir else "file"
        raise DataError(f"{where}: {kind} {raw!r} not found in {self.root} (nor as given)")

    def folder(self, raw: str, where: str) -> str:
        if raw not in self._dirs:
            self._dirs[raw] = self.locate(raw, where, want_dir=True)
        return self._dirs[raw]

    def source(self, source_file: str, raw_dir: str, where: str) -> str:
        """A source_file of folder `raw_dir` (as written in the config) -> its path."""
        if source_file.startswith(raw_dir):          # SpAudSyn: then the path is used as it is
            rel = os.path.relpath(source_file, raw_dir)
        elif os.path.isabs(source_file):
            if os.path.isfile(source_file):
                return source_file
            raise DataError(f"{where}: file {source_file!r} not found")
        else:
            rel = source_file
        path = os.path.join(self.folder(raw_dir, where), rel)
        if not os.path.isfile(path):
            raise DataError(f"{where}: file {source_file!r} not found (looked for {path})")
        return path


def official_folder(root: str, kind: str, split: str, absolute: bool = False) -> str:
    """How written scenes name a dev-set folder: `data/dev_set/<kind>/<split>` (the baseline's form)."""
    return os.path.join(os.path.abspath(root), kind, split) if absolute else f"{OFFICIAL_ROOT}/{kind}/{split}"


# ----------------------------------------------------------------------------------------- checking
def _num(v, where: str, allow_none: bool = False) -> None:
    if v is None and allow_none:
        return
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise DataError(f"{where}: not a finite number ({v!r})")


def check_scene(meta: Any, where: str) -> dict:
    """The fields rendering reads, checked (types and ranges): a bad one is a DataError naming `where`
    and the field."""
    if not isinstance(meta, dict):
        raise DataError(f"{where}: not a SpAudSyn scene (a JSON object with config, fg_events, bg_events, "
                        "int_events, room)")
    missing = [k for k in ("config", "fg_events", "bg_events", "int_events", "room") if k not in meta]
    if missing:
        raise DataError(f"{where}: not a SpAudSyn scene (missing {', '.join(missing)})")
    cfg = meta["config"]
    if not isinstance(cfg, dict):
        raise DataError(f"{where}: config is not an object")
    for k in ("duration", "sr", "ref_db"):
        _num(cfg.get(k), f"{where}: config.{k}")
    if cfg["duration"] <= 0 or cfg["sr"] <= 0:
        raise DataError(f"{where}: config.duration and config.sr must be positive")
    room = meta["room"]
    try:
        info = room["args"]["metadata"]
        if not isinstance(info["sofa_path"], str):
            raise TypeError
    except (KeyError, TypeError):
        raise DataError(f"{where}: room.args.metadata.sofa_path missing (SofaRoom.from_metadata)") from None
    dr = info.get("direct_range_ms", [6, 50])
    if not (isinstance(dr, (list, tuple)) and len(dr) == 2):
        raise DataError(f"{where}: room.args.metadata.direct_range_ms must be [before, after]")
    for j, v in enumerate(dr):
        _num(v, f"{where}: room.args.metadata.direct_range_ms[{j}]")
    for key in ("fg_events", "bg_events", "int_events"):
        if not isinstance(meta[key], list):
            raise DataError(f"{where}: {key} is not a list")
        for i, ev in enumerate(meta[key]):
            w = f"{where}: {key}[{i}]"
            if not isinstance(ev, dict):
                raise DataError(f"{w}: not an object")
            if not isinstance(ev.get("source_file"), str):
                raise DataError(f"{w}.source_file: not a path")
            for k in ("source_time", "event_time", "event_duration", "snr"):
                _num(ev.get(k), f"{w}.{k}", allow_none=(k == "source_time" and key == "bg_events"))
            if key != "bg_events":
                if not isinstance(ev.get("label"), str):
                    raise DataError(f"{w}.label: not a class name")
                if ev.get("role") not in ("foreground", "interference"):
                    raise DataError(f"{w}.role: {ev.get('role')!r}, expected foreground or interference")
                if ev["event_duration"] <= 0:
                    raise DataError(f"{w}.event_duration must be positive")
            need = ("background_dir" if key == "bg_events" else
                    "foreground_dir" if ev["role"] == "foreground" else "interference_dir")   # as SpAudSyn
            if not isinstance(cfg.get(need), str) or not cfg[need]:
                raise DataError(f"{w}: config.{need} is not set")
    return meta


def check_scene_files(meta: Mapping, paths: Paths, where: str) -> None:
    """Every file a (checked) scene names exists in the dev set: the room and each source."""
    check_scene(meta, where)
    cfg = meta["config"]
    paths.locate(meta["room"]["args"]["metadata"]["sofa_path"], f"{where}: room sofa_path", want_dir=False)
    for key in ("fg_events", "int_events", "bg_events"):
        for i, ev in enumerate(meta[key]):
            folder = ("background_dir" if key == "bg_events" else
                      "foreground_dir" if ev["role"] == "foreground" else "interference_dir")
            paths.source(ev["source_file"], cfg[folder], f"{where}: {key}[{i}]")


# ----------------------------------------------------------------------------------------- files
def _read_json(path: str) -> Any:
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: unreadable JSON ({e})") from None


def read_scene(path: str | os.PathLike) -> dict:
    path = os.fspath(path)
    return check_scene(_read_json(path), path)


def scene_name(path: str) -> str:
    base = os.path.basename(path)
    return base[:-5] if base.endswith(".json") else base


def read_scenes(path: str | os.PathLike) -> list[tuple[str, dict]]:
    """A scene JSON or a list of them (`valid.json`) -> [(name, scene)] in the list's order."""
    path = os.fspath(path)
    doc = _read_json(path)
    if isinstance(doc, dict):
        return [(scene_name(path), check_scene(doc, path))]
    if not isinstance(doc, list):
        raise DataError(f"{path}: neither a SpAudSyn scene nor a list of {{\"metadata_path\": ...}}")
    base = os.path.dirname(os.path.abspath(path))
    out, seen = [], {}
    for i, item in enumerate(doc):
        if not (isinstance(item, Mapping) and isinstance(item.get("metadata_path"), str)):
            raise DataError(f"{path}: entry {i} is not {{\"metadata_path\": \"<scene>.json\"}}")
        p = os.path.join(base, item["metadata_path"])
        name = scene_name(p)
        if name in seen:
            raise DataError(f"{path}: entries {seen[name]} and {i} are both named {name!r}")
        seen[name] = i
        out.append((name, read_scene(p)))
    if not out:
        raise DataError(f"{path}: an empty scene list")
    return out


def write_scenes(list_path: str | os.PathLike, scenes: list[tuple[str, dict]]) -> list[str]:
    """Write scenes as the baseline's metadata: `<dir>/<stem>/<name>.json` each and the list
    `list_path` = `[{"metadata_path": "<stem>/<name>.json"}, ...]` (e.g. metadata/valid.json and
    metadata/valid/*.json), atomically, the list last. Returns the scene files written."""
    list_path = os.path.abspath(os.fspath(list_path))
    stem = scene_name(list_path)
    folder = os.path.join(os.path.dirname(list_path), stem)
    names = [n for n, _ in scenes]
    bad = [n for n in names if not n or os.sep in n or n.startswith(".")]
    if bad or len(set(names)) != len(names):
        raise DataError(f"{list_path}: scene names must be unique file names ({bad or 'duplicates'})")
    os.makedirs(folder, exist_ok=True)
    written = []
    for name, meta in scenes:
        p = os.path.join(folder, f"{name}.json")
        write_text_atomic(p, json.dumps(meta, indent=4))
        written.append(p)
    write_text_atomic(list_path, json.dumps([{"metadata_path": f"{stem}/{n}.json"} for n in names], indent=4))
    return written
