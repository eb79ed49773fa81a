"""Typed settings: one frozen dataclass per method family, one for the collective model, one for the
episode protocol.

Why: a raw profile dict let every method parse its own knobs, so a misspelt key was silently ignored
and a wrong type failed deep inside a cell. Here each knob is a field with its default and a one-line
docstring; `build` turns profile sections into a settings object and rejects unknown keys (with a
"did you mean"), wrong types and out-of-range values by raising `SettingsError(section, key, why)`.
`bench` adds the profile file's name and prints it as one line. A settings object is plain data:
`dataclasses.asdict` of it is what a cached artifact is keyed by and what is stored with a result.

Where a family's fields come from (later wins): the field defaults, the `[individual]` keys the
class has (scratch and learngene read the whole recipe, the baselines only `width`, `backbone` and
`crop_padding`), `[methods.<family>]` (DeepEMD first reads the `pretrain_*` keys of
`[methods.finetune]`, because it shares fine-tuning's pre-trained backbone), what an experiment
passes (e.g. MAML's `n_way`), the registered variant's overrides, then a cell's own options. Settings
nest (learngene's `collective`); an override or option may name a nested field by a dotted name
(`{"collective.width": 0.5}`), checked like any other key, and changes only that field.

A field added after results were stored is declared with `_added(...)`: `to_json` (what a cell's key
and a cached artifact's key are made of) leaves it out while it is at its default, so adding a knob
never changes, and never re-runs, a stored cell (tests/test_study_invariants.py holds the proof for
learngene's variants).

Why one module over 300 lines: it is declarations (two lines per field: the field and its docstring)
plus ~100 lines of checking; one place to read every knob of the suite is the point.
"""
from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

#: The smallest image size each backbone accepts (the individual trunk pools 3-4 times).
MIN_IMAGE_SIZE = {"individual": 16, "collective": 32, "conv4": 16}


class SettingsError(ValueError):
    """A profile value that does not fit its field: `section`, `key` and why, for a one-line message."""

    def __init__(self, section: str, key: str, why: str):
        super().__init__(f"[{section}] {key}: {why}")
        self.section, self.key, self.why = section, key, why


def _gt0(default: Any) -> Any:
    return field(default=default, metadata={"gt": 0})


def _ge0(default: Any) -> Any:
    return field(default=default, metadata={"ge": 0})


def _added(default: Any = dataclasses.MISSING, *, stored_when: Any = None, **kw: Any) -> Any:
    """A field added after results were stored: `to_json` leaves it out while it is at its default (or
    while `stored_when(settings)` is false), so the settings JSON of every earlier variant, and with it
    every stored cell's key, stays byte-identical (tests/test_study_invariants.py keeps the proof)."""
    when = stored_when if stored_when is not None else (lambda s, name: getattr(s, name) != default)
    return field(default=default, **kw, metadata={"stored_when": when})


# --------------------------------------------------------------------------- compute


@dataclass(frozen=True)
class ComputeSettings:
    """How every training loop and prediction computes (`[compute]`): speed switches whose accuracy
    effect `make bench` measures (docs/evidence/benchmarks.md). Off by default."""

    channels_last: bool = False
    """Convolutions in channels-last memory format (faster on CPUs with oneDNN and on GPUs)."""
    amp: Literal["none", "bf16"] = "none"
    """bf16 autocast for forward passes (AVX-512 BF16 / AMX CPUs, GPUs); "none" = fp32."""


# --------------------------------------------------------------------------- episodes


