"""Exceptions a user can cause. The CLI prints their message without a traceback and exits non-zero.

Every message names the file / row / field at fault and says what to do about it.
"""


class RadsearchError(ValueError):
    """Base class for errors caused by user input (bad path, bad table, bad parameter)."""


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
