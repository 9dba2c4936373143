"""Where the soundscapes, oracle targets and estimates of a DCASE S5 set live, by the official names.

    dev test:  <set>/soundscape/<name>.wav, <set>/oracle_target/<name>[_<n>]_<label>.wav
    eval:      <set>/eval_XXXX.wav  (or <set>/soundscape/eval_XXXX.wav)
    estimates: <out>/<name>_<slot>_<label>.wav   (one per non-silent slot)
"""
from __future__ import annotations

import os
import re

from .errors import S5Error
from .labels import CLASSES, label_index

_REF_TAIL = re.compile(r"^(?:(\d+)_)?([A-Za-z]+)$")
_EST_TAIL = re.compile(r"^(\d+)_([A-Za-z]+)$")


def soundscape_folder(root: str) -> str:
    """The folder holding the mixtures: `<root>/soundscape` if present, else `<root>` itself."""
    if os.path.isfile(root):
        raise S5Error(f"{root}: is a file; give the folder holding the soundscapes (or the set folder "
                      "with soundscape/)")
    if not os.path.isdir(root):
        raise S5Error(f"{root}: no such folder")
    sub = os.path.join(root, "soundscape")
    return sub if os.path.isdir(sub) else root


def list_soundscapes(root: str) -> list[tuple[str, str]]:
    """-> sorted [(name, path)] of the `.wav` mixtures of a set. An empty set is an error."""
    folder = soundscape_folder(root)
    items = sorted((f[:-4], os.path.join(folder, f)) for f in os.listdir(folder)
                   if f.lower().endswith(".wav") and not f.startswith("."))
    if not items:
        raise S5Error(f"{folder}: no .wav soundscapes in this folder")
    return items


def oracle_folder(root: str) -> str | None:
    sub = os.path.join(root, "oracle_target")
    return sub if os.path.isdir(sub) else None


def reference_files(oracle_dir: str, name: str, listing: list[str] | None = None) -> list[tuple[str, int]]:
    """Oracle targets of soundscape `name`: sorted [(path, class index)].

    A file belongs to `name` when it is `<name>_<label>.wav` or `<name>_<n>_<label>.wav` with a known
    label (so `<name>_x` of another soundscape that merely shares the prefix is not taken).
    """
    files = sorted(os.listdir(oracle_dir)) if listing is None else listing
    out = []
    for f in files:
        if not (f.startswith(name + "_") and f.lower().endswith(".wav")):
            continue
        m = _REF_TAIL.match(f[len(name) + 1:-4])
        if m and m.group(2) in CLASSES:
            out.append((os.path.join(oracle_dir, f), label_index(m.group(2))))
    return out


def estimate_name(name: str, slot: int, label: int) -> str:
    return f"{name}_{slot}_{CLASSES[label]}.wav"


def estimate_files(folder: str, name: str, listing: list[str] | None = None) -> list[tuple[str, int, int]]:
    """Estimates written for `name`: sorted [(path, slot, class index)]."""
    files = sorted(os.listdir(folder)) if listing is None else listing
    out = []
    for f in files:
        if f.startswith(name + "_") and f.endswith(".wav"):
            m = _EST_TAIL.match(f[len(name) + 1:-4])
            if m and m.group(2) in CLASSES:
                out.append((os.path.join(folder, f), int(m.group(1)), label_index(m.group(2))))
    return out