@dataclass(frozen=True)
class EpisodeSettings:
    """The evaluation protocol: `[episodes]`."""

    n_way: int = _gt0(5)
    """Classes per episode."""
    shots: tuple[int, ...] = (10, 20)
    """Support images per class of Table 3's columns."""
    open_world_shots: int = _gt0(20)
    """Support images per class of Table 2's open-world episodes."""
    queries: int | Literal["all"] = "all"
    """Query images per class; "all" = every test image of the class (the paper)."""
    tasks: int = _gt0(5)
    """Episodes per seed."""
    seeds: int = _gt0(1)
    """Seeds per cell (each seed: its own episodes and, with artifact_seed="cell", its own artifacts)."""
    artifact_seed: int | Literal["cell"] = "cell"
    """"cell" = (meta-)train once per seed; an int = one artifact shared by every seed."""

    def artifact_seed_for(self, seed: int) -> int:
        """The seed a cell's trained artifacts are built from (one place that reads `artifact_seed`)."""
        return seed if self.artifact_seed == "cell" else int(self.artifact_seed)

    def artifact_seeds(self) -> list[int]:
        """Seeds whose artifacts differ: every seed when artifacts are per cell, else the shared one."""
        return list(range(self.seeds)) if self.artifact_seed == "cell" else [int(self.artifact_seed)]

    def queries_per_class(self) -> int | None:
        """Queries per class, None meaning every test image of the class."""
        return None if self.queries == "all" else int(self.queries)


# --------------------------------------------------------------------------- shared trunks


@dataclass(frozen=True)
class BackboneSettings:
    """What every method shares with the individual model, so capacities match (`[individual]`)."""

    width: float = _gt0(0.25)
    """Channel multiplier of the backbone (same for every method in a profile)."""
    backbone: str = "individual"
    """Embedding trunk of the baselines: individual, conv4 or timm:<model>."""
    crop_padding: int = _ge0(0)
    """Pixels of random-crop padding in the shared train augmentation (0 = flips only)."""


@dataclass(frozen=True)
class IndividualSettings(BackboneSettings):
    """The support-set training recipe of scratch and learngene (`[individual]`), as in the paper."""

    epochs: int = _gt0(30)
    """Epochs of SGD on the support set."""
    lr: float = _gt0(0.005)
    """SGD learning rate."""
    momentum: float = _ge0(0.9)
    """SGD momentum."""
    weight_decay: float = _ge0(5e-4)
    """SGD weight decay."""
    batch_size: int = _gt0(32)
    """Support images per SGD step."""
    last_batch: Literal["keep", "balanced", "drop"] = "balanced"
    """Each epoch's batches: near-equal sizes (balanced), or the paper's short last batch (keep), or drop it."""


@dataclass(frozen=True)
class CollectiveSettings:
    """The collective model's continual training and open-world stage (`[collective]`)."""

    width: float = _gt0(1.0)
    """Channel multiplier of the 13-conv collective network."""
    tasks: int = _gt0(50)
    """Continual 5-class tasks (paper: 50)."""
    epochs: int = _gt0(100)
    """Epochs per task (paper: 100)."""
    batch_size: int = _gt0(64)
    """Images per SGD step."""
    lr: float = _gt0(0.001)
    """SGD learning rate (a new optimizer per task)."""
    momentum: float = _ge0(0.9)
    """SGD momentum."""
    weight_decay: float = _ge0(5e-4)
    """SGD weight decay."""
    crop_padding: int = _ge0(0)
    """Random-crop padding of the train augmentation."""
    images_per_class: int | None = None
    """Train images per class per task (None = all)."""
    test_per_class: int | None = None
    """Held-out test images per class per task (None = all)."""
    classes_per_task: int = _gt0(5)
    """Classes in each continual task."""
    head_classes: int | None = None
    """Outputs of the task-local head (None = the continual pool's size)."""
    widen_until: int = _ge0(20)
    """Net2Wider steps are spread over tasks 1..widen_until (paper: 20)."""
    learngene_task: int = _ge0(20)
    """Task after which the learngene is taken (paper: 20)."""
    checkpoints: tuple[int, ...] = ()
    """Tasks after which the network is kept (Figure 6a adds its own)."""
    sigma: float = _ge0(5e-4)
    """Gradient threshold of the judgement criterion rho."""
    rho_mode: Literal["signed", "abs"] = "signed"
    """Which rho Figure 3 reads first: g > sigma (official code) or |g| > sigma (paper Eq. 4)."""
    open_world_threshold: float | Literal["tune"] = "tune"
    """lambda_open of Eq. 3, or "tune" (Youden's J on held-out scores)."""
    open_world_min_flagged: int = _gt0(1)
    """Flagged stream images a class needs to count as recognised."""
    schedule: Literal["paper", "none", "uniform"] = "paper"
    """Net2Wider schedule: the paper's 20 steps (scaled by width) or none."""
    head: Literal["task_local", "class_incremental"] = "task_local"
    """Task-local labels 0..4 on a shared head (faithful) or one output per class."""
    faithful_softmax: bool = False
    """True = the official Softmax layer + CrossEntropy (double softmax)."""
    continual_pool: Literal["base", "base+open"] = "base"
    """Classes of the continual tasks: base (paper, CIFAR code) or base+open (ImageNet code)."""
    amp: Literal["none", "bf16"] = "none"
    """bf16 autocast for collective training."""
    uniform_width: int = _gt0(256)
    """Channels of every conv of Figure 6b's uniform network, before `width` (Figure 6 sets it per cell)."""

    #: Fields that do not change the trained network (kept out of its cache key).
    NOT_IN_KEY: typing.ClassVar[frozenset[str]] = frozenset(
        {"open_world_threshold", "open_world_min_flagged", "rho_mode", "uniform_width"})

    def kept(self) -> list[int]:
        """Checkpoints to keep: the learngene's task and the requested ones, within the run."""
        keep = {self.learngene_task, *self.checkpoints}
        return sorted(k for k in keep if 0 <= k < self.tasks)


