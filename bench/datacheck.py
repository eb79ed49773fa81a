"""Before any work: does every class have the images the selected experiments' episodes need?

Why here and not only in `tasks.episodes.sample_episodes`: with your own folder
(`--dataset imagefolder`) the first question is which classes are too small and which settings
would fit, and only the command line knows the flags (`--shots`, `--queries`, `--experiment`).
One `UsageError` line names the short classes with their train/test counts and the flags that fit.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from bench.errors import UsageError
from tasks.imageset import TEST_POOL, TRAIN_POOL, ImageSet
from tasks.splits import ClassSplit

POOL_WORDS = {"novel": "novel", "open_world": "open-world", "base": "base"}


@dataclass(frozen=True)
class Need:
    """`shots` train and `queries` test images per class of `pool` (queries None = at least one)."""

    pool: str
    shots: int
    queries: int | None
    why: str  # what asks for it, e.g. "Table 3's 20-shot episodes"
    fix: str  # the flag or profile key that lowers it


def needs(profile: dict, experiments: Iterable[str], queries: int | None) -> list[Need]:
    """What each selected experiment's evaluation episodes take from a class."""
    ep = profile["episodes"]
    exp = profile.get("experiments", {})
    out: list[Need] = []
    experiments = set(experiments)
    if "table3" in experiments:
        out += [Need("novel", int(k), queries, f"Table 3's {int(k)}-shot episodes", "--shots") for k in ep["shots"]]
    if "table2" in experiments:
        k = int(ep.get("open_world_shots", 20))
        out.append(Need("open_world", k, queries, f"Table 2's {k}-shot episodes",
                        "the profile's episodes.open_world_shots (or leave out table2 with --experiment)"))
    if "fig4" in experiments:
        fig4 = exp.get("fig4", {})
        for k in ([fig4["shots"]] if fig4.get("shots") else []) + list(fig4.get("sample_sizes", [])):
            out.append(Need("novel", int(k), queries, f"Figure 4's {int(k)}-shot episodes",
                            "the profile's experiments.fig4 shots/sample_sizes (or leave out fig4 with --experiment)"))
    if "fig6" in experiments and exp.get("fig6", {}).get("shots"):
        k = int(exp["fig6"]["shots"])
        out.append(Need("novel", k, queries, f"Figure 6's {k}-shot episodes",
                        "the profile's experiments.fig6.shots (or leave out fig6 with --experiment)"))
    return out


def check_class_sizes(data: ImageSet, split: ClassSplit, reqs: list[Need], n_way: int, shown: int = 5) -> None:
    """Raise one UsageError line for the first unmet need: short classes, their counts, what fits."""
    train, test = data.counts(TRAIN_POOL), data.counts(TEST_POOL)
    for need in sorted(reqs, key=lambda r: (r.pool != "novel", -r.shots)):
        ids = split.ids(data, need.pool)
        q_min = need.queries if need.queries is not None else 1
        short = sorted((c for c in ids if int(train[c]) < need.shots or int(test[c]) < q_min),
                       key=lambda c: (int(train[c]) + int(test[c]), data.class_names[c]))
        if not short:
            continue
        pool = POOL_WORDS.get(need.pool, need.pool)
        listed = ", ".join(f"{data.class_names[c]} ({int(train[c])} train / {int(test[c])} test)"
                           for c in short[:shown])
        more = f" and {len(short) - shown} more" if len(short) > shown else ""
        fit_shots = min(int(train[c]) for c in ids)
        fit_q = min(int(test[c]) for c in ids)
        q_text = f"{need.queries} queries" if need.queries is not None else "all test images as queries"
        if need.fix == "--shots":
            fits = (f"--shots {fit_shots} --queries {fit_q}" if fit_shots > 0 and fit_q > 0
                    else "nothing (some classes have no train or no test images)")
        else:
            fits = f"{need.fix} at most {fit_shots}, with --queries {fit_q}"
        enough = sum(1 for c in range(data.num_classes) if int(train[c]) >= need.shots and int(test[c]) >= q_min)
        rest = (f", or keep them out of the {pool} classes with --split FILE ({enough} of the dataset's "
                f"{data.num_classes} classes are big enough; {n_way}-way needs {n_way})")
        raise UsageError(f"{need.shots} shots + {q_text} per class ({need.why}) need {need.shots} train + {q_min} "
                         f"test images in every {pool} class, but {len(short)} of {len(ids)} have fewer: "
                         f"{listed}{more}; lower them to what every {pool} class has: {fits}; or add images{rest}")
