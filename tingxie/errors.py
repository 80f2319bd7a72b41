"""The errors a user can cause; each carries a message fit to print without a traceback."""


class TingxieError(Exception):
    """Base of every error caused by input rather than by a bug."""


class AudioDecodeError(TingxieError):
    """The input could not be decoded as audio (unreadable, empty, not audio at all)."""


class CheckpointError(TingxieError):
    """A checkpoint is missing, truncated, of an unknown format or fails its checksum."""


class ModelNotFoundError(CheckpointError):
    """A model name or path that resolves to nothing, with a hint on how to get it."""


class DownloadError(CheckpointError):
    """A download failed (server down, truncated transfer, wrong checksum)."""


class UnknownLanguageError(TingxieError, ValueError):
    """A language code or name Whisper does not know."""


class OptionError(TingxieError, ValueError):
    """An option value out of range or inconsistent with the model."""
