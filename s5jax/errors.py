"""The one exception users see: a clear, one-line message that names the file and the problem."""
import errno
import os


class S5Error(Exception):
    """Bad input (audio, checkpoint, folder, argument). `str(e)` is a single line meant for users."""


class CheckpointError(S5Error):
    """A checkpoint that cannot be read, is of the wrong model, or whose keys/shapes do not match."""


class AudioError(S5Error):
    """An audio file with the wrong rate, channel count, non-finite samples, or not audio at all."""


class DataError(S5Error):
    """A training dataset folder that does not follow the official layout, or one of its files is bad."""


class ConfigError(S5Error):
    """A training config with unknown keys or values out of range."""


class WriteError(S5Error, OSError):
    """A file that cannot be written for a reason the user fixes outside the program: a full disk, a
    quota, a read-only file system, permissions. `str(e)` is "<reason> writing <path>"; it is also an
    OSError with `errno` set, so writers that treat a failed write as optional (caches) still catch it."""

    def __init__(self, code: int, path: str):
        super().__init__(code, os.strerror(code), path)
        self.message = f"{WRITE_REASONS.get(code, os.strerror(code).lower())} writing {path}"

    def __str__(self) -> str:
        return self.message


WRITE_REASONS = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded",
                 errno.EROFS: "read-only file system", errno.EACCES: "permission denied",
                 errno.EPERM: "operation not permitted", errno.EFBIG: "file too large"}
