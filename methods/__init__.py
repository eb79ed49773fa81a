"""Methods behind one interface: learngene, learning from scratch and the few-shot baselines.

A method is a `Method` subclass registered by name with the frozen dataclass of its settings
(`methods.registry.register`, `methods.settings`). Importing this package's registry functions loads
every method module.

Example::

    import methods

    methods.names()                                  # what is there
    m = methods.get("protonet", device="cpu")
    m.prepare(source, methods.settings_for("protonet", profile), cache)
    result = m.run_episode(episode)
"""
from methods import plugins as _plugins  # noqa: F401 - registers its entry-point scan with the registry
from methods.base import EpisodeData, EpisodeResult, Method, SourceData
from methods.registry import describe, get, names, names_in_all, names_not_in_all, register, settings_for

__all__ = ["EpisodeData", "EpisodeResult", "Method", "SourceData", "describe", "get", "names", "names_in_all", "names_not_in_all", "register",
           "settings_for"]
