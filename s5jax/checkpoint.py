"""Our own checkpoint folder: `config.json` (model kind + frozen config) beside an orbax `variables/`.

    OUT_DIR/
      config.json     {"format": "s5jax-checkpoint", "version": 1, "kind": "tagger-4ch",
                       "config": {...}, "source": "...ckpt"}
      variables/      orbax StandardCheckpointer tree {"params": ..., "batch_stats": ...}

A folder is written under a temporary name and renamed into place, so an interrupted conversion never
leaves something that looks like a checkpoint.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from typing import Any, Mapping

import numpy as np

from .errors import CheckpointError

FORMAT = "s5jax-checkpoint"
VERSION = 1
KINDS = ("tagger-1ch", "tagger-4ch", "separator", "m2d-encoder")


def _checkpointer():
    import jax
    import orbax.checkpoint as ocp  # imported lazily: heavy, and only needed here

    if jax.process_count() > 1:
        # a folder is written or read by one process alone (e.g. the export of a multi-host training
        # run): no barriers with the other processes, which are not saving anything
        me = jax.process_index()
        return ocp.StandardCheckpointer(multiprocessing_options=ocp.options.MultiprocessingOptions(
            primary_host=me, active_processes={me}))
    return ocp.StandardCheckpointer()


def save(out_dir: str | os.PathLike, kind: str, config: Mapping[str, Any], variables: Mapping,
         source: str = "") -> None:
    """Write a checkpoint folder atomically (replacing an existing one at `out_dir`)."""
    if kind not in KINDS:
        raise ValueError(f"unknown model kind {kind!r}")
    out_dir = os.path.abspath(os.fspath(out_dir))
    parent = os.path.dirname(out_dir)
    try:
        os.makedirs(parent, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=".s5jax-", dir=parent)
    except OSError as e:
        raise CheckpointError(f"{out_dir}: cannot write the checkpoint here ({e.strerror})") from None
    try:
        ck = _checkpointer()
        tree = {k: dict(v) for k, v in variables.items()}
        ck.save(os.path.join(tmp, "variables"), tree)
        ck.wait_until_finished()
        meta = {"format": FORMAT, "version": VERSION, "kind": kind, "config": dict(config),
                "source": os.fspath(source)}
        with open(os.path.join(tmp, "config.json"), "w") as f:
            json.dump(meta, f, indent=1)
        if os.path.lexists(out_dir):
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp, ignore_errors=True)


def read_meta(ckpt_dir: str | os.PathLike) -> dict:
    ckpt_dir = os.fspath(ckpt_dir)
    path = os.path.join(ckpt_dir, "config.json")
    if not os.path.isfile(path):
        if os.path.isfile(ckpt_dir):
            raise CheckpointError(f"{ckpt_dir}: is a file, not an s5jax checkpoint folder (convert it "
                                  "first: s5jax convert CKPT OUT_DIR)")
        raise CheckpointError(f"{ckpt_dir}: not an s5jax checkpoint folder (no config.json)")
    try:
        with open(path) as f:
            meta = json.load(f)
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path}: unreadable checkpoint config ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("kind") not in KINDS:
        raise CheckpointError(f"{path}: not an s5jax checkpoint config")
    return meta


def load(ckpt_dir: str | os.PathLike, kinds: tuple[str, ...] | None = None) -> tuple[str, dict, dict]:
    """-> (kind, config dict, variables as numpy arrays). `kinds` restricts the accepted model kinds."""
    ckpt_dir = os.fspath(ckpt_dir)
    meta = read_meta(ckpt_dir)
    kind = meta["kind"]
    if kinds is not None and kind not in kinds:
        raise CheckpointError(f"{ckpt_dir}: holds a {kind} checkpoint, expected {' or '.join(kinds)}")
    try:
        variables = _checkpointer().restore(os.path.join(os.path.abspath(ckpt_dir), "variables"))
    except Exception as e:  # orbax raises many types; the user needs the folder and the reason
        raise CheckpointError(f"{ckpt_dir}: cannot read the variables ({type(e).__name__}: "
                              f"{str(e).splitlines()[0] if str(e) else ''})") from None
    variables = _to_numpy(variables)
    return kind, dict(meta["config"]), variables


def _to_numpy(tree):
    if isinstance(tree, Mapping):
        return {k: _to_numpy(v) for k, v in tree.items()}
    return np.asarray(tree)


def num_params(variables: Mapping) -> int:
    """Learned parameters of a variable tree (the `params` collection; BatchNorm statistics excluded)."""
    import jax

    return int(sum(np.prod(np.shape(x)) for x in jax.tree_util.tree_leaves(variables.get("params", {}))))
