"""Class divisions: 64 base / 16 open-world / 20 novel.

Sources, in order of precedence: an explicit `--split FILE`; a `<data>.split.json` beside the data;
the published CIFAR-FS / mini-ImageNet lists (Bertinetto et al. 2019; Ravi & Larochelle 2017) when the dataset's classes
match them; otherwise a seeded division. The division used is saved with every result.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from tasks.errors import DataError
from tasks.imageset import ImageSet

CIFAR_FS_BASE = (
    "apple aquarium_fish bear bee bottle bowl boy bridge bus can castle caterpillar chair clock cloud cockroach "
    "couch cup dinosaur dolphin elephant forest girl hamster house kangaroo keyboard lawn_mower lion lizard lobster "
    "mountain mouse mushroom oak_tree orange orchid palm_tree pear pine_tree plate porcupine possum rabbit raccoon "
    "ray road seal shrew skunk skyscraper snake spider squirrel streetcar sunflower tank tiger train trout tulip "
    "turtle willow_tree wolf"
).split()
CIFAR_FS_OPEN = ("beaver beetle butterfly camel cattle crab crocodile flatfish lamp maple_tree motorcycle otter sea "
                 "shark television tractor").split()
CIFAR_FS_NOVEL = ("baby bed bicycle chimpanzee fox leopard man pickup_truck plain poppy rocket rose snail "
                  "sweet_pepper table telephone wardrobe whale woman worm").split()

MINI_BASE = (
    "n02091831 n02747177 n03527444 n03337140 n07697537 n13133613 n04251144 n01532829 n04443257 n03908618 "
    "n01558993 n03047690 n02687172 n02795169 n04515003 n01770081 n04067472 n03924679 n02089867 n02108551 n02165456 "
    "n02108089 n13054560 n02823428 n04596742 n03062245 n03476684 n01704323 n04604644 n02105505 n02113712 n07747607 "
    "n06794110 n04243546 n04389033 n02606052 n02108915 n03017168 n04258138 n03854065 n02457408 n02120079 n03207743 "
    "n04275548 n04612504 n03347037 n01843383 n04296562 n04435653 n04509417 n03998194 n09246464 n01749939 n03888605 "
    "n07584110 n03400231 n02966193 n01910747 n03676483 n03838899 n02074367 n03220513 n02111277 n02101006"
).split()
MINI_OPEN = ("n02971356 n03535780 n03770439 n03075370 n03417042 n03584254 n09256479 n02114548 n02091244 "
             "n01855672 n02950826 n03773504 n02174001 n02138441 n02981792 n03980874").split()
MINI_NOVEL = ("n02110341 n01981276 n03146219 n04149813 n02219486 n02871525 n02110063 n04418357 n02116738 "
              "n03544143 n04522168 n02129165 n07613480 n03775546 n03127925 n03272010 n01930112 n02443484 "
              "n04146614 n02099601").split()

PUBLISHED = {"cifar-fs": (CIFAR_FS_BASE, CIFAR_FS_OPEN, CIFAR_FS_NOVEL),
             "mini-imagenet": (MINI_BASE, MINI_OPEN, MINI_NOVEL)}


@dataclass(frozen=True)
class ClassSplit:
    """Class names of each division plus where the division came from."""

    base: tuple[str, ...]
    open_world: tuple[str, ...]
    novel: tuple[str, ...]
    source: str

    def ids(self, data: ImageSet, part: str) -> list[int]:
        """Class ids in `data` for one division ('base', 'open_world' or 'novel')."""
        names = getattr(self, part)
        return [data.class_id(n) for n in names]

    def to_json(self) -> dict:
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def _check(split: ClassSplit, data: ImageSet) -> ClassSplit:
    known = set(data.class_names)
    parts = (split.base, split.open_world, split.novel)
    missing = [n for part in parts for n in part if n not in known]
    if missing:
        raise DataError(f"split ({split.source}) names {len(missing)} classes absent from {data.name}, "
                        f"e.g. {missing[:3]}; pass a --split file that matches the data")
    seen = [n for part in parts for n in part]
    if len(seen) != len(set(seen)):
        raise DataError(f"split ({split.source}) lists a class in more than one division; fix the split file")
    return split


def load_split_file(path: Path, data: ImageSet) -> ClassSplit:
    try:
        raw = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"cannot read split file {path} ({exc}); pass a JSON file with base/open_world/novel lists") from exc

    def names(key_options: tuple[str, ...]) -> tuple[str, ...]:
        for key in key_options:
            if key in raw:
                vals = raw[key]
                return tuple(v["wnid"] if isinstance(v, dict) else str(v) for v in vals)
        raise DataError(f"split file {path} has none of the keys {key_options}")

    split = ClassSplit(names(("base",)), names(("open_world", "open-world", "open")),
                       names(("novel",)), source=f"file:{Path(path).name}")
    return _check(split, data)


def seeded_split(data: ImageSet, seed: int = 0, n_base: int = 64, n_open: int = 16, n_novel: int = 20) -> ClassSplit:
    """A seeded permutation of the classes: first n_base base, next n_open open-world, last n_novel novel.

    With fewer than 100 classes the three parts shrink in proportion (each at least 5 classes)."""
    n = data.num_classes
    total = n_base + n_open + n_novel
    if n < total:
        n_novel = max(5, round(n * n_novel / total))
        n_open = max(5, round(n * n_open / total))
        n_base = n - n_novel - n_open
        if n_base < 5:
            raise DataError(f"{data.name} has {n} classes; at least 15 are needed for base/open-world/novel divisions")
    order = np.random.default_rng(seed).permutation(n)
    names = [data.class_names[i] for i in order]
    return ClassSplit(tuple(names[:n_base]), tuple(names[n_base:n_base + n_open]),
                      tuple(names[n_base + n_open:n_base + n_open + n_novel]), source=f"seeded:{seed}")


def published_split(data: ImageSet) -> ClassSplit | None:
    """The CIFAR-FS or mini-ImageNet division, when every listed class is in the data."""
    known = set(data.class_names)
    for key, (b, o, nv) in PUBLISHED.items():
        if all(c in known for c in (*b, *o, *nv)):
            return ClassSplit(tuple(b), tuple(o), tuple(nv), source=f"published:{key}")
    return None


def resolve_split(data: ImageSet, split_file: Path | None = None, seed: int = 0) -> ClassSplit:
    """The division to use for `data` (see the module docstring for precedence)."""
    from tasks.datasets import split_file_beside

    if split_file is not None:
        return load_split_file(split_file, data)
    beside = split_file_beside(data.source) if data.source and not data.synthetic else None
    if beside is not None:
        return load_split_file(beside, data)
    return published_split(data) or seeded_split(data, seed)
