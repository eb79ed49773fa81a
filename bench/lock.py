"""One run at a time per results directory: an OS file lock (`flock`) on `<results>/.lock`.

Why flock and not a pid file: the kernel releases the lock when the holding process dies (kill -9,
OOM, power cut of a node), so there is no stale lock to clean up by hand. The pid and command written
into the file are only there to tell a second run who holds it.
"""
from __future__ import annotations

import fcntl
import os
import sys
import time
from pathlib import Path

from bench.errors import UsageError

LOCK_NAME = ".lock"


class ResultsLock:
    """An exclusive lock on a results directory, held until `release()` or process exit."""

    def __init__(self, root: Path | str):
        self.root = Path(root)
        self.path = self.root / LOCK_NAME
        self._fh = None

    def _holder(self) -> str:
        try:
            text = self.path.read_text().strip()
        except OSError:
            text = ""
        return text or "another process"

    def acquire(self, wait: bool = False, purpose: str = "run") -> ResultsLock:
        """Take the lock, or raise a one-line UsageError naming the holder (wait=True: block until free)."""
        try:
            fh = open(self.path, "a+")  # kept open for as long as the lock is held
        except OSError as exc:
            raise UsageError(f"results directory {self.root} is not writable ({exc.strerror}); "
                             "pass --results-dir to a folder you can write") from exc
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not wait:
                holder = self._holder()
                fh.close()
                raise UsageError(f"results directory {self.root} is in use by {holder}; wait for it to finish, "
                                 "pass --wait to queue behind it, or use another --results-dir") from None
            print(f"note: results directory {self.root} is in use by {self._holder()}; waiting for it to finish",
                  file=sys.stderr)
            fcntl.flock(fh, fcntl.LOCK_EX)
        except BaseException:
            fh.close()
            raise
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} ({purpose}, since {time.strftime('%Y-%m-%d %H:%M:%S')})\n")
        fh.flush()
        self._fh = fh
        return self

    def release(self) -> None:
        if self._fh is not None:
            fcntl.flock(self._fh, fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None

    def __enter__(self) -> ResultsLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()
