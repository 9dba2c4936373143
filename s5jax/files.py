"""Files we write: atomic (temporary name in the same folder, then rename) and following the umask.

`tempfile.mkstemp`/`mkdtemp` create 0600/0700 entries whatever the umask; results meant for a group
must be readable like any file the user makes, so every finished file is set to 0666 & ~umask and
every folder to 0777 & ~umask (what `open`/`mkdir` would give) before it is renamed into place.
Temporaries are named `.part-<pid>-...`, so a run can tell its own and a live run's temporaries from
those a dead process left behind (`clean_stale_parts`).
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile

from .errors import S5Error


def umask() -> int:
    """The process umask, read without changing it (Linux /proc); falls back to set-and-restore."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def file_mode() -> int:
    return 0o666 & ~umask()


def dir_mode() -> int:
    return 0o777 & ~umask()


def part_prefix() -> str:
    """Prefix of this process's temporaries: `.part-<pid>-`."""
    return f".part-{os.getpid()}-"


_PART = re.compile(r"^\.part-(\d+)-")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:   # exists, owned by someone else
        return True
    return True


def clean_stale_parts(folder: str) -> list[str]:
    """Delete `.part-<pid>-*` temporaries in `folder` whose process is gone; returns their names.
    Another live run's temporaries (and anything not named like ours) are left alone."""
    removed = []
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return removed
    for f in names:
        m = _PART.match(f)
        if m and int(m.group(1)) != os.getpid() and not _alive(int(m.group(1))):
            path = os.path.join(folder, f)
            try:
                shutil.rmtree(path) if os.path.isdir(path) and not os.path.islink(path) else os.unlink(path)
                removed.append(f)
            except FileNotFoundError:
                pass
    return removed


def temp_file(path: str, suffix: str = "") -> tuple[int, str]:
    """An open temporary file beside `path` (fd, name), mode set from the umask."""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=part_prefix(), suffix=suffix, dir=folder)
    except OSError as e:
        raise S5Error(f"{path}: cannot write here ({e.strerror})") from None
    os.fchmod(fd, file_mode())
    return fd, tmp


def temp_dir(parent: str) -> str:
    """A temporary folder in `parent`, mode set from the umask."""
    tmp = tempfile.mkdtemp(prefix=part_prefix(), dir=parent)
    os.chmod(tmp, dir_mode())
    return tmp


@contextlib.contextmanager
def locked(path: str | os.PathLike):
    """Hold an exclusive advisory lock (flock) on `path` — an empty file, created with the umask's
    mode — for the block: one read-modify-write of a file shared by several processes at a time.
    The lock goes with the process (a killed holder releases it)."""
    import fcntl

    fd = os.open(os.fspath(path), os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)                       # releases the lock


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    path = os.fspath(path)
    fd, tmp = temp_file(path)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write a text file (JSON, CSV) under a temporary name and rename it into place."""
    write_bytes_atomic(path, text.encode())


def write_csv_atomic(path: str | os.PathLike, header: list[str], rows) -> None:
    """A CSV table (csv module: a field with a comma, quote or newline — a soundscape name — is
    quoted, so every row keeps its columns), written atomically."""
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    write_text_atomic(path, buf.getvalue())


def write_json_atomic(path: str | os.PathLike, obj, indent: int | None = 1) -> None:
    """Strict JSON (NaN/Inf refused: other readers reject them), written atomically."""
    write_text_atomic(path, json.dumps(obj, indent=indent, allow_nan=False))


def fix_tree_modes(root: str) -> None:
    """Set a freshly written folder tree (e.g. from orbax) to the umask modes."""
    dm, fm = dir_mode(), file_mode()
    for folder, dirs, files in os.walk(root):
        os.chmod(folder, dm)
        for f in files:
            p = os.path.join(folder, f)
            if not os.path.islink(p):
                os.chmod(p, fm)
