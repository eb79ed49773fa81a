"""Methods from outside this package: installed entry points and `--plugin` files or modules.

Why: putting your method next to learngene should not need a fork. Two ways in, both ending in the
same registry as the built-ins (`methods.registry`):

- an installed package declares an entry point in the group `learngene_bench.methods`, e.g. in its
  pyproject.toml `[project.entry-points."learngene_bench.methods"] my-cosine = "my_method:CosineClassifier"`;
  it is found with `importlib.metadata` whenever the registry loads, in every worker process too;
- `--plugin path/to/my_method.py` or `--plugin package.module[:Class]` for code that is not installed.

An entry point's target, or a `--plugin` class, is a `Method` subclass: it is registered under the
entry point's name (or the class's `name` attribute), described by its `description` attribute or the
first line of its docstring. A module may instead register its classes itself with
`@methods.register(...)`. Each method remembers where it came from (`origin`), which `bench list
methods` prints. A plugin that fails to import, or takes a built-in's name, raises `PluginError`:
one line that says which plugin, what went wrong and how to fix it.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
import inspect
import re
import sys
from pathlib import Path
from types import ModuleType

from methods import registry
from methods.base import Method

ENTRY_POINT_GROUP = "learngene_bench.methods"
BUILTIN = "built-in"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")  # no commas or spaces: names go into --method a,b

_origins: dict[str, str] = {}  # method name -> where it came from, for names not built in
_loaded_specs: dict[str, list[str]] = {}  # --plugin spec (resolved) -> the names it registered


class PluginError(Exception):
    """A plugin that cannot be used; the message is one line for the command line (exit 2)."""


def origin(name: str) -> str:
    """'built-in', 'entry point <name> (<dist> <version>)' or '--plugin <path or module[:Class]>'."""
    return _origins.get(name, BUILTIN)


def fingerprint(name: str) -> dict[str, str] | None:
    """For a plugin method: where it came from and a hash of the file defining its class, so a cell's
    key changes when the plugin's code does (an edited plugin is rerun, not reported from old cells)."""
    if origin(name) == BUILTIN:
        return None
    cls = registry.entry(name).factory
    try:
        digest = hashlib.sha256(Path(inspect.getsourcefile(cls) or "").read_bytes()).hexdigest()[:16]
    except (OSError, TypeError):
        digest = "unknown"
    return {"origin": origin(name), "class": f"{cls.__module__}.{cls.__qualname__}", "source_sha256": digest}


def _describe(cls: type) -> str:
    text = getattr(cls, "description", "") or (inspect.getdoc(cls) or "").strip()
    return text.splitlines()[0] if text else cls.__name__


def _add(name: str, cls: object, where: str) -> None:
    """Register one plugin class under `name`, refusing built-in names and names taken by another plugin."""
    if not (isinstance(cls, type) and issubclass(cls, Method)):
        raise PluginError(f"{where}: '{name}' points to {cls!r}, which is not a subclass of "
                          "methods.Method; point it at your Method class")
    if not _NAME.match(name):
        raise PluginError(f"{where}: method name '{name}' must be letters, digits and _ . + - only")
    taken = registry.entry(name) if name in registry.names() else None
    if taken is not None and taken.factory is not cls:
        owner = origin(name)
        what = "the built-in method" if owner == BUILTIN else f"the method from {owner} named"
        raise PluginError(f"{where}: method name '{name}' collides with {what} '{name}'; "
                          "give your method another name")
    if taken is None:
        registry.register(name, _describe(cls))(cls)
    _origins[name] = where


def _import_guarded(where: str, load, fix: str):
    """Run an import; any failure becomes one PluginError line naming the plugin and the cause."""
    before = set(registry.names())
    try:
        obj = load()
    except PluginError:
        raise
    except Exception as exc:  # noqa: BLE001 - a plugin's import may fail in any way; report it in one line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise PluginError(f"{where} failed to import: {type(exc).__name__}: {first}; {fix}") from exc
    added = sorted(set(registry.names()) - before)  # names the module registered itself with @register
    for name in added:
        _origins[name] = where
    return obj, added


def load_entry_points() -> list[str]:
    """Register every installed `learngene_bench.methods` entry point; returns the names added."""
    added = []
    for ep in sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        dist = f"{ep.dist.name} {ep.dist.version}" if ep.dist is not None else ep.value
        where = f"entry point {ep.name} ({dist})"
        fix = f"fix it or uninstall it (pip uninstall {ep.dist.name})" if ep.dist is not None else "fix or uninstall it"
        obj, self_registered = _import_guarded(where, ep.load, fix)
        if isinstance(obj, ModuleType) and self_registered:  # a module that registers its methods itself
            added += self_registered
            continue
        if ep.name not in self_registered:
            _add(ep.name, obj, where)
        added.append(ep.name)
    return added


def _module_from_file(path: Path) -> ModuleType:
    name = "learngene_bench_plugin_" + re.sub(r"\W", "_", path.stem)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path} as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look classes up by module name
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def _split(spec: str) -> tuple[str, str, bool]:
    """(module path or file, class name or '', is it a file)."""
    target, _, cls_name = spec.partition(":")
    return target, cls_name, target.endswith(".py") or "/" in target or "\\" in target


def resolved_spec(spec: str) -> str:
    """The spec with a file path made absolute, so worker processes in other directories find it."""
    target, cls_name, is_file = _split(spec)
    if not is_file:
        return spec
    return str(Path(target).expanduser().resolve()) + (f":{cls_name}" if cls_name else "")


def load_plugin(spec: str) -> list[str]:
    """`path/to/file.py[:Class]` or `package.module[:Class]`: register its methods; returns their names.

    Without `:Class`, every Method subclass defined in the module with a `name` attribute is registered
    (plus whatever the module registers itself). Loading the same spec twice is a no-op.
    """
    target, cls_name, is_file = _split(spec)
    key = resolved_spec(spec)
    if key in _loaded_specs:
        return _loaded_specs[key]
    registry.names()  # built-ins (and entry points) first, so a clash is reported as the plugin's
    where = f"--plugin {spec}"
    if is_file and not Path(target).is_file():
        raise PluginError(f"{where}: no such file {target}; pass a path to a .py file or package.module[:Class]")
    module, names = _import_guarded(where, lambda: _module_from_file(Path(target)) if is_file
                                    else importlib.import_module(target), "fix it or drop the --plugin flag")
    if cls_name:
        cls = getattr(module, cls_name, None)
        if cls is None:
            raise PluginError(f"{where}: {target} has no attribute '{cls_name}'")
        found = [(getattr(cls, "name", "") or cls_name.lower(), cls)]
    else:
        found = [(obj.name, obj) for obj in vars(module).values()
                 if isinstance(obj, type) and issubclass(obj, Method) and obj.__module__ == module.__name__
                 and getattr(obj, "name", "") and not inspect.isabstract(obj)]
    for name, cls in found:
        if name not in names:
            _add(name, cls, where)
            names.append(name)
    if not names:
        raise PluginError(f"{where}: no methods found; define a methods.Method subclass with a `name` attribute "
                          "(or name one with path.py:Class)")
    _loaded_specs[key] = names
    return names
