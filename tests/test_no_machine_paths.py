"""The committed results and docs name no path of the machine they were made on: a reader's clone has
no `/work/...` or `/home/...`, so such a path is noise at best and a leak at worst. Commands are
recorded relative to the repository; scratch folders outside it are written `<scratch>/...`."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: An absolute POSIX path under a machine-specific root, or a Windows drive path.
MACHINE_PATH = re.compile(r"(?:^|[\s`'\"(=:,\[])(/(?:work|home|tmp|Users|root|mnt|scratch|private|var/folders)/[^\s`'\")]*"
                          r"|[A-Za-z]:\\\\[^\s`'\"]+)")


def tracked(*paths: str) -> list[Path]:
    out = subprocess.run(["git", "ls-files", "--", *paths], cwd=REPO, capture_output=True, text=True, check=True)
    return [REPO / name for name in out.stdout.split()]


def test_the_pattern_finds_machine_paths_and_spares_relative_ones():
    """The check itself: it must catch an absolute scratch path and leave repository-relative ones."""
    assert MACHINE_PATH.search("python -m bench run --results-dir /work/cand/run2")
    assert MACHINE_PATH.search('"command": "x --profile /home/me/p.toml"')
    assert not MACHINE_PATH.search("python -m bench run --results-dir results --profile bench/profiles/quick.toml")
    assert not MACHINE_PATH.search("see <scratch>/b_maml.md and ../shared/data")


def test_committed_results_and_readme_hold_no_machine_path():
    files = [p for p in tracked("results", "README.md", "docs") if p.is_file() and p.suffix in
             {".md", ".csv", ".json", ".jsonl", ".txt", ".toml"}]
    assert files, "no tracked results or README found"
    found = []
    for path in files:
        for lineno, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if m := MACHINE_PATH.search(line):
                found.append(f"{path.relative_to(REPO)}:{lineno}: {m.group(1)[:80]}")
    assert not found, "machine paths in committed files:\n" + "\n".join(found[:20])
