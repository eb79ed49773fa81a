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

import dataclasses
import hashlib
import importlib
import importlib.metadata
import importlib.util
import inspect
import numbers
import re
import sys
from pathlib import Path
from types import ModuleType

from methods import registry
from methods.base import EpisodeResult, Method

ENTRY_POINT_GROUP = "learngene_bench.methods"
BUILTIN = "built-in"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")  # no commas or spaces: names go into --method a,b

_origins: dict[str, str] = {}  # method name -> where it came from, for names not built in
_loaded_specs: dict[str, list[str]] = {}  # --plugin spec (resolved) -> the names it registered


class PluginError(Exception):
    """A plugin that cannot be used; the message is one line for the command line (exit 2).
    `method` names the plugin method when the error arose while it ran (bench names the cell)."""

    def __init__(self, message: str, method: str | None = None):
        super().__init__(message)
        self.method = method

    def __reduce__(self):  # keeps `method` across process-pool and Ray workers
        return (type(self), (str(self), self.method))


def origin(name: str) -> str:
    """'built-in', 'entry point <name> (<dist> <version>)' or '--plugin <path or module[:Class]>'."""
    return _origins.get(name, BUILTIN)


def fingerprint(name: str) -> dict[str, str] | None:
    """For a plugin method: where it came from and a hash of the file defining its class, so a cell's
    key changes when the plugin's code does (an edited plugin is rerun, not reported from old cells)."""
    if origin(name) == BUILTIN:
        return None
    cls = plugin_class(registry.entry(name).factory)
    try:
        digest = hashlib.sha256(Path(inspect.getsourcefile(cls) or "").read_bytes()).hexdigest()[:16]
    except (OSError, TypeError):
        digest = "unknown"
    return {"origin": origin(name), "class": f"{cls.__module__}.{cls.__qualname__}", "source_sha256": digest}


def plugin_class(factory: object) -> object:
    """The user's class behind a registered plugin (the registry holds its contract-checking subclass)."""
    return getattr(factory, "_plugin_class", factory)


def _describe(cls: type) -> str:
    """The class's own `description`, else the first line of its own docstring (never one inherited
    from `Method`), else its class name."""
    text = ""
    for klass in cls.__mro__:
        if klass is Method or klass is object:
            break
        text = klass.__dict__.get("description") or (klass.__dict__.get("__doc__") or "").strip()
        if text:
            break
    return text.splitlines()[0].strip() if text else f"{cls.__name__} (no description: set `description`)"


def _missing(cls: type) -> list[str]:
    """The abstract methods of the `Method` interface a plugin class leaves unimplemented."""
    return sorted(getattr(cls, "__abstractmethods__", ()) or ())


def _refuse_abstract(where: str, name: str, cls: type) -> None:
    if missing := _missing(cls):
        raise PluginError(f"{where}: {cls.__name__} ('{name}') does not implement {', '.join(missing)} of "
                          "methods.Method; define " + " and ".join(f"{m}()" for m in missing) + " in the class")


def check_result(name: str, where: str, result: object, episode: object = None) -> EpisodeResult:
    """The plugin contract on what `run_episode` returns: an EpisodeResult whose accuracy is a real
    number in [0, 1] (the fraction of queries right, not a percent), and a curve of such numbers."""
    at = ""
    if episode is not None:
        at = (f" (episode {getattr(episode, 'index', '?')} of seed {getattr(episode, 'seed', '?')}, "
              f"{getattr(episode, 'k_shot', '?')}-shot)")
    head = f"plugin method '{name}' ({where}): run_episode{at}"
    if not isinstance(result, EpisodeResult):
        raise PluginError(f"{head} returned {type(result).__name__} {result!r:.40}, not an EpisodeResult; "
                          "return methods.EpisodeResult(accuracy=...)", name)
    values = [("accuracy", result.accuracy)] + [(f"curve[{i}]", v) for i, v in enumerate(result.curve or [])]
    for field_name, v in values:
        if isinstance(v, bool) or not isinstance(v, numbers.Real):
            raise PluginError(f"{head} returned {field_name} of type {type(v).__name__}; it must be a float in "
                              "[0, 1] (use float(...) on a tensor)", name)
        if not 0.0 <= float(v) <= 1.0:  # NaN fails this too
            raise PluginError(f"{head} returned {field_name} {v!r}, outside [0, 1]; return the fraction of "
                              "queries classified correctly (e.g. 0.96), not a percent", name)
    return result


