"""Name -> method class and settings, like timm's model registry: `names()` answers "what is there".

A variant is the same class registered under another name with some settings fields overridden
(`@register("fomaml", ..., settings=MAMLSettings, first_order=True)`), so a variant is plain data and
every knob stays in one dataclass.

Example::

    import methods

    methods.names()                                # ['scratch', 'learngene', ..., 'deepemd']
    m = methods.get("protonet", device="cpu")
    settings = methods.settings_for("protonet", profile)   # ProtoNetSettings from a profile dict
    m.prepare(source, settings, cache)
    result = m.run_episode(episode)
"""
from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

# Modules whose import registers methods. New method modules are added here once; methods from other
# packages come in through entry points or --plugin (methods/plugins.py), no edit here needed.
METHOD_MODULES = (
    "methods.scratch",
    "methods.learngene.method",
    "methods.learngene.probe",
    "methods.learngene.recipe_checks",
    "methods.learngene.study",
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
    settings: type | None = None


_REGISTRY: dict[str, Entry] = {}
_loaded = False


def register(name: str, description: str, family: str | None = None, settings: type | None = None,
             **options: Any) -> Callable:
    """Class decorator that makes a `Method` available by name. Stackable: one class, several variants.

    Args:
        name: what users pass to `--method` and `methods.get`.
        description: one line for `python -m bench list methods`.
        family: the profile section `[methods.<family>]` the settings are read from (default: `name`).
        settings: the frozen dataclass of the family's settings (see `methods.settings`); a method
            without one receives its merged profile section as a plain dict.
        **options: field overrides that make this variant (checked against `settings` here, at import).

    Example::

        @register("protonet", "Prototypical Networks", settings=ProtoNetSettings)
        @register("protonet-fast", "ProtoNet, 100 episodes", family="protonet", settings=ProtoNetSettings,
                  meta_iterations=100)
        class ProtoNet(Method): ...
    """
    if settings is not None:
        from methods.settings import check_value

        options = {k: check_value(settings, f"register('{name}')", k, v) for k, v in options.items()}

    def deco(cls: Callable) -> Callable:
        if name in _REGISTRY and _REGISTRY[name].factory is not cls:
            raise ValueError(f"method name '{name}' registered twice")
        _REGISTRY[name] = Entry(name, description, cls, dict(options), family or name, settings)
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
    try:
        for load in _EXTRA_LOADERS:  # after the built-ins, so a plugin cannot take a built-in's name
            load()
    except Exception:
        _loaded = False  # the next call reports the same broken plugin instead of silently skipping it
        raise


#: Called once the built-ins are registered: `methods.plugins` adds its entry-point scan here when it is
#: imported (by `methods/__init__.py`), so this module never imports `methods.plugins` (no import cycle:
#: plugins -> registry only).
_EXTRA_LOADERS: list[Callable[[], object]] = []


def add_loader(load: Callable[[], object]) -> None:
    """Run `load()` after the built-in method modules are imported (once per process, again after a failure)."""
    if load not in _EXTRA_LOADERS:
        _EXTRA_LOADERS.append(load)


def names() -> list[str]:
    _load_all()
    return list(_REGISTRY)


def names_in_all() -> list[str]:
    """What `--method all` runs: every method whose facts keep `in_all` (the checks, such as the learngene
    recipe checks and the released code's behaviour, run only when named: `make checks`)."""
    return [n for n in names() if facts(n).in_all]


def names_not_in_all() -> list[str]:
    """What `--method checks` (`make checks`) runs: the checks `--method all` leaves out (not the study's
    rows, role `study`, which run by name or through their own experiment)."""
    return [n for n in names() if not facts(n).in_all and "study" not in facts(n).roles]


def describe() -> dict[str, str]:
    _load_all()
    return {n: e.description for n, e in _REGISTRY.items()}


def entry(name: str) -> Entry:
    _load_all()
    if name not in _REGISTRY:
        raise UnknownMethodError(f"unknown method '{name}'; valid methods: {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


def get(name: str, device: torch.device | str = "cpu"):
    """A fresh, unprepared instance of the named method on `device`."""
    e = entry(name)
    obj = e.factory(device=torch.device(device))
    obj.name = name
    return obj


def settings_for(name: str, profile: Mapping[str, Any], *, given: Mapping[str, Any] | None = None,
                 options: Mapping[str, Any] | None = None) -> Any:
    """The named method's settings from a profile dict: its family's sections, a variant's own section
    (`[methods.protomaml]` over `[methods.maml]`), what the experiment passes (`given`), the variant's
    registered overrides, then a cell's `options` (see `methods.settings.for_family`)."""
    from methods.settings import for_family

    e = entry(name)
    own = profile.get("methods", {}).get(name, {}) if name != e.family else {}
    if e.settings is None:  # a method without a settings class reads its sections itself
        merged = {**profile.get("individual", {}), **profile.get("methods", {}).get(e.family, {}), **own}
        return {**merged, **e.options, **(options or {})}
    return for_family(e.settings, e.family, profile, given=given, variant=e.options, options=options,
                      own=(f"methods.{name}", own))


def families() -> dict[str, type | None]:
    """Profile section name (`[methods.<family>]`) -> the settings class its methods read."""
    _load_all()
    return {e.family: e.settings for e in _REGISTRY.values()}


def facts(name: str):
    """What `bench/` needs to know about the named method (`methods.base.MethodFacts`): whether it needs
    the ancestor, its minimum image size, its experiments, its report roles and order, its budget knob.
    A registered class that is not a `Method` subclass gets the defaults."""
    from methods.base import MethodFacts

    e = entry(name)
    get_facts = getattr(e.factory, "facts", None)
    return get_facts(name) if callable(get_facts) else MethodFacts()
