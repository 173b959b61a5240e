"""Every user-facing failure, in one hierarchy. CLIs turn these into one line and an exit status.

Exit statuses of every command: 0 verified / success, 1 not verified, 2 bad input or usage
(any `SiameseError`), 3 internal error (anything else: a bug, never the user's fault).
"""


class SiameseError(Exception):
    """Base class of every error a user can cause and fix (bad path, bad file, bad option)."""


class ConfigError(SiameseError):
    """An option or a setting is out of range, not a number, or contradicts another."""


class ImageError(SiameseError):
    """An image file or frame is missing, unreadable, too large or not an image."""


class DatasetError(SiameseError):
    """A dataset tree or one of its protocol files is missing or malformed."""


class ModelError(SiameseError):
    """A model file is missing, unreadable, or its metadata is absent or disagrees with it."""


class SourceError(SiameseError):
    """A camera, stream or video cannot be opened, or stopped delivering frames."""


class ReferenceError(SiameseError):
    """A reference (image, folder or template) cannot be used."""


class IntegrityError(ReferenceError):
    """A template or cached embedding failed its authentication check (edited or foreign)."""


class StorageError(SiameseError):
    """A file cannot be written where it was asked to go (permissions, space, not a folder)."""


class MissingExtraError(SiameseError):
    """A command needs an optional dependency group that is not installed."""
