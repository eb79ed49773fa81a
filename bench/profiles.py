"""Profiles: TOML files holding every knob a method or experiment reads (smoke, quick, paper).

The resolved profile (after command-line overrides) is stored with every cell, so every number
can be traced to its settings.
"""
from __future__ import annotations

import copy
import tomllib
from pathlib import Path
from typing import Any

from bench.errors import UsageError

PROFILE_DIR = Path(__file__).parent / "profiles"


def profile_names() -> list[str]:
    return sorted(p.stem for p in PROFILE_DIR.glob("*.toml"))


def load_profile(name_or_path: str) -> dict[str, Any]:
    """A profile by name (bench/profiles/<name>.toml) or by path to a TOML file."""
    path = Path(name_or_path)
    if not (path.suffix == ".toml" and path.exists()):
        path = PROFILE_DIR / f"{name_or_path}.toml"
    if not path.exists():
        raise UsageError(f"unknown profile '{name_or_path}'; choose one of: {', '.join(profile_names())} "
                         "(or pass a path to a .toml file)")
    try:
        prof = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"profile {path} is not valid TOML ({exc})") from exc
    prof.setdefault("name", path.stem)
    return prof


def resolve(profile: dict[str, Any], image_size: int | None = None, seeds: int | None = None,
            tasks: int | None = None, shots: list[int] | None = None,
            queries: int | str | None = None) -> dict[str, Any]:
    """Apply command-line overrides; returns a new dict (the one stored with results)."""
    prof = copy.deepcopy(profile)
    if image_size is not None:
        prof.setdefault("data", {})["image_size"] = image_size
    if seeds is not None:
        prof.setdefault("episodes", {})["seeds"] = seeds
    if tasks is not None:
        prof.setdefault("episodes", {})["tasks"] = tasks
    if shots is not None:
        prof.setdefault("episodes", {})["shots"] = list(shots)
    if queries is not None:
        prof.setdefault("episodes", {})["queries"] = queries
    return prof
