"""The results store: one directory per cell, keyed by a hash of its full config (DomainBed style).

`cells/<experiment>/<hash>/cell.json` (config), `result.json` (tidy rows), and `done`, written
last and atomically. A rerun skips done cells; a run killed mid-cell loses only that cell, whose
half-written files are overwritten next time. Only the driver writes here (executors return rows).
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.errors import UsageError
from methods.artifacts import config_hash


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


class ResultsStore:
    def __init__(self, root: Path | str):
        self.root = Path(root)

    def check_writable(self) -> None:
        """Fail early, before any work, when the results directory cannot be written."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            probe = self.root / f".write-probe-{os.getpid()}"
            probe.write_text("")
            probe.unlink()
        except OSError as exc:
            raise UsageError(f"results directory {self.root} is not writable ({exc.strerror}); "
                             "pass --results-dir to a folder you can write") from exc

    @property
    def cells_dir(self) -> Path:
        return self.root / "cells"

    @property
    def artifacts_dir(self) -> Path:
        return self.root / "artifacts"

    def cell_dir(self, config: dict[str, Any]) -> Path:
        return self.cells_dir / config["experiment"] / config_hash(config)

    def is_done(self, config: dict[str, Any]) -> bool:
        return (self.cell_dir(config) / "done").exists()

    def write(self, config: dict[str, Any], result: dict[str, Any]) -> None:
        d = self.cell_dir(config)
        d.mkdir(parents=True, exist_ok=True)
        (d / "done").unlink(missing_ok=True)
        _atomic_write(d / "cell.json", json.dumps(config, indent=1, sort_keys=True))
        _atomic_write(d / "result.json", json.dumps(result))
        _atomic_write(d / "done", "")

    def iter_done(self) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
        """(config, result) of every finished cell, in a stable order."""
        if not self.cells_dir.exists():
            return
        for done in sorted(self.cells_dir.glob("*/*/done")):
            d = done.parent
            try:
                yield json.loads((d / "cell.json").read_text()), json.loads((d / "result.json").read_text())
            except (OSError, json.JSONDecodeError):
                continue  # a cell whose files were damaged after `done`: it is not trusted
