"""What a run costs: one module for the `--dry-run` estimate, the progress ETA and the cost reports.

- `model`: per-cell predicted seconds from recorded times of this machine class (the store's
  runs.csv, else the committed reference table `reference.json`), the artifact builds, and a
  list-scheduling simulation of the process pool (`bench.schedule`'s order) on N workers.
- `estimate`: the dry-run text and the live ETA of `bench run`.
- `macs`: the multiply-accumulate model, the fallback for a method with no recorded time.
"""
