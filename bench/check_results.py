"""Check a results directory the way CI must: every table and figure present and well-formed.

`python -m bench.check_results DIR [--print]` exits 1 with one line per problem. A table must have
a caption saying what ± means and one numeric row per method; a figure must be a PNG of sensible
size that is not blank.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

EXPECTED_TABLES = ("table2", "table3")
EXPECTED_FIGURES = ("forest", "fig3_rho", "fig4ab_curves", "fig4cd_samples", "fig6a_checkpoint", "fig6b_position")


def check_table(path: Path) -> list[str]:
    text = path.read_text()
    problems = []
    if "±" not in text or "confidence interval" not in text:
        problems.append(f"{path}: caption does not say what ± means")
    rows = [ln for ln in text.splitlines() if ln.startswith("| ") and not ln.startswith("| Method")
            and not ln.startswith("| Metric")]
    if not rows:
        problems.append(f"{path}: no data rows")
    for ln in rows:
        if "nan" in ln.lower().replace("n/a", ""):
            problems.append(f"{path}: a row contains NaN: {ln[:80]}")
        if not re.search(r"\d+\.\d+", ln):
            problems.append(f"{path}: a row has no number: {ln[:80]}")
    return problems


def check_figure(path: Path) -> list[str]:
    from PIL import Image, ImageStat

    try:
        with Image.open(path) as im:
            im.load()
            w, h = im.size
            spread = max(ImageStat.Stat(im.convert("L")).stddev)
    except Exception as exc:  # any decoding problem is a broken figure
        return [f"{path}: not a readable PNG ({exc})"]
    problems = []
    if w < 300 or h < 200:
        problems.append(f"{path}: too small ({w}x{h})")
    if spread < 5:
        problems.append(f"{path}: blank image")
    return problems


def check(results_dir: Path, expect_tables=EXPECTED_TABLES, expect_figures=EXPECTED_FIGURES) -> list[str]:
    problems = []
    for name in expect_tables:
        p = results_dir / "tables" / f"{name}.md"
        problems += check_table(p) if p.exists() else [f"{p}: missing"]
    figs = results_dir / "figures"
    for stem in expect_figures:
        found = sorted(figs.glob(f"{stem}_*.png")) if figs.exists() else []
        if not found:
            problems.append(f"{figs}/{stem}_*.png: missing")
        for f in found:
            problems += check_figure(f)
    for extra in ("runs.csv", "README.md"):
        if not (results_dir / extra).exists():
            problems.append(f"{results_dir / extra}: missing")
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("results_dir", type=Path)
    ap.add_argument("--print", action="store_true", help="print every table at the end")
    args = ap.parse_args(argv)
    problems = check(args.results_dir)
    if args.print:
        for t in sorted((args.results_dir / "tables").glob("*.md")):
            print(f"\n===== {t} =====\n{t.read_text()}")
    for p in problems:
        print(f"results check: {p}", file=sys.stderr)
    if problems:
        return 1
    n_fig = len(list((args.results_dir / "figures").glob("*.png")))
    print(f"results check: OK ({len(EXPECTED_TABLES)} tables, {n_fig} figures well-formed)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