# --------------------------------------------------------------------------- method families


@dataclass(frozen=True)
class LearngeneSettings(IndividualSettings):
    """Learngene: the individual recipe, the inheritance and EWC knobs (`[methods.learngene]`), the
    variant's choices and the collective model it inherits from (`[collective]`)."""

    ewc_lambda: float = _ge0(1000.0)
    """Weight of the EWC retain loss (0 = off, what the released code effectively ran)."""
    fisher_samples: int = _gt0(128)
    """Support images used to estimate the Fisher diagonal."""
    fisher_estimator: Literal["empirical", "sampled", "exact"] = "empirical"
    """Labels of the Fisher estimate: true labels (official), sampled, or exact expectation."""
    inherit_position: Literal["top", "middle", "front"] | int = "top"
    """Where the learngene's blocks are taken from in the collective network."""
    inherit_blocks: int = _ge0(3)
    """How many conv blocks are inherited: the top k of the individual's 7, so 7 - k stay fresh (0 = scratch's
    network exactly; 7 only from an ancestor of the individual's shape, `pretrained-individual`)."""
    reuse_across_tasks: bool = False
    """True = the official leak: each target task starts from the previous one's weights."""
    checkpoint: int | None = None
    """Collective task the learngene is taken from (None = collective.learngene_task; Figure 6a)."""
    ancestor: str = field(default="continual", metadata={"one_of": lambda: _ancestor_names()})
    """Where the learngene's blocks come from: a key of `methods.learngene.stages.ANCESTORS` (continual =
    the collective model's continual training, continual-uniform = Figure 6b's uniform-width network,
    open-world = the collective model after the open-world stage of Table 2; a plug-in may add one)."""
    faithful_softmax: bool | None = None
    """Override of collective.faithful_softmax for this variant (None = the collective's)."""
    head: Literal["task_local", "class_incremental"] | None = None
    """Override of collective.head for this variant (None = the collective's)."""
    collective: CollectiveSettings = CollectiveSettings()
    """The collective model the learngene comes from."""
    # Added for issue 22's study; stored (and so in a cell's key) only when they matter (`_added`).
    frozen_gene: bool = _added(False)
    """True = the inherited blocks stay fixed (weights, and BN statistics in eval mode) instead of training
    with the EWC retain loss."""
    match_resolution: bool = _added(False)
    """True = the individual network pools where the ancestor did, so each inherited block runs at the
    feature-map size it was trained at (the template runs the collective's top blocks at 4x4, not 2x2)."""
    pretrain: PretrainSettings = _added(
        default_factory=lambda: PretrainSettings(),
        stored_when=lambda s, name: s.ancestor == "pretrained-individual")
    """The fine-tuning baseline's pre-training (`[individual]` + `[methods.finetune]` pretrain_* keys),
    which the `pretrained-individual` ancestor reads (one shared artifact with `finetune`)."""


