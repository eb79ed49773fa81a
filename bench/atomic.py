"""Crash-safe file writes: write a temporary file beside the target, fsync it, rename it over the
target, fsync the directory.

Why: a reader (a resumed run, `report`, a reviewer's `git diff`) must see either the old file or the
new one, never a torn one, even after a power loss; `os.replace` alone is atomic against crashes of
this process but not against the page cache being lost, hence the fsyncs.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path


def _fsync_dir(d: Path) -> None:
    """Make the rename itself durable (a no-op where directories cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path | str, data: bytes) -> Path:
    """Replace `path` with `data` atomically and durably; the temporary file never outlives a failure."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(path.parent)
    return path


def atomic_write_text(path: Path | str, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))
