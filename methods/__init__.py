"""Methods behind one interface: learngene, learning from scratch and the few-shot baselines.

Importing this package registers every method (see `methods.registry`).
"""
from methods.base import EpisodeData, EpisodeResult, Method, SourceData
from methods.registry import describe, get, names, register

__all__ = ["EpisodeData", "EpisodeResult", "Method", "SourceData", "describe", "get", "names", "register"]
