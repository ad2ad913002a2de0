"""Exceptions of the data package."""

__all__ = ["DatasetError"]


class DatasetError(ValueError):
    """Recording that cannot be turned into training data, with the reason and the fix."""
