"""Our own checkpoint folder: `config.json` (model kind + frozen config) beside an orbax `variables/`.

    OUT_DIR/
      config.json     {"format": "s5jax-checkpoint", "version": 1, "kind": "tagger-4ch",
                       "config": {...}, "source": "...ckpt"}
      variables/      orbax StandardCheckpointer tree {"params": ..., "batch_stats": ...}

A folder is written under a temporary name and renamed into place, so an interrupted conversion never
leaves something that looks like a checkpoint. `save` refuses a target that holds anything but an
s5jax checkpoint (a user's files are never deleted); an existing checkpoint is swapped out atomically.

Identity: `identity(folder)` = {"path", "kind", "sha256"}, the hash taken over the canonical JSON of
{kind, config} and every weight array (path, dtype, shape, bytes) in sorted order, so it names the
model, not the file layout orbax chose, and the same weights loaded anywhere hash the same. Run
records (infer), cache manifests and submission configs store it to tell models apart. `save` writes
the hash into config.json ("sha256"), so loading needs not hash the weights again (a start-up cost of
≈ 0.5 s for the 4-ch tagger), and beside it the hash of {kind, config} alone ("config_sha256"). The
folder is written only as a whole (atomically), so the stored hash is the hash of the weights beside
it — but config.json is a text file a user may edit (a separator's hop 160 -> 40, which the weights
cannot reveal): the stored hash is used only while the config still hashes to "config_sha256";
otherwise (and in a folder written before that hash was stored) the weights are hashed at load, so
the identity always names the config and weights actually loaded.  (Refusing an edited config
instead would block a legitimate fix of a field the weights cannot tell; hashing costs that rare
start ≈ 0.5 s, and run records made with the old config then refuse to mix with the new one.)
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sys
from typing import Any, Mapping

import numpy as np

from .errors import CheckpointError, WriteError
from .files import fix_tree_modes, temp_dir, write_errno, write_json_atomic

FORMAT = "s5jax-checkpoint"
VERSION = 1
KINDS = ("tagger-1ch", "tagger-4ch", "separator", "m2d-encoder")


def _multiprocessing_options():
    import jax
    import orbax.checkpoint as ocp  # imported lazily: heavy, and only needed here

    if jax.process_count() > 1:
        # a folder is written or read by one process alone (e.g. the export of a multi-host training
        # run): no barriers with the other processes, which are not saving anything
        me = jax.process_index()
        return ocp.options.MultiprocessingOptions(primary_host=me, active_processes={me})
    return ocp.options.MultiprocessingOptions()


def _checkpointer():
    """The reader (any orbax PyTree layout, compressed or not)."""
    import orbax.checkpoint as ocp

    return ocp.StandardCheckpointer(multiprocessing_options=_multiprocessing_options())


@contextlib.contextmanager
def orbax_writing(path: str):
    """Around an orbax save into `path`. A failed save makes each of orbax's writer threads print its
    traceback (hundreds of lines) before the error reaches us: stderr is held in memory meanwhile and
    shown afterwards, except when the failure is a full disk, a quota, a read-only file system or
    permissions, which becomes one WriteError line naming `path`."""
    held = saved = None
    if hasattr(os, "memfd_create"):       # Linux; elsewhere nothing is held back
        sys.stderr.flush()
        held, saved = os.memfd_create("s5jax-orbax-stderr"), os.dup(2)
        os.dup2(held, 2)
    quiet = False
    try:
        yield
    except Exception as e:
        code = write_errno(e)
        if code is None:
            raise
        quiet = True
        raise WriteError(code, path) from None
    finally:
        if held is not None:
            if quiet:                     # writes still in flight fail after the error: let them print
                _until_quiet(held)
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            if not quiet:                 # show what orbax said (warnings, or the error's context)
                os.lseek(held, 0, os.SEEK_SET)
                while chunk := os.read(held, 1 << 16):
                    os.write(2, chunk)
            os.close(held)


def _until_quiet(fd: int, settle: float = 0.5, limit: float = 5.0) -> None:
    """Wait until nothing more was written to `fd` for `settle` seconds (at most `limit`)."""
    import time

    end, size = time.monotonic() + limit, -1
    while time.monotonic() < end and os.fstat(fd).st_size != size:
        size = os.fstat(fd).st_size
        time.sleep(settle)


def _write_variables(path: str, tree) -> None:
    """Write the variables uncompressed: weights barely compress (≈ 9 % for the 4-ch tagger) and
    zstd decoding was half of the load time (4-ch tagger: restore 0.72 s compressed, 0.37 s not)."""
    import orbax.checkpoint as ocp

    mp = _multiprocessing_options()
    ck = ocp.Checkpointer(ocp.PyTreeCheckpointHandler(use_compression=False, multiprocessing_options=mp),
                          multiprocessing_options=mp)
    ck.save(path, args=ocp.args.PyTreeSave(tree))          # synchronous: done when it returns


def _is_checkpoint_folder(path: str) -> bool:
    """True if `path` holds exactly an s5jax checkpoint (config.json of our format + variables/)."""
    try:
        names = set(os.listdir(path))
        read_meta(path)
    except (OSError, CheckpointError):
        return False
    return names <= {"config.json", "variables"}


def check_target(out_dir: str | os.PathLike) -> str:
    """`out_dir` as an absolute path if a checkpoint may be written there (absent, empty folder, or an
    s5jax checkpoint); otherwise a CheckpointError, nothing touched."""
    out_dir = os.path.abspath(os.fspath(out_dir))
    if os.path.lexists(out_dir):
        if not os.path.isdir(out_dir) or os.path.islink(out_dir):
            raise CheckpointError(f"{out_dir}: exists and is not a folder; choose another output")
        if os.listdir(out_dir) and not _is_checkpoint_folder(out_dir):
            raise CheckpointError(f"{out_dir}: folder is not empty and not an s5jax checkpoint; "
                                  "refusing to replace it (choose an empty or new folder)")
    return out_dir


def save(out_dir: str | os.PathLike, kind: str, config: Mapping[str, Any], variables: Mapping,
         source: str = "") -> None:
    """Write a checkpoint folder atomically. `out_dir` must be absent, an empty folder, or an s5jax
    checkpoint (then replaced as a whole); anything else is a CheckpointError and is left untouched."""
    if kind not in KINDS:
        raise ValueError(f"unknown model kind {kind!r}")
    out_dir = check_target(out_dir)
    parent = os.path.dirname(out_dir)
    try:
        os.makedirs(parent, exist_ok=True)
        tmp = temp_dir(parent)
    except OSError as e:
        raise CheckpointError(f"{out_dir}: cannot write the checkpoint here ({e.strerror})") from None
    old = None
    try:
        with orbax_writing(out_dir):
            _write_variables(os.path.join(tmp, "variables"), {k: dict(v) for k, v in variables.items()})
        meta = {"format": FORMAT, "version": VERSION, "kind": kind, "config": dict(config),
                "source": os.fspath(source), "sha256": digest(kind, config, variables),
                "config_sha256": config_digest(kind, config)}
        write_json_atomic(os.path.join(tmp, "config.json"), meta)
        fix_tree_modes(tmp)
        if os.path.lexists(out_dir):
            try:
                os.rmdir(out_dir)                     # an empty folder
            except OSError:
                old = temp_dir(parent)                # a checkpoint: move it aside, swap, then drop it
                os.replace(out_dir, os.path.join(old, "previous"))
        os.replace(tmp, out_dir)
    except WriteError as e:                           # name the checkpoint, not its temporary
        raise WriteError(e.errno, out_dir) from None
    finally:
        for leftover in (tmp, old):
            if leftover and os.path.exists(leftover):
                shutil.rmtree(leftover, ignore_errors=True)


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


def check_meta(ckpt_dir: str, meta: Mapping, kinds: tuple[str, ...] | None = None) -> str:
    """The model kind of a folder's config.json (`read_meta`), after checking that it holds a model
    config and (with `kinds`) is of an accepted kind: CheckpointError otherwise. Reads no weights."""
    kind = meta["kind"]
    if not isinstance(meta.get("config"), dict):
        raise CheckpointError(f"{ckpt_dir}: config.json has no model config (\"config\": "
                              f"{json.dumps(meta.get('config'))})")
    if kinds is not None and kind not in kinds:
        raise CheckpointError(f"{ckpt_dir}: holds a {kind} checkpoint, expected {' or '.join(kinds)}")
    return kind


def load(ckpt_dir: str | os.PathLike, kinds: tuple[str, ...] | None = None,
         meta: Mapping | None = None) -> tuple[str, dict, dict]:
    """-> (kind, config dict, variables as numpy arrays). `kinds` restricts the accepted model kinds.
    `meta`: the folder's config.json as the caller already read it (`read_meta`), so the config and
    the stored hash it uses come from the same read as the caller's."""
    ckpt_dir = os.fspath(ckpt_dir)
    meta = read_meta(ckpt_dir) if meta is None else meta
    kind = check_meta(ckpt_dir, meta, kinds)
    try:
        variables = _checkpointer().restore(os.path.join(os.path.abspath(ckpt_dir), "variables"))
    except Exception as e:  # orbax raises many types; the user needs the folder and the reason
        raise CheckpointError(f"{ckpt_dir}: cannot read the variables ({type(e).__name__}: "
                              f"{str(e).splitlines()[0] if str(e) else ''})") from None
    variables = _to_numpy(variables)
    return kind, dict(meta["config"]), variables


