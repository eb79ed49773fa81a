"""`python -m bench.benchmarks_report [JSON] [MD]`: pytest-benchmark JSON -> docs/evidence/benchmarks.md.

Why a separate report: pytest-benchmark's own table is for a terminal and is lost with the log; a
short markdown file committed beside the tables says what was timed, on which machine and commit,
and how each benchmark compares with the first one of its group (benchmark modules put their
baseline first, e.g. `serial` in the executors group). Scalar `extra_info` (ratios, start-up times,
memory) is listed with each row, because the interesting number is often there, not in the timing.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

DEFAULT_JSON = Path("results") / "benchmarks.json"
DEFAULT_OUT = Path("results") / "benchmarks.md"
SKIP_EXTRA = {"machine_state"}


def fmt_time(seconds: float) -> str:
    """Seconds in the unit that keeps 3 significant digits readable."""
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def _fmt_value(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _extra(info: dict[str, Any]) -> str:
    items = [f"{k}={_fmt_value(v)}" for k, v in info.items()
             if k not in SKIP_EXTRA and isinstance(v, int | float | str | bool) and len(str(v)) <= 40]
    return ", ".join(items)


def _machine(data: dict[str, Any]) -> str:
    m = data.get("machine_info", {})
    cpu = m.get("cpu", {}) or {}
    c = data.get("commit_info", {}) or {}
    bits = [f"{cpu.get('brand_raw') or m.get('processor') or 'unknown CPU'} ({cpu.get('count', '?')} logical CPUs)",
            f"Python {m.get('python_version', '?')}", f"{m.get('system', '')} {m.get('release', '')}".strip()]
    commit = (c.get("id") or "")[:10]
    if commit:
        bits.append(f"commit {commit}{' (dirty)' if c.get('dirty') else ''}")
    if data.get("datetime"):
        bits.append(str(data["datetime"])[:19].replace("T", " ") + " UTC")
    return "; ".join(bits)


def fraction_of_peak(benchmarks: list[dict[str, Any]]) -> list[str]:
    """Achieved GFLOP/s of every benchmark that counted its FLOPs, as a fraction of the matrix-multiply
    peak measured in the same run (fp32, and bf16 where that peak was measured too)."""
    peaks = {b["extra_info"]["peak"]: b["extra_info"]["flops"] / b["stats"]["mean"]
             for b in benchmarks if "peak" in b.get("extra_info", {})}
    rows = [b for b in benchmarks if "flops" in b.get("extra_info", {}) and "peak" not in b["extra_info"]]
    if "fp32" not in peaks or not rows:
        return []
    bf16 = f"{peaks['bf16'] / 1e9:.0f} GFLOP/s" if "bf16" in peaks else "not measured"
    out = ["## Fraction of the machine's peak", "",
           f"Peak = a {{n}}² matrix product measured in this run: fp32 {peaks['fp32'] / 1e9:.0f} GFLOP/s, "
           f"bf16 {bf16}. FLOPs of each loop are counted once (`torch.utils.flop_counter`: convolutions "
           "and matrix products, forward and backward); GFLOP/s = FLOPs / mean time.", "",
           "| loop | FLOPs per call | mean time | GFLOP/s | % of fp32 peak |", "|---|---:|---:|---:|---:|"]
    for b in rows:
        info, mean = b["extra_info"], b["stats"]["mean"]
        rate = info["flops"] / mean
        out.append(f"| {info.get('loop', b['name'])} | {info['flops'] / 1e6:.1f} M | {fmt_time(mean)} | "
                   f"{rate / 1e9:.1f} | {100 * rate / peaks['fp32']:.1f} % |")
    gemm = next((b["extra_info"]["loop"].split()[1] for b in benchmarks if "peak" in b.get("extra_info", {})), "")
    out[2] = out[2].replace("{n}²", gemm or "large")
    return out + [""]


def compute_switches(benchmarks: list[dict[str, Any]]) -> list[str]:
    """Speed-up of each `[compute]` switch over fp32 per loop, and its accuracy effect: the paired
    difference over the same episodes, mean ± 95 % Student-t CI (percentage points)."""
    from bench.stats import mean_ci95

    rows = [b for b in benchmarks if "policy" in b.get("extra_info", {})]
    fp32 = {b["extra_info"]["loop"]: b for b in rows if b["extra_info"]["policy"] == "fp32"}
    if not rows or not fp32:
        return []
    info0 = rows[0]["extra_info"]
    out = ["## Compute switches per loop", "",
           f"`[compute]` switches, each loop run through its method as a cell runs it (base training, then "
           f"{len(info0.get('episode_acc', []))} fixed 5-way 10-shot episodes of {info0.get('data')}, every test "
           f"image a query). CPU bf16 support: {info0.get('cpu_bf16')}. Δ accuracy is paired with fp32 over the "
           "same episodes: mean ± half-width of the 95 % Student-t CI, in points; a switch is safe to ship where "
           "that CI contains 0.", "",
           "| loop | switch | time | speed-up vs fp32 | accuracy % | Δ accuracy vs fp32 |", "|---|---|---:|---:|---:|---:|"]
    for b in rows:
        info = b["extra_info"]
        base = fp32.get(info["loop"])
        if base is None:
            continue
        speed = base["stats"]["mean"] / b["stats"]["mean"]
        acc = info.get("episode_acc", [])
        diffs = [100 * (a - c) for a, c in zip(acc, base["extra_info"].get("episode_acc", []), strict=False)]
        m, h, n = mean_ci95(diffs)
        delta = "—" if info["policy"] == "fp32" else (f"{m:+.2f} ± {h:.2f}" if n > 1 else "n/a")
        out.append(f"| {info['loop']} | {info['policy']} | {fmt_time(b['stats']['mean'])} | {speed:.2f}x | "
                   f"{100 * info.get('accuracy', float('nan')):.2f} | {delta} |")
    return out + [""]


def full_runs(records: list[dict[str, Any]]) -> list[str]:
    """Whole `bench run` invocations (their `meta/runs.jsonl` records): wall time, CPU seconds per
    wall second (2.0 = both cores of a 2-core machine busy throughout) and peak memory."""
    if not records:
        return []
    out = ["## Full runs", "",
           "Records of whole `python -m bench run` invocations (`meta/runs.jsonl`), passed with `--runs`. "
           "CPU / wall counts the driver and its process-executor workers; – = not recorded by that commit.", "",
           "| commit | command | cells | wall | CPU s / wall s | peak RSS driver / worker |", "|---|---|---:|---:|---:|---|"]
    for r in records:
        out.append(f"| {r.get('commit', '?')} | `{r.get('command', '')}` | {r.get('cells_run', '?')} | "
                   f"{r.get('wall_s', '?')} s | {r.get('cpu_per_wall', '–')} | "
                   f"{r.get('peak_rss_mib_driver', '–')} / {r.get('peak_rss_mib_worker', '–')} MiB |")
    return out + [""]


def render(data: dict[str, Any], runs: list[dict[str, Any]] | None = None) -> str:
    """The markdown for one pytest-benchmark JSON document."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for b in data.get("benchmarks", []):
        groups.setdefault(b.get("group") or "(no group)", []).append(b)
    out = ["# Benchmarks", "",
           "Generated by `python -m bench.benchmarks_report` from pytest-benchmark JSON (`tox -e bench`). "
           "Timings on a shared CPU machine are noisy; compare ratios within a group, not across runs.", "",
           f"Machine: {_machine(data)}.", ""]
    if not groups:
        out.append("No benchmarks in the JSON (were they run with `--benchmark-enable`?).")
    out += fraction_of_peak(data.get("benchmarks", []))
    out += compute_switches(data.get("benchmarks", []))
    out += full_runs(runs or [])
    for group, rows in groups.items():
        base = rows[0]
        base_mean = base["stats"]["mean"]
        out += [f"## {group}", "",
                f"| benchmark | mean | min | max | rounds | vs {base['name']} | notes |",
                "|---|---:|---:|---:|---:|---:|---|"]
        for b in rows:
            s = b["stats"]
            ratio = s["mean"] / base_mean if base_mean else float("nan")
            out.append(f"| {b['name']} | {fmt_time(s['mean'])} | {fmt_time(s['min'])} | {fmt_time(s['max'])} "
                       f"| {s['rounds']} | {ratio:.2f}x | {_extra(b.get('extra_info', {}))} |")
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.benchmarks_report", description=__doc__.splitlines()[0])
    p.add_argument("json", nargs="?", type=Path, default=DEFAULT_JSON, help=f"default: {DEFAULT_JSON}")
    p.add_argument("md", nargs="?", type=Path, default=None, help=f"the markdown to write (default: {DEFAULT_OUT})")
    p.add_argument("--out", type=Path, default=None, help="the same as MD")
    p.add_argument("--runs", type=Path, action="append", default=[],
                   help="a meta/runs.jsonl whose records to list as full runs (repeatable)")
    args = p.parse_args(argv)
    args.out = args.out or args.md or DEFAULT_OUT
    try:
        data = json.loads(args.json.read_text())
    except FileNotFoundError:
        print(f"error: {args.json} does not exist; run the benchmarks first (tox -e bench)", file=sys.stderr)
        return 2
    except json.JSONDecodeError as exc:
        print(f"error: {args.json} is not pytest-benchmark JSON ({exc})", file=sys.stderr)
        return 2
    try:
        runs = [json.loads(ln) for f in args.runs for ln in f.read_text().splitlines() if ln.strip()]
    except (OSError, json.JSONDecodeError) as exc:
        print(f"error: --runs: {exc}; pass a meta/runs.jsonl written by `python -m bench run`", file=sys.stderr)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(render(data, runs) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
