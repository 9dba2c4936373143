"""Files we write: atomic (temporary name in the same folder, then rename) and following the umask.

`tempfile.mkstemp`/`mkdtemp` create 0600/0700 entries whatever the umask; results meant for a group
must be readable like any file the user makes, so every finished file is set to 0666 & ~umask and
every folder to 0777 & ~umask (what `open`/`mkdir` would give) before it is renamed into place.
Temporaries are named `.part-<pid>-...`, so a run can tell its own and a live run's temporaries from
those a dead process left behind (`clean_stale_parts`).

Write failures the user must fix outside the program (full disk, quota, read-only file system,
permissions) become one `WriteError` line naming the file ("no space left on device writing X"), the
temporary is removed, and nothing appears under the final name. Every byte these helpers write goes
through `os.write` (one place where such a failure shows); `check_writable` probes an output folder
before any work.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import tempfile

from .errors import WRITE_REASONS, S5Error, WriteError


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


_OS_ERROR_CODE = re.compile(r"os_error_code='?(\d+)")     # how tensorstore (orbax) reports an errno


def write_errno(e: BaseException | None) -> int | None:
    """The errno of a write failure the user must fix outside the program (WRITE_REASONS: full disk,
    quota, read-only, permissions) found in `e` or its causes — an OSError's errno, or the
    `os_error_code` in the message of orbax's ValueError; None when there is none."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in WRITE_REASONS:
            return e.errno
        m = _OS_ERROR_CODE.search(str(e)) if not isinstance(e, OSError) else None
        if m and int(m.group(1)) in WRITE_REASONS:
            return int(m.group(1))
        e = e.__cause__ or e.__context__
    return None


@contextlib.contextmanager
def writing(path: str | os.PathLike):
    """Turn a write failure of WRITE_REASONS inside the block into a WriteError naming `path`."""
    try:
        yield
    except WriteError:
        raise
    except Exception as e:
        code = write_errno(e)
        if code is None:
            raise
        raise WriteError(code, os.fspath(path)) from None


def write_all(fd: int, data) -> None:
    """os.write until every byte of `data` is written (a regular file may take fewer per call)."""
    view = memoryview(data).cast("B")
    while view:
        view = view[os.write(fd, view):]


class _FdRaw(io.RawIOBase):
    """A raw binary stream over an fd whose writes go through os.write (see the module doc)."""

    def __init__(self, fd: int):
        super().__init__()
        self.fd = fd

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def write(self, b) -> int:
        return os.write(self.fd, b)

    def seek(self, pos: int, whence: int = 0) -> int:
        return os.lseek(self.fd, pos, whence)

    def tell(self) -> int:
        return os.lseek(self.fd, 0, os.SEEK_CUR)


def temp_file(path: str, suffix: str = "") -> tuple[int, str]:
    """An open temporary file beside `path` (fd, name), mode set from the umask."""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        with writing(path):
            fd, tmp = tempfile.mkstemp(prefix=part_prefix(), suffix=suffix, dir=folder)
    except WriteError:
        raise
    except OSError as e:
        raise S5Error(f"{path}: cannot write here ({e.strerror})") from None
    os.fchmod(fd, file_mode())
    return fd, tmp


def temp_dir(parent: str) -> str:
    """A temporary folder in `parent`, mode set from the umask."""
    with writing(parent):
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


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike, suffix: str = ""):
    """A binary file object for `path`: written under a temporary name beside it and renamed into
    place when the block ends without an error; otherwise the temporary is removed (a write failure
    of WRITE_REASONS becomes a WriteError naming `path`). Seekable (zipfile, np.savez)."""
    path = os.fspath(path)
    fd, tmp = temp_file(path, suffix)
    f = io.BufferedWriter(_FdRaw(fd), buffer_size=1 << 20)
    try:
        with writing(path):
            yield f
            f.close()                    # flushes
            os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            f.close()                    # a full buffer fails again here: the temporary goes anyway
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    finally:
        os.close(fd)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    with atomic_writer(path) as f:
        f.write(data)


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


def append_text(path: str | os.PathLike, text: str) -> None:
    """Append `text` to a log file (created following the umask); a failed write is cut off again, so
    the file never ends in a partial line."""
    path = os.fspath(path)
    with writing(path):
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            size = os.fstat(fd).st_size
            try:
                write_all(fd, text.encode())
            except BaseException:
                os.ftruncate(fd, size)
                raise
        finally:
            os.close(fd)


def read_record(path: str | os.PathLike, what: str = "") -> dict | None:
    """The JSON object a command left in `path` (its run record or folder marker), None when there is
    none; a one-line S5Error naming the file when it cannot be read or holds no JSON object."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        return None
    label = f"unreadable {what}" if what else "unreadable"
    try:
        with open(path) as f:
            record = json.load(f)
    except (OSError, ValueError) as e:
        raise S5Error(f"{path}: {label} ({e})") from None
    if not isinstance(record, dict):
        raise S5Error(f"{path}: {label} (not a JSON object)")
    return record


def check_writable(path: str | os.PathLike) -> str:
    """Before any work: make sure files can be created in the output folder `path` (existing or still
    to be made) by creating and writing a probe file in it or its nearest existing parent; a one-line
    S5Error otherwise (a WriteError for WRITE_REASONS). Creates nothing that stays. Returns the
    absolute path."""
    path = os.path.abspath(os.fspath(path))
    probe_in = path
    while not os.path.lexists(probe_in):
        probe_in = os.path.dirname(probe_in)
    if probe_in == path and not os.path.isdir(path):
        raise S5Error(f"{path}: is a file, not an output folder")
    if not os.path.isdir(probe_in):
        raise S5Error(f"{path}: output folder is not writable ({probe_in} is a file, not a folder)")
    try:
        with writing(path):
            fd, tmp = tempfile.mkstemp(prefix=part_prefix() + "probe-", dir=probe_in)
            try:
                write_all(fd, b"s5jax")
            finally:
                os.close(fd)
                os.unlink(tmp)
    except WriteError:
        raise
    except OSError as e:
        raise S5Error(f"{path}: output folder is not writable ({e.strerror})") from None
    return path


def fix_tree_modes(root: str) -> None:
    """Set a freshly written folder tree (e.g. from orbax) to the umask modes."""
    dm, fm = dir_mode(), file_mode()
    for folder, dirs, files in os.walk(root):
        os.chmod(folder, dm)
        for f in files:
            p = os.path.join(folder, f)
            if not os.path.islink(p):
                os.chmod(p, fm)