@dataclass(frozen=True)
class EpisodicSettings(BackboneSettings):
    """Meta-training shared by the metric learners (ProtoNet, MatchingNet)."""

    meta_iterations: int = _ge0(2000)
    """Episodes of meta-training."""
    train_way: int = _gt0(5)
    """Classes per training episode."""
    train_shots: int = _gt0(5)
    """Support images per class of a training episode."""
    train_queries: int = _gt0(15)
    """Query images per class of a training episode."""
    lr: float = _gt0(1e-3)
    """Adam learning rate."""
    lr_halve_every: int = _ge0(0)
    """Halve the learning rate every this many episodes (0 = never)."""
    bn_recalibration_episodes: int = _ge0(20)
    """Base episodes over which BatchNorm statistics are re-estimated after meta-training."""


@dataclass(frozen=True)
class ProtoNetSettings(EpisodicSettings):
    """Prototypical Networks (`[methods.protonet]`)."""


@dataclass(frozen=True)
class MatchingNetSettings(EpisodicSettings):
    """Matching Networks (`[methods.matchingnet]`)."""

    temperature: float = _gt0(10.0)
    """Softmax over temperature x cosine."""
    fce: bool = False
    """Full-context embeddings."""
    fce_steps: int = _gt0(1)
    """Reading steps of the FCE attention LSTM."""


@dataclass(frozen=True)
class MAMLSettings(BackboneSettings):
    """MAML, first-order MAML and Proto-MAML (`[methods.maml]`)."""

    meta_iterations: int = _ge0(60000)
    """Meta-batches of meta-training."""
    meta_batch: int = _gt0(2)
    """Tasks per meta-batch."""
    inner_lr: float = _gt0(0.01)
    """Step size of the inner SGD loop."""
    inner_steps_train: int = _gt0(5)
    """Inner steps while meta-training."""
    inner_steps_test: int = _gt0(10)
    """Inner steps at test."""
    outer_lr: float = _gt0(1e-3)
    """Adam learning rate of the outer loop."""
    train_shots: int = _gt0(5)
    """Support images per class of a training task."""
    train_queries: int = _gt0(15)
    """Query images per class of a training task."""
    n_way: int = _gt0(5)
    """Ways of the head (set from [episodes] n_way by the experiment)."""
    first_order: bool = False
    """No gradients through the inner steps (a registered variant)."""
    proto: bool = False
    """Proto-MAML: the head starts from the support prototypes (a registered variant)."""
    bn_mode: Literal["transductive", "support"] = "transductive"
    """Query BatchNorm statistics: the query batch's own, or the support set's."""


@dataclass(frozen=True)
class PretrainSettings(BackboneSettings):
    """Supervised pre-training on the base classes, shared by fine-tuning and DeepEMD."""

    pretrain_epochs: int = _gt0(400)
    """Epochs over the base-class training set."""
    pretrain_optimizer: Literal["adam", "sgd"] = "adam"
    """Adam (CloserLook) or SGD with Nesterov momentum."""
    pretrain_lr: float = _gt0(1e-3)
    """Learning rate."""
    pretrain_momentum: float = _ge0(0.9)
    """SGD momentum."""
    pretrain_weight_decay: float = _ge0(0.0)
    """Weight decay."""
    pretrain_schedule: Literal["constant", "cosine", "step"] = "constant"
    """Learning-rate schedule."""
    pretrain_step: int = _gt0(30)
    """Epochs between steps of the step schedule."""
    pretrain_gamma: float = _gt0(0.2)
    """Factor of each step of the step schedule."""
    pretrain_batch: int = _gt0(16)
    """Images per step."""
    pretrain_images_per_class: int = _ge0(0)
    """Base-class train images per class (0 = all)."""

    PRETRAIN_FIELDS: typing.ClassVar[tuple[str, ...]] = (
        "width", "backbone", "crop_padding", "pretrain_epochs", "pretrain_optimizer", "pretrain_lr",
        "pretrain_momentum", "pretrain_weight_decay", "pretrain_schedule", "pretrain_step", "pretrain_gamma",
        "pretrain_batch", "pretrain_images_per_class")


