"""User-facing failures. CLIs turn these into a one-line message and a non-zero exit."""


class SiameseError(Exception):
    """Base class of every error a user can cause and fix (bad path, bad file, bad option)."""


class ImageError(SiameseError):
    """An image file is missing, unreadable or not an image."""


class DatasetError(SiameseError):
    """A dataset tree or one of its protocol files is missing or malformed."""


class ModelError(SiameseError):
    """A model file is missing, unreadable or lacks the metadata the runtime needs."""
