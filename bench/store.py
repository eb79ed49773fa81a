"""The results store: one directory per cell, keyed by a hash of its full config (DomainBed style).

`cells/<experiment>/<hash>/cell.json` (config), `result.json` (tidy rows), and `done`, written
last. Every file is written to a temporary file, fsynced and renamed (bench/atomic.py). `done`
holds the sha256 of `cell.json` and `result.json`, so a cell whose files were damaged after it
finished (a truncated copy, a bad disk, a hand edit) is recognised: a run computes it again with a
warning and `report` refuses to build tables without it. A rerun skips done cells; a run killed
mid-cell loses only that cell. Only the driver writes here (executors return rows), and only while
it holds the results directory's lock (bench/lock.py).
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bench.atomic import atomic_write_text
from bench.errors import UsageError
from methods.artifacts import config_hash

CHECKED_FILES = ("cell.json", "result.json")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class ResultsStore:
    def __init__(self, root: Path | str):
        self.root = Path(root)

    def check_writable(self) -> None:
        """Create the results directory (the first write of a run) or fail in one line.

        No probe file: taking the results lock (bench/lock.py) right after opens `.lock` for writing,
        which is the probe, and a run refused by the lock then leaves the directory untouched."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            if not os.access(self.root, os.W_OK | os.X_OK):
                raise PermissionError(13, "Permission denied")
        except OSError as exc:
            raise UsageError(f"results directory {self.root} is not writable ({exc.strerror}); "
                             "pass --results-dir to a folder you can write") from exc

    @property
    def cells_dir(self) -> Path:
        return self.root / "cells"

    def cell_dir(self, config: dict[str, Any]) -> Path:
        return self.cells_dir / config["experiment"] / config_hash(config)

    @staticmethod
    def damage(d: Path) -> str | None:
        """Why a cell directory with a `done` marker cannot be trusted, or None when it can.

        A `done` written before checksums existed (empty) is trusted when both files parse."""
        try:
            marker = (d / "done").read_text()
        except OSError as exc:
            return f"done marker unreadable ({exc.strerror})"
        try:
            blobs = {name: (d / name).read_bytes() for name in CHECKED_FILES}
        except OSError as exc:
            return f"{Path(exc.filename).name} is missing or unreadable" if exc.filename else "a file is unreadable"
        if not marker.strip():  # legacy marker: no checksums to compare, so parse instead
            for name, blob in blobs.items():
                try:
                    json.loads(blob)
                except (json.JSONDecodeError, UnicodeDecodeError):
                    return f"{name} is not valid JSON"
            return None
        try:
            sums = json.loads(marker)["sha256"]
        except (json.JSONDecodeError, KeyError, TypeError):
            return "done marker is damaged"
        for name, blob in blobs.items():
            if sums.get(name) != _sha256(blob):
                return f"{name} does not match the checksum in its done marker"
        return None

    def has_marker(self, config: dict[str, Any]) -> bool:
        return (self.cell_dir(config) / "done").exists()

    def is_done(self, config: dict[str, Any]) -> bool:
        """Finished and intact: a damaged cell is not done, so a run computes it again."""
        d = self.cell_dir(config)
        return (d / "done").exists() and self.damage(d) is None

    def write(self, config: dict[str, Any], result: dict[str, Any], written: float | None = None) -> None:
        """Store a finished cell; `written` (default now) orders cells that supersede each other."""
        d = self.cell_dir(config)
        d.mkdir(parents=True, exist_ok=True)
        (d / "done").unlink(missing_ok=True)
        texts = {"cell.json": json.dumps(config, indent=1, sort_keys=True), "result.json": json.dumps(result)}
        for name, text in texts.items():
            atomic_write_text(d / name, text)
        sums = {name: _sha256(text.encode("utf-8")) for name, text in texts.items()}
        marker = {"sha256": sums, "written": time.time() if written is None else written}
        atomic_write_text(d / "done", json.dumps(marker, sort_keys=True) + "\n")

    def _marked(self) -> list[Path]:
        return sorted(p.parent for p in self.cells_dir.glob("*/*/done")) if self.cells_dir.exists() else []

    def damaged(self) -> list[tuple[Path, str]]:
        """(cell directory, reason) of every cell marked done whose files do not check out."""
        out = []
        for d in self._marked():
            why = self.damage(d)
            if why is not None:
                out.append((d, why))
        return out

    def written_at(self, d: Path) -> float:
        """When a finished cell was written: its marker's time, else (older markers) the marker file's mtime."""
        try:
            return float(json.loads((d / "done").read_text())["written"])
        except (OSError, ValueError, KeyError, TypeError):
            return (d / "done").stat().st_mtime

    def _intact(self) -> Iterator[tuple[Path, dict[str, Any]]]:
        """(directory, config) of every finished, intact cell, in a stable order (see `damaged()`)."""
        for d in self._marked():
            if self.damage(d) is None:
                yield d, json.loads((d / "cell.json").read_text())

    def intact(self) -> list[tuple[Path, dict[str, Any]]]:
        """(directory, config) of every finished, intact cell, superseded ones included."""
        return list(self._intact())

    def iter_current(self) -> tuple[list[tuple[dict[str, Any], dict[str, Any]]], int]:
        """The finished cells a report should use, and how many were left out: of cells that hold the same
        experiment, method, data, profile name and params (seed, shots, ...) under different settings (a
        profile value changed between runs into one results directory), only the most recently written."""
        latest: dict[str, tuple[float, Path, dict[str, Any]]] = {}
        total = 0
        for d, config in self._intact():
            total += 1
            ident = json.dumps([config.get(k) for k in ("experiment", "method", "dataset", "image_size", "params")]
                               + [config.get("profile", {}).get("name")], sort_keys=True, default=str)
            t = self.written_at(d)
            if ident not in latest or t > latest[ident][0]:
                latest[ident] = (t, d, config)
        kept = [(c, json.loads((d / "result.json").read_text())) for _, d, c in sorted(latest.values(), key=lambda v: v[1])]
        return kept, total - len(kept)

    def iter_done(self) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
        """(config, result) of every finished, intact cell, in a stable order (see `damaged()`)."""
        for d, config in self._intact():
            yield config, json.loads((d / "result.json").read_text())

    @staticmethod
    def _rekeyed(config: dict[str, Any], key_profile: Callable[[dict[str, Any]], dict[str, Any]]) -> dict[str, Any]:
        """A stored config under the current cell key (`bench.cell_env.key_profile` of its profile)."""
        return {**config, "profile": key_profile(config.get("profile", {}))}

    def done_dirs_after_rekey(self, key_profile: Callable[[dict[str, Any]], dict[str, Any]]) -> set[Path]:
        """The directories of every intact finished cell as `rekey` would leave them, without moving
        anything: `--dry-run` counts cells stored under an older key as done, as the run will."""
        return {self.cell_dir(self._rekeyed(config, key_profile)) for _, config in self._intact()}

    def rekey(self, key_profile: Callable[[dict[str, Any]], dict[str, Any]]) -> int:
        """Re-store cells written under an older cell key (their stored profile still holds a field the
        key now leaves out, see `bench.cell_env.key_profile`) under the current key; returns how many
        moved. Results are unchanged: only fields that do not change a cell's numbers leave its config."""
        moved = 0
        for d, config in list(self._intact()):
            new = self._rekeyed(config, key_profile)
            if self.cell_dir(new) == d:
                continue
            if not self.is_done(new):
                self.write(new, json.loads((d / "result.json").read_text()), written=self.written_at(d))
            for f in ("done", "cell.json", "result.json"):
                (d / f).unlink()
            d.rmdir()
            moved += 1
        return moved