@dataclass(frozen=True)
class FineTuneSettings(PretrainSettings):
    """Baseline and Baseline++ (`[methods.finetune]`), CloserLook's defaults."""

    head_epochs: int = _ge0(100)
    """Epochs of the per-episode head on frozen features."""
    head_lr: float = _gt0(0.01)
    """SGD learning rate of the head."""
    head_momentum: float = _ge0(0.9)
    """SGD momentum of the head."""
    head_dampening: float = _ge0(0.9)
    """SGD dampening of the head."""
    head_weight_decay: float = _ge0(1e-3)
    """SGD weight decay of the head."""
    head_batch: int = _gt0(4)
    """Support features per step."""
    cosine_scale: float = _gt0(10.0)
    """Baseline++ logits = scale x cos."""
    cosine_weight_norm: bool = False
    """CloserLook's WeightNorm (scale x g_k x cos)."""
    cosine: bool = False
    """Baseline++ (cosine head) instead of Baseline (a registered variant)."""


@dataclass(frozen=True)
class DeepEMDSettings(PretrainSettings):
    """DeepEMD-FCN (`[methods.deepemd]`); pre-training reads `[methods.finetune]`'s pretrain_* keys."""

    temperature: float = _gt0(12.5)
    """Logit scale of the EMD similarity."""
    solver: Literal["batched", "pot"] = "batched"
    """Exact EMD solver: POT's C simplex in a tight loop, or ot.emd per pair."""
    sfc_epochs: int = _ge0(100)
    """SFC fine-tuning epochs at k > 1 shots (0 = class-mean prototypes)."""
    sfc_lr: float = _gt0(0.1)
    """SFC SGD learning rate."""
    sfc_batch: int = _gt0(4)
    """Support maps per SFC step."""
    sfc_momentum: float = _ge0(0.9)
    """SFC SGD momentum."""
    sfc_dampening: float = _ge0(0.9)
    """SFC SGD dampening."""
    sfc_curve: bool = True
    """Record query accuracy after every SFC epoch."""
    meta_iterations: int = _ge0(0)
    """Episodes of N-way meta-training after pre-training (0 = none)."""
    meta_way: int = _gt0(5)
    """Classes per meta-training episode."""
    meta_shots: int = _gt0(1)
    """Support images per class of a meta-training episode."""
    meta_queries: int = _gt0(15)
    """Query images per class of a meta-training episode."""
    meta_lr: float = _gt0(5e-4)
    """Nesterov SGD learning rate of meta-training."""
    meta_weight_decay: float = _ge0(5e-4)
    """Weight decay of meta-training."""
    meta_step: int = _gt0(500)
    """Episodes between halvings of meta_lr."""
    meta_gamma: float = _gt0(0.5)
    """Factor of each step of meta_lr."""


# --------------------------------------------------------------------------- building and checking


def _ancestor_names() -> list[str]:
    """The ancestors learngene can inherit from (imported late: the table's module imports this one)."""
    from methods.learngene.stages import ANCESTORS

    return list(ANCESTORS)


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is Literal:
        return " or ".join(repr(a) for a in typing.get_args(tp))
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if typing.get_origin(tp) is tuple:
        return f"a list of {_type_name(typing.get_args(tp)[0])}"
    if typing.get_origin(tp) is dict:
        return f"a table of {_type_name(typing.get_args(tp)[1])}s"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string",
            type(None): "left out"}.get(tp, getattr(tp, "__name__", str(tp)))


