"""`s5jax submit`: infer the dev-test and evaluation sets, assemble the package, check it, publish it
(resumable; see the package docstring).
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import sys
from typing import Callable

from .. import __version__
from ..dataset import list_soundscapes, oracle_folder, soundscape_folder
from ..files import check_writable, write_json_atomic, write_text_atomic
from ..infer import run_infer, settings_difference
from .check import check_package, check_soundscape_names
from .writer import (DEV_JSON, EVAL_JSON, EVAL_OUT, WORK, PackageError, _dump, dev_results, package_name,
                     write_stems_pcm16, write_zip)


def _inode(path: str) -> int | None:
    try:
        return os.lstat(path).st_ino
    except FileNotFoundError:
        return None


def _only_empty_dirs(path: str) -> bool:
    """True if `path` is a folder holding nothing but (possibly) an empty `eval_out/`."""
    entries = os.listdir(path)
    return all(e == EVAL_OUT and os.path.isdir(os.path.join(path, e)) and not os.listdir(os.path.join(path, e))
               for e in entries)


def _check_target(final: str, ours: bool) -> None:
    """Refuse a package folder that this tool did not make and that is not empty (never delete it)."""
    if ours or not os.path.lexists(final):
        return
    if not os.path.isdir(final) or os.path.islink(final):
        raise PackageError(f"{final}: exists and is not a folder; choose another --number or --out")
    eval_out = os.path.join(final, EVAL_OUT)
    if os.path.isdir(eval_out) and os.listdir(eval_out):
        raise PackageError(f"{eval_out}: exists and is not empty; remove it or choose another --number "
                           "(nothing was deleted)")
    if not _only_empty_dirs(final):
        raise PackageError(f"{final}: exists and holds files this run did not make; remove them or choose "
                           "another --number (nothing was deleted)")


def _inside(path: str, folder: str) -> bool:
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return path == folder or path.startswith(folder + os.sep)


def run_submit(dev_dir: str, eval_dir: str, out_dir: str, tagger_dir: str, separator_dir: str,
               author: str, affiliation: str, number: int | str, batch_size: int | None = None,
               progress: bool = True, log: Callable = print, dev_resample: bool = False, **infer_options) -> str:
    """Make `out_dir/A_F_task4_K/` and `out_dir/A_F_task4_K.zip`; returns the zip's path.

    infer_options go to `run_infer` unchanged (e.g. `engine=`: a refined system, a precision); what they
    decide is recorded in `config` through infer's run record. `dev_resample`: the dev-test set (only)
    may be at another rate, resampled to 32 kHz on load (`s5jax infer --resample`; recorded in `config`
    as `dev_test_resample`).
    Refuses (PackageError, nothing deleted) a non-empty eval_out or a package folder or zip it did not
    make, an out folder inside a set, a dev-test set without oracle targets, any clip that could not be
    processed or scored (a package must cover every soundscape).
    """
    name = package_name(author, affiliation, number)
    check_writable(out_dir)                   # a read-only --out fails before any work
    for d, what in ((dev_dir, "--dev-test"), (eval_dir, "--eval")):
        if not os.path.isdir(d):
            raise PackageError(f"{d}: no such folder ({what})")
        if _inside(out_dir, d):
            raise PackageError(f"{out_dir}: --out is inside the {what} set {d}; choose a folder outside it")
        # the package's stems are told apart by name prefix: refuse such a set before any inference
        check_soundscape_names([n for n, _ in list_soundscapes(d)], soundscape_folder(d))
    oracle = oracle_folder(dev_dir)
    if oracle is None:
        raise PackageError(f"{dev_dir}: no oracle_target folder; --dev-test needs the dev-test set with "
                           "its oracle targets")
    final, final_zip = os.path.join(out_dir, name), os.path.join(out_dir, name + ".zip")
    work = os.path.join(out_dir, WORK, name)
    made = [d for d in (out_dir, os.path.join(out_dir, WORK), work) if not os.path.isdir(d)]
    try:
        os.makedirs(work, exist_ok=True)
    except OSError as e:
        raise PackageError(f"{out_dir}: cannot write here ({e.strerror})") from None
    lock_path = os.path.join(work, "lock")
    lock = open(lock_path, "a")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise PackageError(f"{work}: another s5jax submit is writing this package") from None
    try:
        marker_path = os.path.join(work, "published.json")
        marker = _read_marker(marker_path)
        folder_ours = marker.get("folder") is not None and _inode(final) == marker["folder"]
        zip_ours = marker.get("zip") is not None and _inode(final_zip) == marker["zip"]
        _check_target(final, folder_ours)
        if os.path.lexists(final_zip) and not zip_ours:
            raise PackageError(f"{final_zip}: exists and was not made by this submission; remove it or "
                               "choose another --number (nothing was deleted)")
        # infer resumes (finished clips are kept) and refuses records made with other settings, so
        # a re-run never mixes models; for a package already in place only the comparison is left
        runs = {key: _infer_set(set_dir, os.path.join(work, key), oracle_dir, tagger_dir, separator_dir,
                                batch_size, progress, log, {**infer_options, **extra})
                for key, set_dir, oracle_dir, extra in (("dev", dev_dir, oracle, {"resample": dev_resample}),
                                                        ("eval", eval_dir, None, {}))}
        # what made the results: infer's run record (checkpoint identities with their sha256, system,
        # precision), the same for both sets (infer refuses mixed records)
        config = {"s5jax_version": __version__, **runs["eval"][0][0]["made_by"],
                  "dev_test": os.path.abspath(dev_dir), "eval": os.path.abspath(eval_dir)}
        if dev_resample:
            config["dev_test_resample"] = runs["dev"][0][0]["made_by"]["resample"]
        if folder_ours:
            _same_config(final, config)
        else:
            pkg = _stage(work, name, runs, config, dev_dir, eval_dir, log)
            marker = {"folder": _inode(pkg)}
            _write_marker(marker_path, marker)      # before the rename: a kill after it still knows
            _make_room(final)
            os.rename(pkg, final)
        if zip_ours and folder_ours:
            log(f"{final_zip}: already complete")
        else:
            tmp_zip = os.path.join(work, name + ".zip")
            write_zip(final, tmp_zip)
            check_package(tmp_zip, dev_dir, eval_dir)
            marker["zip"] = _inode(tmp_zip)
            _write_marker(marker_path, marker)
            os.replace(tmp_zip, final_zip)
            log(f"wrote {final_zip}")
        summary = check_package(final_zip, dev_dir, eval_dir)
        if summary.warning():
            print(f"s5jax: {summary.warning()}", file=sys.stderr)
        log(f"checked {final} and {final_zip}: {summary.describe()}")
        return final_zip
    except BaseException:
        # a refusal before any work leaves nothing behind: the lock and the folders this call made
        if made and sorted(os.listdir(work)) == ["lock"]:
            os.unlink(lock_path)
            for d in reversed(made):
                with contextlib.suppress(OSError):
                    os.rmdir(d)
        raise
    finally:
        lock.close()


def _infer_set(set_dir, out, oracle_dir, tagger_dir, separator_dir, batch_size, progress, log,
               infer_options) -> tuple[list[dict], int]:
    """`s5jax infer` of one set into the work folder -> (per-clip records, nparams); every clip must
    be processed (and, with oracle targets, scored)."""
    log(f"s5jax infer {set_dir} -> {out}")
    report = run_infer(set_dir, out, tagger_dir, separator_dir, oracle_dir=oracle_dir, batch_size=batch_size,
                       progress=progress, log=log, **infer_options)
    failed = {**report.skipped, **((report.scores or {}).get("skipped", {}) if oracle_dir else {})}
    if failed:
        raise PackageError(f"{set_dir}: {len(failed)} clip(s) could not be processed or scored, a package "
                           f"needs every soundscape; first: {next(iter(failed.values()))}")
    with open(os.path.join(out, "results.json")) as f:
        return report.records, json.load(f)["nparams"]


def _same_config(final: str, config: dict) -> None:
    """Refuse to complete a package this submission made earlier with other settings."""
    path = os.path.join(final, EVAL_JSON)
    try:
        with open(path) as f:
            old = json.load(f).get("config", {})
    except (OSError, ValueError, AttributeError):
        raise PackageError(f"{path}: unreadable; remove {final} to rebuild the package") from None
    diff = settings_difference(old, config)
    if diff:
        raise PackageError(f"{final}: made with other settings ({diff}); choose another --number")


def _stage(work, name, runs, config, dev_dir, eval_dir, log) -> str:
    """Assemble and check the package in `work/stage/<name>`; returns that folder."""
    stage = os.path.join(work, "stage")
    if os.path.lexists(stage):             # a killed earlier run's staging (we hold the lock)
        shutil.rmtree(stage)
    pkg = os.path.join(stage, name)
    os.makedirs(os.path.join(pkg, EVAL_OUT))
    records, nparams = runs["eval"]
    write_stems_pcm16(os.path.join(work, "eval"), os.path.join(pkg, EVAL_OUT), records)
    probabilities = [{"soundscape": r["soundscape"], "estimate": r["estimate"]} for r in records]
    write_text_atomic(os.path.join(pkg, EVAL_JSON),
                      _dump({"nparams": nparams, "probabilities": probabilities, "config": config}))
    records, nparams = runs["dev"]
    write_text_atomic(os.path.join(pkg, DEV_JSON),
                      _dump(dev_results(os.path.join(work, "dev", "scores"), records, nparams, config)))
    check_package(pkg, dev_dir, eval_dir)
    return pkg


def _make_room(final: str) -> None:
    """Remove the empty folders (only those: checked again) the user had at the package's place."""
    if os.path.lexists(final):
        _check_target(final, False)
        if os.path.isdir(os.path.join(final, EVAL_OUT)):
            os.rmdir(os.path.join(final, EVAL_OUT))
        os.rmdir(final)


def _read_marker(path: str) -> dict:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def _write_marker(path: str, marker: dict) -> None:
    write_json_atomic(path, marker)
