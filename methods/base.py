"""The `Method` interface every method implements, and the data it receives and returns."""
from __future__ import annotations

import abc
import time
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

import torch

from methods.settings import MIN_IMAGE_SIZE
from tasks.imageset import ImageSet
from tasks.splits import ClassSplit


@dataclass
class SourceData:
    """What `prepare` may learn from: the whole ImageSet, the class division, the seed.

    Methods train only on `base_ids` classes (and, where a protocol says so, `open_ids`);
    novel classes are never touched before `run_episode`.
    """

    data: ImageSet
    split: ClassSplit
    seed: int
    dataset: str = ""

    @property
    def base_ids(self) -> list[int]:
        return self.split.ids(self.data, "base")

    @property
    def open_ids(self) -> list[int]:
        return self.split.ids(self.data, "open_world")

    @property
    def novel_ids(self) -> list[int]:
        return self.split.ids(self.data, "novel")

    def fingerprint(self) -> dict:
        """What identifies the training data of an artifact (for cache keys)."""
        return {"dataset": self.dataset or self.data.name, "source": self.data.extra.get("checksum", self.data.source),
                "image_size": self.data.image_size, "n_images": int(self.data.images.shape[0]),
                "split": self.split.to_json(), "seed": self.seed}


@dataclass
class EpisodeData:
    """One few-shot task: uint8 images (class-major) with labels 0..N-1."""

    support_x: torch.Tensor
    support_y: torch.Tensor
    query_x: torch.Tensor
    query_y: torch.Tensor
    n_way: int
    k_shot: int
    seed: int
    index: int = 0
    record_curve: bool = True
    """Evaluate the query set after every epoch (the learning curves of Figures 4 and 6). False: only
    once at the end, which is all a table needs; the final accuracy is the same either way."""


@dataclass
class EpisodeResult:
    """Final accuracy in [0, 1]; `curve` is per-epoch query accuracy for methods that train on the support."""

    accuracy: float
    curve: list[float] | None = None
    wall_s: float = 0.0
    params: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


#: Roles a method may play in the report (`MethodFacts.roles`).
ROLES = frozenset({"headline", "opponent", "control", "floor", "recipe-check", "study"})


@dataclass(frozen=True)
class MethodFacts:
    """What `bench/` needs to know about one registered method, so it never tests a method's name.

    Declared as class attributes of the `Method` (defaults below), per registered variant overridden
    in the class's `variant_facts`; read with `methods.registry.facts(name)`."""

    needs_ancestor: bool = False
    """Reads the collective network (the ancestor a learngene is inherited from): the profile's
    `[collective]` section must be valid, its cost counts in the estimate, and Figure 3's rho rows run."""
    min_image_size: int = MIN_IMAGE_SIZE["individual"]
    """Smallest image side in px the method's networks can classify (the individual network: 16)."""
    experiments: frozenset[str] = frozenset({"table2", "table3"})
    """Which experiments (or experiment panels, `fig6:position`) the method is a row of. Default: the
    two comparison tables, so a plug-in method is compared with everything without declaring more."""
    runs_with: frozenset[str] = frozenset()
    """An analysis variant runs in its experiments when it is selected or any of these methods is
    (Figure 6b's positions run with `learngene`); such variants come after the others, in registry order."""
    roles: frozenset[str] = frozenset()
    """Parts in the report (`ROLES`): `headline` (the method the summary compares the others with; its
    name labels the collective run's rows), `opponent` (a headline comparison), `control` (same network,
    nothing inherited), `floor` (random features: every method should beat it), `recipe-check`, `study`
    (a row of issue 22's study: neither a paper row nor a check, so neither `--method all` nor `checks`)."""
    report_order: int | None = None
    """Row position in the tables and in figure legends (smaller first); None: after the ordered ones,
    by name."""
    label: str = ""
    """How figures name the method when its name is not what a reader needs (Figure 6b's positions)."""
    compared_with: str = ""
    """A method the results summary reports this one against, paired (a probe against its random twin)."""
    paper_name: str = ""
    """The paper's row its numbers stand beside, when not its own name (the open-world variant: learngene)."""
    budget_knob: tuple[str, ...] = ()
    """Profile path (sections, then key) of the base-training budget `python -m bench.budget` doubles."""
    in_all: bool = True
    """Run by `--method all` (`make run`). False for checks rather than the paper's rows (the recipe
    checks, the released code's behaviour): they run only when named (`make checks`)."""

    def __post_init__(self) -> None:
        unknown = set(self.roles) - ROLES
        if unknown:
            raise ValueError(f"unknown method role(s) {sorted(unknown)}; known: {sorted(ROLES)}")


FACT_NAMES = tuple(f.name for f in fields(MethodFacts))