def _coerce(value: Any, tp: Any) -> tuple[bool, Any]:
    """(fits, value converted to the field's type): int for float fields, tuples for lists."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        return (value in typing.get_args(tp) and not isinstance(value, bool)), value
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            ok, v = _coerce(value, arg)
            if ok:
                return True, v
        return False, value
    if origin is tuple:
        if not isinstance(value, list | tuple):
            return False, value
        items = [_coerce(v, typing.get_args(tp)[0]) for v in value]
        return all(ok for ok, _ in items), tuple(v for _, v in items)
    if origin is dict:  # a TOML table with string keys: {learngene = 3, fomaml = 3}
        if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
            return False, value
        items = {k: _coerce(v, typing.get_args(tp)[1]) for k, v in value.items()}
        return all(ok for ok, _ in items.values()), {k: v for k, (_, v) in items.items()}
    if tp is type(None):
        return value is None, value
    if tp is bool:
        return isinstance(value, bool), value
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if tp is float:
        return isinstance(value, int | float) and not isinstance(value, bool), float(value) \
            if isinstance(value, int | float) and not isinstance(value, bool) else value
    if tp is str:
        return isinstance(value, str), value
    if dataclasses.is_dataclass(tp):
        return isinstance(value, tp), value
    return True, value


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def field_names(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def check_value(cls: type, section: str, key: str, value: Any) -> Any:
    """`value` converted to field `key`'s type, or SettingsError (unknown key, wrong type, out of range).
    A dotted key ("collective.width") names a field of a nested settings dataclass."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    head, dot, rest = key.partition(".")
    if dot and head in fields and dataclasses.is_dataclass(_hints(cls)[head]):
        try:
            return check_value(_hints(cls)[head], section, rest, value)
        except SettingsError as exc:
            raise SettingsError(section, f"{head}.{exc.key}", exc.why) from None
    if key not in fields:
        close = difflib.get_close_matches(key, list(fields), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else f"; known keys: {', '.join(sorted(fields))}"
        raise SettingsError(section, key, f"unknown key{hint}")
    tp = _hints(cls)[key]
    ok, out = _coerce(value, tp)
    if not ok:
        raise SettingsError(section, key, f"must be {_type_name(tp)}, got {value!r}")
    meta = fields[key].metadata
    if "one_of" in meta and out not in (known := list(meta["one_of"]())):
        close = difflib.get_close_matches(str(out), known, n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"known: {', '.join(known)}"
        raise SettingsError(section, key, f"unknown value {value!r}; {hint}")
    values = out if isinstance(out, tuple) else tuple(out.values()) if isinstance(out, dict) else (out,)
    nums = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    if "gt" in meta and any(v <= meta["gt"] for v in nums):
        raise SettingsError(section, key, f"must be > {meta['gt']}, got {value!r}")
    if "ge" in meta and any(v < meta["ge"] for v in nums):
        raise SettingsError(section, key, f"must be >= {meta['ge']}, got {value!r}")
    return out


def build(cls: type, layers: Sequence[tuple[str, Mapping[str, Any]]], *, strict: bool = True) -> Any:
    """`cls` from (section name, values) layers, later layers winning. With `strict`, every key of every
    layer must be a field; otherwise keys the class lacks are skipped (a shared section such as
    `[individual]` read by a class that needs only part of it)."""
    values: dict[str, Any] = {}
    names = field_names(cls)
    for section, mapping in layers:
        for key, value in mapping.items():
            if not strict and key.partition(".")[0] not in names:
                continue
            checked = check_value(cls, section, key, value)
            if "." not in key:  # a whole value replaces the nested overrides of earlier layers
                values = {k: v for k, v in values.items() if not k.startswith(f"{key}.")}
            values[key] = checked
    plain = {k: v for k, v in values.items() if "." not in k}
    defaults = cls(**plain)
    return _with(defaults, {k: v for k, v in values.items() if "." in k})


def _with(settings: Any, changes: Mapping[str, Any]) -> Any:
    """`dataclasses.replace` that also takes dotted names of nested fields ("collective.width")."""
    flat = {k: v for k, v in changes.items() if "." not in k}
    nested: dict[str, dict[str, Any]] = {}
    for key, value in changes.items():
        if "." in key:
            head, _, rest = key.partition(".")
            nested.setdefault(head, {})[rest] = value
    for head, sub in nested.items():
        flat[head] = _with(flat.get(head, getattr(settings, head)), sub)
    return dataclasses.replace(settings, **flat) if flat else settings


def replace(settings: Any, section: str, **changes: Any) -> Any:
    """`dataclasses.replace` with the same checks as `build` (`section` names where the change came from);
    a dotted name changes a nested field (`replace(s, "options", **{"collective.width": 0.5})`)."""
    return _with(settings, {k: check_value(type(settings), section, k, v) for k, v in changes.items()})


def to_json(settings: Any) -> dict[str, Any]:
    """The settings as plain JSON data (tuples as lists), for cache keys and stored results; a field
    added later (`_added`) is left out while it is at its default."""
    def fields_of(obj: Any) -> dict[str, Any]:  # dataclasses.asdict, less the fields `_added` leaves out
        return {f.name: plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)
                if "stored_when" not in f.metadata or f.metadata["stored_when"](obj, f.name)}

    def plain(v: Any) -> Any:
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            return fields_of(v)
        if isinstance(v, tuple | list):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v
    # a plugin registered without a settings dataclass receives (and stores) a plain dict
    return plain(settings if dataclasses.is_dataclass(settings) else dict(settings))


def family_layers(cls: type, profile: Mapping[str, Any], family: str) -> list[tuple[str, Mapping[str, Any]]]:
    """The profile sections a family's settings are read from, in order (see the module docstring)."""
    methods = profile.get("methods", {})
    individual = profile.get("individual", {})
    shared = individual if issubclass(cls, IndividualSettings) else \
        {k: v for k, v in individual.items() if k in field_names(BackboneSettings)}
    layers: list[tuple[str, Mapping[str, Any]]] = [("individual", shared)]
    if issubclass(cls, DeepEMDSettings):
        fin = methods.get("finetune", {})
        layers.append(("methods.finetune", {k: v for k, v in fin.items() if k in PretrainSettings.PRETRAIN_FIELDS}))
    layers.append((f"methods.{family}", methods.get(family, {})))
    return layers


def check_image_size(image_size: int, backbone: str, section: str = "data", key: str = "image_size") -> None:
    """SettingsError when `image_size` is below what `backbone` needs (its pools would reach 0 pixels)."""
    need = MIN_IMAGE_SIZE.get(backbone)
    if need is not None and image_size < need:
        raise SettingsError(section, key, f"{image_size} px is below the {need} px the {backbone} network needs")


def for_family(cls: type, family: str, profile: Mapping[str, Any], *, given: Mapping[str, Any] | None = None,
               variant: Mapping[str, Any] | None = None, options: Mapping[str, Any] | None = None,
               own: tuple[str, Mapping[str, Any]] | None = None) -> Any:
    """A family's settings from a profile: the family's sections (`family_layers`), a variant's own
    section (`own`: e.g. ("methods.protomaml", {...}), so one variant can differ from its family), then
    what the experiment passes (`given`: only the fields the class has, e.g. MAML's n_way or learngene's
    collective settings), the registered variant's overrides, then a cell's options."""
    names = field_names(cls)
    given = {k: v for k, v in (given or {}).items() if k in names}
    if "collective" in names and "collective" not in given:
        given["collective"] = build(CollectiveSettings, [("collective", profile.get("collective", {}))])
    if "pretrain" in names and "pretrain" not in given:  # fine-tuning's pre-training, layered as DeepEMD reads it
        given["pretrain"] = build(PretrainSettings, family_layers(PretrainSettings, profile, "finetune"), strict=False)
    layers = [*family_layers(cls, profile, family), *([own] if own else []), ("given", given), ("variant", variant or {}),
              ("options", {k: v for k, v in (options or {}).items() if v is not None})]
    return build(cls, layers)