def stored_shapes(ckpt_dir: str | os.PathLike) -> dict[str, tuple]:
    """{weight path "a/b/c": shape} of the folder's weights, from orbax's metadata alone (≈ 0.2 s, no
    weight read): what a config can be checked against before anything is compiled."""
    import jax
    import orbax.checkpoint as ocp

    ckpt_dir = os.fspath(ckpt_dir)
    try:
        meta = ocp.StandardCheckpointer().metadata(os.path.join(os.path.abspath(ckpt_dir), "variables"))
        tree = getattr(meta, "item_metadata", meta)
        leaves = jax.tree_util.tree_leaves_with_path(tree, is_leaf=lambda x: hasattr(x, "shape"))
        if tree is None or not leaves:             # orbax logs a warning and returns nothing for damaged files
            raise ValueError("no array metadata")
        return {"/".join(str(getattr(k, "key", k)) for k in path): tuple(int(d) for d in leaf.shape)
                for path, leaf in leaves}
    except Exception as e:  # orbax raises many types; the user needs the folder and the reason
        raise CheckpointError(f"{ckpt_dir}: cannot read the variables ({type(e).__name__}: "
                              f"{str(e).splitlines()[0] if str(e) else ''})") from None


def _flat(tree, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(tree, Mapping):
        return [kv for k in sorted(tree) for kv in _flat(tree[k], f"{prefix}/{k}")]
    return [(prefix, tree)]


def _kind_config_json(kind: str, config: Mapping[str, Any]) -> bytes:
    return json.dumps({"kind": kind, "config": dict(config)}, sort_keys=True, allow_nan=False).encode()


def config_digest(kind: str, config: Mapping[str, Any]) -> str:
    """sha256 of the canonical {kind, config} JSON alone (config.json "config_sha256")."""
    return hashlib.sha256(_kind_config_json(kind, config)).hexdigest()


def digest(kind: str, config: Mapping[str, Any], variables: Mapping) -> str:
    """sha256 over the canonical {kind, config} JSON and every weight array, in sorted path order."""
    h = hashlib.sha256(_kind_config_json(kind, config))
    for path, leaf in _flat(variables):
        a = np.ascontiguousarray(np.asarray(leaf))
        h.update(f"{path}:{a.dtype.str}:{a.shape};".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def make_identity(path: str | os.PathLike | None, kind: str, config: Mapping[str, Any],
                  variables: Mapping) -> dict:
    """{"path": absolute folder or None (built in memory), "kind", "sha256"}."""
    return {"path": None if path is None else os.path.abspath(os.fspath(path)), "kind": kind,
            "sha256": digest(kind, config, variables)}


def _is_hash(h: Any) -> bool:
    return isinstance(h, str) and len(h) == 64 and all(c in "0123456789abcdef" for c in h)


def stored_hash(meta: Mapping) -> str | None:
    """config.json's "sha256" as `save` wrote it (None if absent or malformed), whatever the config
    says now: it still stands for the weights beside it (the weight cache keys on it)."""
    h = meta.get("sha256")
    return h if _is_hash(h) else None


def stored_identity(ckpt_dir: str | os.PathLike, meta: Mapping) -> dict | None:
    """The identity config.json records, or None when it cannot be trusted for what is loaded: no
    stored hash, or a config that no longer hashes to the stored "config_sha256" (edited after
    `save`, or a folder written before that hash was stored).  None: the caller hashes the weights."""
    h = stored_hash(meta)
    if h is None or not isinstance(meta.get("config"), dict):
        return None
    try:
        if meta.get("config_sha256") != config_digest(meta["kind"], meta["config"]):
            return None
    except (TypeError, ValueError):          # not plain JSON: hashed (and refused) at load
        return None
    return {"path": os.path.abspath(os.fspath(ckpt_dir)), "kind": meta["kind"], "sha256": h}


def identity(ckpt_dir: str | os.PathLike) -> dict:
    """A checkpoint folder's identity {"path", "kind", "sha256"} (the stored hash; a folder without one
    is read and hashed)."""
    meta = read_meta(ckpt_dir)
    stored = stored_identity(ckpt_dir, meta)
    if stored is not None:
        return stored
    kind, config, variables = load(ckpt_dir, meta=meta)
    return make_identity(ckpt_dir, kind, config, variables)


def _to_numpy(tree):
    if isinstance(tree, Mapping):
        return {k: _to_numpy(v) for k, v in tree.items()}
    return np.asarray(tree)


def num_params(variables: Mapping) -> int:
    """Learned parameters of a variable tree (the `params` collection; BatchNorm statistics excluded)."""
    import jax

    return int(sum(np.prod(np.shape(x)) for x in jax.tree_util.tree_leaves(variables.get("params", {}))))
