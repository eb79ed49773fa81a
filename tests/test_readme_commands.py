"""The README's commands, pasted into a fresh clone, work as written and leave the committed results alone.

Why: the quick-start block is what a newcomer runs first. It once wrote a smoke run into `./results`
(erasing the committed quick rows, tables and figures) and failed on a clone without the Makefile's
data rule. This test parses the commands out of README.md (so the README and the test cannot drift),
builds a fresh clone of the working tree's tracked files (beside a `shared/data` link, the project's
layout, so the CLI's own data rule is what finds the data), runs each command there — cheap ones for
real, the costly `--method all` runs as `--dry-run` — and checks every exit code and that `git status`
of the clone is clean afterwards: no README command changes the committed `results/`.
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REAL_ZIP_NAME, real_data_path

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
GIT = shutil.which("git")

pytestmark = [pytest.mark.slow, pytest.mark.realdata]


def quick_start_commands(text: str) -> list[str]:
    """The bash block after "After `make install`", one command per line, comments removed."""
    start = text.index("After `make install`")
    block = re.search(r"```bash\n(.*?)```", text[start:], re.S)
    assert block, "README: no ```bash block after 'After `make install`'"
    cmds = [ln.split(" #")[0].strip() for ln in block.group(1).splitlines()]
    return [c for c in cmds if c and not c.startswith("#")]


def make_examples(text: str) -> list[str]:
    """`make run ARGS="..."` examples in the README's prose."""
    return sorted(set(re.findall(r'`(make run ARGS="[^"`]+")`', text)))


def costly(cmd: str) -> bool:
    """A full grid (`--method all` without `--dry-run`) runs for minutes: the test plans it instead."""
    return " run " in f" {cmd} " and "--method all" in cmd and "--dry-run" not in cmd


def fresh_clone(tmp: Path) -> Path:
    """The working tree's tracked files (as `git clone` would give them, untracked and ignored files
    absent: no results/cells) in `tmp/repo`, committed, with the project's `.venv` linked in and
    `tmp/shared/data` linked to the data, as ../shared/data is beside the real checkout."""
    repo = tmp / "repo"
    repo.mkdir()
    files = subprocess.run([GIT, "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout.split(b"\0")
    for name in filter(None, files):
        src = REPO / os.fsdecode(name)
        if src.is_file():  # a tracked file another edit deleted is not in a clone either
            dst = repo / os.fsdecode(name)
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
    (repo / ".venv").symlink_to(Path(sys.prefix))
    (tmp / "shared").mkdir()
    (tmp / "shared" / "data").symlink_to(real_data_path().resolve())
    git = [GIT, "-c", "user.name=t", "-c", "user.email=t@example.org"]
    subprocess.run([*git, "init", "-q"], cwd=repo, check=True)
    subprocess.run([*git, "add", "-A"], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "clone"], cwd=repo, check=True)
    return repo


def status(repo: Path) -> str:
    return subprocess.run([GIT, "status", "--porcelain"], cwd=repo, capture_output=True, text=True,
                          check=True).stdout


def test_readme_parsing_finds_the_quick_start():
    text = README.read_text()
    cmds = quick_start_commands(text)
    assert any("--profile smoke" in c and "tiny-imagenet" in c for c in cmds)
    assert any(c.endswith("report --results-dir results") for c in cmds)
    assert make_examples(text)


@pytest.mark.skipif(GIT is None, reason="needs git")
def test_every_quick_start_command_works_in_a_fresh_clone_and_leaves_results_alone(tmp_path):
    if not (real_data_path() / REAL_ZIP_NAME).is_file():
        pytest.skip(f"real data not found: {real_data_path() / REAL_ZIP_NAME}")
    text = README.read_text()
    repo = fresh_clone(tmp_path)
    env = {k: v for k, v in os.environ.items() if k not in ("BENCH_DATA_DIR", "PYTHONPATH")}
    assert status(repo) == ""
    ran = []
    for cmd in quick_start_commands(text) + make_examples(text):
        argv = shlex.split(cmd)
        if argv[0] == "make" and shutil.which("make") is None:
            continue
        if argv[0] == "make":  # the venv is there already: do not let make reinstall it (-o: treat as fresh)
            argv = ["make", "-s", "-o", ".venv/.installed", *argv[1:]]
            argv = [a + " --dry-run" if a.startswith("ARGS=") else a for a in argv]
        elif costly(cmd):
            argv.append("--dry-run")
        proc = subprocess.run(argv, cwd=repo, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, f"{cmd}\n{proc.stderr[-2000:]}"
        assert "Traceback" not in proc.stderr, cmd
        assert status(repo) == "", f"`{cmd}` changed the clone:\n{status(repo)}"
        ran.append(cmd)
    assert len(ran) >= 7 - (shutil.which("make") is None)
    # the smoke run wrote its own folder, not the committed results
    assert (repo / "runs" / "tiny-imagenet_smoke" / "runs.csv").is_file()
