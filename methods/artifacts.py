"""A content-addressed cache for trained state shared by many cells (collective models, meta-trained
weights, pre-trained backbones).

Why here and not in `bench/`: methods call it from `prepare`, and `methods/` never imports `bench/`.
Objects are stored with `torch.save` and loaded with `weights_only=True`, so an artifact must be
made of tensors, dicts, lists, strings and numbers. A file lock makes concurrent workers wait for
the one that builds an artifact instead of training it twice.
"""
from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch


def config_hash(config: Any) -> str:
    return hashlib.sha1(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


class ArtifactCache:
    """`get_or_build(kind, config, build)` returns the cached object for (kind, config) or builds it."""

    def __init__(self, root: Path | str):
        self.root = Path(root)
        self._memo: dict[str, Any] = {}
        self.built: list[str] = []  # keys built by this process (tests and reports read it)
        self.touched: list[str] = []  # keys asked for by this process, built, loaded or memoised (in order)

    def path(self, kind: str, config: Any) -> Path:
        """Where (kind, config) is stored; non-default compute switches (bf16, channels_last) are part
        of the key, since they change the trained weights."""
        from methods.training import compute

        policy = compute()
        if policy != type(policy)():
            config = {"config": config, "compute": dataclasses.asdict(policy)}
        return self.root / f"{kind}-{config_hash(config)}"

    def exists(self, kind: str, config: Any) -> bool:
        return (self.path(kind, config) / "artifact.pt").exists()

    def get_or_build(self, kind: str, config: Any, build: Callable[[], Any]) -> Any:
        d = self.path(kind, config)
        key = str(d)
        self.touched.append(key)
        if key in self._memo:
            return self._memo[key]
        d.mkdir(parents=True, exist_ok=True)
        with open(d / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                obj = self._load(d)
                if obj is None:
                    obj = build()
                    self._save(d, config, obj)
                    self.built.append(key)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
        self._memo[key] = obj
        return obj

    @staticmethod
    def _load(d: Path) -> Any:
        f = d / "artifact.pt"
        if not f.exists():
            return None
        try:
            return torch.load(f, weights_only=True, map_location="cpu")
        except Exception:  # truncated by a kill: rebuild
            f.unlink(missing_ok=True)
            return None

    @staticmethod
    def _save(d: Path, config: Any, obj: Any) -> None:
        (d / "config.json").write_text(json.dumps(config, indent=1, sort_keys=True, default=str))
        tmp = d / f"artifact.pt.tmp{os.getpid()}"
        torch.save(obj, tmp)
        os.replace(tmp, d / "artifact.pt")
