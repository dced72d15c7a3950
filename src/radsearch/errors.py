"""Exceptions a user can cause. The CLI prints their message without a traceback and exits non-zero.

Every message names the file / row / field at fault and says what to do about it.
"""


class RadsearchError(ValueError):
    """Base class for errors caused by user input (bad path, bad table, bad parameter).

    A DataLoader worker's error comes back re-created as ``type(message)`` with the message
    replaced by "Caught X in DataLoader worker process N. Original Traceback …"; the original
    one-line message (naming the file) is its last line, and is what this error keeps.
    """

    def __init__(self, message: object = "", *args: object) -> None:
        if isinstance(message, str) and message.startswith("Caught ") \
                and "Original Traceback" in message:
            last = message.rstrip().splitlines()[-1]
            message = last.split(": ", 1)[1] if ": " in last else last
        super().__init__(message, *args)


class ManifestError(RadsearchError):
    """A cohort manifest is missing, unreadable or violates the schema."""


class ImageReadError(RadsearchError):
    """An image file is missing, empty, truncated or not an image."""


class ConfigError(RadsearchError):
    """A parameter or configuration value is out of range or unknown."""


class DataError(RadsearchError):
    """Data are unusable for the requested operation (no positive pairs, empty split, NaN rows...)."""


class OutputError(RadsearchError):
    """An output cannot be written: the folder is full, read-only, missing or not a folder."""