class Method(abc.ABC):
    """A few-shot learner: trained once on base classes, then adapted to each episode.

    A method is registered by name with the frozen dataclass of its settings
    (`methods.registry.register`). The bench builds the settings once from the profile and passes them
    to `prepare`; `prepare` trains on `source`'s base classes (or loads the result from `cache`, keyed by
    the settings' fields), and `run_episode` adapts to one episode's support set and scores its queries.

    Args:
        device: where tensors and models live ("cpu", "cuda", a `torch.device`).

    Example::

        import methods

        m = methods.get("protonet", device="cpu")
        m.prepare(source, methods.settings_for("protonet", profile), cache)
        result = m.run_episode(episode)        # EpisodeResult(accuracy=..., curve=..., params=...)
    """

    name: str = ""
    #: True when run_episode trains on the support set and fills EpisodeResult.curve.
    records_curve: bool = False
    # Cost hooks (bench.cost.device times a method through them, never by its name):
    #: Modules the method imports to run (a cost extrapolation skips it, saying why, when one is missing).
    requires: tuple[str, ...] = ()
    #: The settings field of the epochs each episode trains on the support set (None: no training); the
    #: cost extrapolation times fewer epochs and extrapolates linearly.
    episode_epochs_field: str | None = None

    # Facts (see `MethodFacts` for what each means); a subclass sets the ones that differ.
    needs_ancestor: bool = MethodFacts.needs_ancestor
    min_image_size: int = MethodFacts.min_image_size
    experiments: frozenset[str] = MethodFacts.experiments
    runs_with: frozenset[str] = frozenset()
    roles: frozenset[str] = frozenset()
    report_order: int | None = None
    label: str = ""
    compared_with: str = ""
    paper_name: str = ""
    budget_knob: tuple[str, ...] = ()
    in_all: bool = MethodFacts.in_all
    #: Registered name -> the facts that differ for that variant (`{"fomaml": {"report_order": 20}}`).
    variant_facts: ClassVar[Mapping[str, Mapping[str, Any]]] = {}

    def __init__(self, device: torch.device | str = "cpu"):
        self.device = torch.device(device)

    @classmethod
    def artifact_group(cls, family: str, settings: Any) -> Hashable:
        """Which trained state `prepare` builds or loads, coarsely: cells of one group wait for one
        build. Executors start one cell per group before a second, so a worker does not sit on the
        artifact lock while another builds. Default: one group per method family."""
        return family

    @classmethod
    def cost_ratio(cls, settings: Any, reference: Any, image_size: int) -> tuple[float, float | None]:
        """(episodes, build) cost of `settings` over `reference` (a recorded method's settings, without
        a cell's options): what the cost model scales a time recorded at `reference` by; a build ratio
        of None = not comparable (the cell's artifact group is priced by its own record). Default: the
        individual network's training FLOPs when the width differs (for both: a base training on the
        method's backbone scales alike), else 1."""
        w, w0 = getattr(settings, "width", None), getattr(reference, "width", None)
        if w is None or w0 is None or w == w0:
            return 1.0, 1.0
        from methods.flops import individual_train_flops

        r = individual_train_flops(float(w), image_size) / individual_train_flops(float(w0), image_size)
        return r, r

    @classmethod
    def facts(cls, name: str) -> MethodFacts:
        """The facts of this class registered as `name`: class attributes, then `variant_facts[name]`."""
        values = {k: getattr(cls, k) for k in FACT_NAMES}
        values.update(cls.variant_facts.get(name, {}))
        for k in ("experiments", "runs_with", "roles"):
            values[k] = frozenset(values[k])
        values["budget_knob"] = tuple(values["budget_knob"])
        return MethodFacts(**values)

    @classmethod
    def base_training_passes(cls, section: Mapping[str, Any]) -> float:
        """Image passes (forward-equivalents, backward = 2 forwards) of the base training one profile
        section configures (`[methods.<name>]` with the variant's registered overrides), for the dry-run
        estimate; an order of magnitude only. Default: episodic meta-training when the section sets
        `meta_iterations`, plus pre-training on 64 base classes when it sets `pretrain_epochs`."""
        total = 0.0
        if "meta_iterations" in section:
            per_task = section.get("train_way", 5) * (section.get("train_shots", 5) + section.get("train_queries", 5))
            total += (section["meta_iterations"] * section.get("meta_batch", 1) * per_task * 3
                      * (1 + section.get("inner_steps_train", 0)))
        if "pretrain_epochs" in section:
            total += section["pretrain_epochs"] * 64 * section.get("pretrain_images_per_class", 500) * 3
        return total

    @classmethod
    def ancestor_passes(cls, profile: Mapping[str, Any]) -> float:
        """Image passes of building the ancestor (the collective model) from `profile`, for the dry-run
        estimate; 0 for a method that needs none. Methods sharing one ancestor count it once."""
        return 0.0

    @abc.abstractmethod
    def prepare(self, source: SourceData, settings: Any, cache: Any) -> None:
        """(Meta-)train on base classes once; load from `cache` when the same settings ran before."""

    @abc.abstractmethod
    def run_episode(self, episode: EpisodeData) -> EpisodeResult:
        """Adapt on the support set, evaluate on the query set; never mutate the prepared state."""

    def run_episodes(self, episodes: list[EpisodeData]) -> list[EpisodeResult]:
        """`run_episode` for each episode, in order; a method may override it to adapt several at once
        (scratch stacks episodes on CUDA, methods/stacked.py). Each result's `wall_s` is the wall time
        of its episode (of a stack: the stack's wall time divided by its size)."""
        out = []
        for e in episodes:
            t0 = time.perf_counter()
            res = self.run_episode(e)
            res.wall_s = time.perf_counter() - t0
            out.append(res)
        return out
