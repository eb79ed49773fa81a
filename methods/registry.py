"""Name -> method constructor, like timm's model registry. Variants are the same class with options."""
from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

# Modules whose import registers methods. New method modules are added here once; methods from other
# packages come in through entry points or --plugin (methods/plugins.py), no edit here needed.
METHOD_MODULES = (
    "methods.scratch",
    "methods.learngene.method",
    "methods.maml",
    "methods.protonet",
    "methods.matchingnet",
    "methods.finetune",
    "methods.deepemd",
)


class UnknownMethodError(KeyError):
    def __str__(self) -> str:  # KeyError quotes its message; this one is for people
        return str(self.args[0])


@dataclass(frozen=True)
class Entry:
    name: str
    description: str
    factory: Callable[..., Any]
    options: dict = field(default_factory=dict)
    family: str = ""


_REGISTRY: dict[str, Entry] = {}
_loaded = False


def register(name: str, description: str, family: str | None = None, **options: Any) -> Callable:
    """Class decorator: `@register("maml", "one-line description", first_order=False)`. Stackable for variants."""

    def deco(cls: Callable) -> Callable:
        if name in _REGISTRY and _REGISTRY[name].factory is not cls:
            raise ValueError(f"method name '{name}' registered twice")
        _REGISTRY[name] = Entry(name, description, cls, dict(options), family or name)
        return cls

    return deco


def _load_all() -> None:
    global _loaded
    if _loaded:
        return
    for mod in METHOD_MODULES:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as exc:
            # Only a method module that does not exist yet is skipped; a missing dependency is an error.
            if exc.name != mod:
                raise
    _loaded = True
    from methods import plugins  # after the built-ins, so a plugin cannot take a built-in's name

    try:
        plugins.load_entry_points()
    except plugins.PluginError:
        _loaded = False  # the next call reports the same broken plugin instead of silently skipping it
        raise


def names() -> list[str]:
    _load_all()
    return list(_REGISTRY)


def describe() -> dict[str, str]:
    _load_all()
    return {n: e.description for n, e in _REGISTRY.items()}


def entry(name: str) -> Entry:
    _load_all()
    if name not in _REGISTRY:
        raise UnknownMethodError(f"unknown method '{name}'; valid methods: {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


def get(name: str, device: torch.device | str = "cpu", **overrides: Any):
    """A fresh instance of the named method on `device`."""
    e = entry(name)
    obj = e.factory(device=torch.device(device), **{**e.options, **overrides})
    obj.name = name
    return obj
