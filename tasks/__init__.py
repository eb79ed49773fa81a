"""Data and task construction: image sets, class splits, few-shot episodes, continual streams.

Nothing here knows about models; `methods/` and `bench/` build on it.
"""
from tasks.errors import DataError
from tasks.imageset import ImageSet

__all__ = ["DataError", "ImageSet"]