def _raised(name: str, where: str, call: str, exc: BaseException) -> PluginError:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return PluginError(f"plugin method '{name}' ({where}) raised in {call}: {type(exc).__name__}"
                       f"{': ' + first if first else ''}", name)


def _checked(name: str, cls: type, where: str) -> type:
    """A subclass of the plugin's class that checks the contract where bench calls it: an exception in
    `prepare` or `run_episode(s)` becomes one PluginError line naming the plugin (the traceback stays
    chained for --debug), and every EpisodeResult is checked by `check_result`."""

    def prepare(self, source, settings, cache):
        try:
            return cls.prepare(self, source, settings, cache)
        except PluginError:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure of user code ends in one line
            raise _raised(name, where, "prepare", exc) from exc

    def run_episode(self, episode):
        try:
            result = cls.run_episode(self, episode)
        except PluginError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise _raised(name, where, "run_episode", exc) from exc
        return check_result(name, where, result, episode)

    def run_episodes(self, episodes):
        try:
            results = cls.run_episodes(self, episodes)
        except PluginError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise _raised(name, where, "run_episodes", exc) from exc
        if not isinstance(results, list) or len(results) != len(episodes):
            raise PluginError(f"plugin method '{name}' ({where}): run_episodes must return a list of one "
                              f"EpisodeResult per episode ({len(episodes)})", name)
        return [check_result(name, where, r, e) for r, e in zip(results, episodes, strict=True)]

    body = {"prepare": prepare, "run_episode": run_episode, "run_episodes": run_episodes, "_plugin_class": cls,
            "__module__": cls.__module__, "__qualname__": cls.__qualname__, "__doc__": cls.__doc__}
    return type(cls.__name__, (cls,), body)


def _wrap_registered(name: str, where: str) -> None:
    """Put the contract check around a method a plugin module registered itself (@methods.register)."""
    e = registry._REGISTRY[name]
    cls = e.factory
    if isinstance(cls, type) and issubclass(cls, Method) and not hasattr(cls, "_plugin_class"):
        _refuse_abstract(where, name, cls)
        registry._REGISTRY[name] = dataclasses.replace(e, factory=_checked(name, cls, where))


def _add(name: str, cls: object, where: str) -> None:
    """Register one plugin class under `name`, refusing built-in names and names taken by another plugin."""
    if not (isinstance(cls, type) and issubclass(cls, Method)):
        raise PluginError(f"{where}: '{name}' points to {cls!r}, which is not a subclass of "
                          "methods.Method; point it at your Method class")
    if not _NAME.match(name):
        raise PluginError(f"{where}: method name '{name}' must be letters, digits and _ . + - only")
    _refuse_abstract(where, name, cls)
    taken = registry.entry(name) if name in registry.names() else None
    if taken is not None and plugin_class(taken.factory) is not cls:
        owner = origin(name)
        what = "the built-in method" if owner == BUILTIN else f"the method from {owner} named"
        raise PluginError(f"{where}: method name '{name}' collides with {what} '{name}'; "
                          "give your method another name")
    if taken is None:
        registry.register(name, _describe(cls))(_checked(name, cls, where))
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
        _wrap_registered(name, where)
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
        candidates = [obj for obj in vars(module).values()
                      if isinstance(obj, type) and issubclass(obj, Method) and obj.__module__ == module.__name__]
        found = [(obj.name, obj) for obj in candidates if getattr(obj, "name", "") and not inspect.isabstract(obj)]
        if not found and not names:  # say why the subclasses there do not count
            for obj in candidates:
                _refuse_abstract(where, getattr(obj, "name", "") or obj.__name__, obj)
            if candidates:
                raise PluginError(f"{where}: {', '.join(c.__name__ for c in candidates)} has no `name` attribute; "
                                  f"set name = \"my-method\" in the class, or pass {target}:{candidates[0].__name__}")
    for name, cls in found:
        if name not in names:
            _add(name, cls, where)
            names.append(name)
    if not names:
        raise PluginError(f"{where}: no methods found; define a methods.Method subclass with a `name` attribute "
                          "(or name one with path.py:Class)")
    _loaded_specs[key] = names
    return names


registry.add_loader(load_entry_points)  # the registry scans entry points after its built-ins, without importing us
