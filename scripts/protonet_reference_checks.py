"""Why does the suite's ProtoNet sit ~3 points below the independent Conv-4 reference? Three checks.

    python scripts/protonet_reference_checks.py --results-dir docs/evidence/reference_protonet_store

On the `reference-protonet` profile (Conv-4, 64 filters, 2200 5-way 10-shot 15-query Adam episodes),
with the meta-trained weights of that results directory, it scores 200 seeded novel episodes per
shot with 15 queries per class (the reference's protocol) three ways:
- `eval-BN`: the suite's evaluation (BN running statistics, re-estimated after meta-training);
- `transductive-BN`: BN statistics of each episode's support + query batch (what many reference
  implementations do by leaving the network in train mode);
- `no-flip`: meta-trained again (into a separate cache) without the random horizontal flip that the
  suite's meta-training applies, then `eval-BN`.
The flip switch is not a profile setting (it would re-key every episodic method's weights), so this
diagnostic replaces `methods.episodic.meta_train_tasks` for its own process; nothing else changes.
"""
from __future__ import annotations

import argparse
import copy
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import methods.episodic as episodic  # noqa: E402
from bench.cell_env import Env, RunSpec  # noqa: E402
from bench.profiles import load_profile, resolve  # noqa: E402
from bench.stats import mean_ci95  # noqa: E402
from methods.protonet import prototype_logits  # noqa: E402
from tasks.augment import to_float  # noqa: E402
from tasks.episodes import sample_episodes  # noqa: E402


def score(env: Env, encoder: torch.nn.Module, shots: int, tasks: int, transductive: bool) -> np.ndarray:
    eps = sample_episodes(env.data, env.split.ids(env.data, "novel"), 5, shots, 15, tasks, 0)
    out = []
    for e in eps:
        xs, xq = to_float(env.data.images[e.support]), to_float(env.data.images[e.query])
        with torch.no_grad():
            if transductive:
                z = copy.deepcopy(encoder).train()(torch.cat([xs, xq]))
                zs, zq = z[:len(xs)], z[len(xs):]
            else:
                encoder.eval()
                zs, zq = encoder(xs), encoder(xq)
        out.append((prototype_logits(zs, e.support_labels, zq, 5).argmax(1) == e.query_labels).float().mean().item())
    return np.array(out) * 100


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--results-dir", type=Path, required=True, help="a store of the reference-protonet profile")
    ap.add_argument("--tasks", type=int, default=200)
    ap.add_argument("--data-dir", default=os.environ.get("BENCH_DATA_DIR", "../shared/data"))
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    prof = resolve(load_profile("reference-protonet"), 32)

    def env_at(store: Path) -> Env:
        return Env(RunSpec(dataset="tiny-imagenet", data_dir=args.data_dir, image_size=32, profile=prof,
                           results_dir=str(store)))

    env = env_at(args.results_dir)
    enc = env.prepared("protonet", 0, None).encoder
    rows = {(k, s): score(env, enc, s, args.tasks, k == "transductive-BN")
            for k in ("eval-BN", "transductive-BN") for s in (10, 20)}
    original = episodic.meta_train_tasks
    episodic.meta_train_tasks = lambda *a, **kw: original(*a, **{**kw, "augment": False})
    with tempfile.TemporaryDirectory() as tmp:
        env2 = env_at(Path(tmp))
        enc2 = env2.prepared("protonet", 0, None).encoder
        rows.update({("no-flip", s): score(env2, enc2, s, args.tasks, False) for s in (10, 20)})
    lines = ["| check | 10-shot | 20-shot |", "|---|---|---|"]
    for k in ("eval-BN", "transductive-BN", "no-flip"):
        cells = [mean_ci95(rows[(k, s)])[:2] for s in (10, 20)]
        lines.append(f"| {k} | " + " | ".join(f"{m:.2f} ± {h:.2f}" for m, h in cells) + " |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
