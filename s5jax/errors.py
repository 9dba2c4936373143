"""The one exception users see: a clear, one-line message that names the file and the problem."""


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
