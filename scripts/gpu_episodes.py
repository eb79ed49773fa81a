"""Episodes per second of the support-set trainers on a GPU, and whether stacking episodes would pay.

The quick profile's per-episode models are small (width 0.125, 32 px): on a GPU each SGD step is a
few dozen tiny kernels, so the GPU mostly waits for Python and kernel launches. This script measures
(1) episodes/s of every support-set trainer at the quick profile's settings (table cells: one final
evaluation) on `--device`, and (2) the upper bound of stacking E episodes into one network with
grouped convolutions: the time of one SGD step of E stacked individual trunks against E separate
steps. A stacked path is worth building only if (2) is >= 3x.

    python scripts/gpu_episodes.py --device cuda --out docs/evidence/gpu_episodes.md
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.cell_env import Env, RunSpec, run_episodes  # noqa: E402
from bench.profiles import load_profile  # noqa: E402
from methods.backbones import INDIVIDUAL_FRONT, INDIVIDUAL_GENE, IndividualNet, scaled  # noqa: E402

TRAINERS = ("scratch", "learngene", "finetune", "finetune++", "deepemd")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def episodes_per_second(env: Env, method: str, shots: int, n: int, curve: bool,
                        stack: bool | None = None) -> tuple[float, float]:
    """Episodes/s and mean accuracy; `stack` sets the method's stacked-episode switch (None = its
    default: stacked on CUDA for the methods that have the path)."""
    m = env.prepared(method, 0)  # base training outside the timing
    if hasattr(m, "stack_episodes"):
        m.stack_episodes = stack
    run_episodes(env, method, "novel", shots, 0, 2, curve=curve)  # warm-up (kernels, allocator)
    sync(env.device)
    t0 = time.perf_counter()
    rows = run_episodes(env, method, "novel", shots, 1, n, curve=curve)
    sync(env.device)
    wall = time.perf_counter() - t0
    accs = [r["value"] for r in rows if r["metric"] == "accuracy"]
    return n / wall, sum(accs) / len(accs)


class StackedTrunk(nn.Module):
    """E individual conv trunks as one network: grouped convolutions, per-group BatchNorm channels,
    one linear head per model (einsum). Same per-model arithmetic as E separate IndividualNets."""

    def __init__(self, e: int, width: float, n_classes: int = 5):
        super().__init__()
        widths = [scaled(c, width) for c in (*INDIVIDUAL_FRONT, *INDIVIDUAL_GENE)]
        layers, c_in = [], 3
        for i, c in enumerate(widths):
            layers += [nn.Conv2d(e * c_in, e * c, 3, padding=1, groups=e), nn.BatchNorm2d(e * c), nn.ReLU()]
            if i < 3 or i == len(widths) - 1:
                layers.append(nn.MaxPool2d(2))
            c_in = c
        self.trunk, self.e = nn.Sequential(*layers), e
        self.head = nn.Parameter(torch.randn(e, c_in * 4, n_classes) * 0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [B, E*3, H, W]
        z = self.trunk(x)
        b = z.shape[0]
        z = z.view(b, self.e, -1)
        return torch.einsum("bed,edo->beo", z, self.head)


def step_time(model: nn.Module, x: torch.Tensor, y: torch.Tensor, reps: int, device: torch.device) -> float:
    opt = torch.optim.SGD(model.parameters(), lr=0.005, momentum=0.9)

    def step() -> None:
        out = model(x)
        loss = F.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(3):
        step()
    sync(device)
    t0 = time.perf_counter()
    for _ in range(reps):
        step()
    sync(device)
    return (time.perf_counter() - t0) / reps


def stacking_gain(width: float, e: int, device: torch.device, batch: int = 25) -> dict[str, float]:
    single = IndividualNet(5, 32, width=width).to(device)
    x1, y1 = torch.randn(batch, 3, 32, 32, device=device), torch.randint(0, 5, (batch,), device=device)
    t1 = step_time(single, x1, y1, 50, device)
    stacked = StackedTrunk(e, width).to(device)
    xe, ye = torch.randn(batch, e * 3, 32, 32, device=device), torch.randint(0, 5, (batch, e), device=device)
    te = step_time(stacked, xe, ye, 50, device)
    return {"E": e, "one_step_ms": 1e3 * t1, "stacked_step_ms": 1e3 * te, "gain": e * t1 / te}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--episodes", type=int, default=20)
    ap.add_argument("--stacked-episodes", type=int, default=32, help="episodes per stacked/one-at-a-time timing")
    ap.add_argument("--methods", default=",".join(TRAINERS), help="trainers timed one at a time")
    ap.add_argument("--profile", default="quick")
    ap.add_argument("--out", type=Path, default=Path("docs/evidence/gpu_episodes.md"))
    args = ap.parse_args()
    device = torch.device(args.device)
    prof = copy.deepcopy(load_profile(args.profile))
    prof["data"]["synthetic"] = {"num_classes": 40, "train_per_class": 40, "test_per_class": 20}
    prof.pop("experiments", None)
    width = float(prof["individual"]["width"])
    name = torch.cuda.get_device_name(0) if device.type == "cuda" else "CPU"
    lines = ["# Support-set trainers on a GPU", "",
             f"`python scripts/gpu_episodes.py --device {args.device}` on {name} (torch {torch.__version__}); "
             f"quick profile (width {width}, 32 px, {prof['individual']['epochs']} epochs, "
             f"{prof['episodes']['queries']} queries per class), synthetic images (the data path is the same "
             f"uint8 tensor as for real data). Base training is excluded; {args.episodes} episodes each.", "",
             "| method | shots | episodes/s (table cell: final evaluation only) | episodes/s (curve: every epoch) |",
             "|---|---|---:|---:|"]
    result: dict = {"device": name, "torch": torch.__version__, "trainers": {}, "stacked": {}}
    with tempfile.TemporaryDirectory() as tmp:
        env = Env(RunSpec("synthetic", "", 32, prof, tmp, device=args.device))
        for m in (t for t in TRAINERS if t in args.methods.split(",")):
            for k in (10, 20):
                table, _ = episodes_per_second(env, m, k, args.episodes, curve=False, stack=False)
                curve, _ = episodes_per_second(env, m, k, args.episodes, curve=True, stack=False)
                result["trainers"][f"{m}/{k}"] = {"table": table, "curve": curve}
                lines.append(f"| {m} | {k} | {table:.2f} | {curve:.2f} |")
                print(lines[-1], flush=True)
        stacked_lines = ["", "The stacked-episode path (`methods/stacked.py`, on by default on CUDA for scratch and "
                         f"learngene; stacks of 16) against one episode at a time, {args.stacked_episodes} table-cell "
                         "episodes each (mean accuracy over the same episodes beside each):", "",
                         "| method | shots | one at a time: episodes/s (acc) | stacked: episodes/s (acc) | gain |",
                         "|---|---|---:|---:|---:|"]
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        for m in ("scratch", "learngene"):
            for k in (10, 20):
                one, acc1 = episodes_per_second(env, m, k, args.stacked_episodes, curve=False, stack=False)
                many, accs = episodes_per_second(env, m, k, args.stacked_episodes, curve=False, stack=None)
                result["stacked"][f"{m}/{k}"] = {"one": one, "stacked": many, "acc_one": acc1, "acc_stacked": accs}
                stacked_lines.append(f"| {m} | {k} | {one:.2f} ({100 * acc1:.1f}) | {many:.2f} ({100 * accs:.1f}) "
                                     f"| {many / one:.1f}x |")
                print(stacked_lines[-1], flush=True)
        if device.type == "cuda":
            peak = torch.cuda.max_memory_allocated() / 2**20
            result["peak_gpu_mib"] = peak
            stacked_lines.append(f"\nPeak GPU memory over these runs: {peak:.0f} MiB.")
    lines += stacked_lines
    gains = [stacking_gain(width, e, device) for e in (4, 16, 64)]
    result["stacking"] = gains
    lines += ["", "The bound that motivated the stacked path (a prototype of E stacked trunks, grouped "
              "convolutions; one SGD step, batch 25; per-episode gain = E x one step / one stacked step):", "",
              "| E | one episode's step | E stacked episodes' step | per-episode gain |", "|---:|---:|---:|---:|"]
    lines += [f"| {g['E']} | {g['one_step_ms']:.2f} ms | {g['stacked_step_ms']:.2f} ms | {g['gain']:.1f}x |"
              for g in gains]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=1))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
