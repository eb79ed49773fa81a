"""Class divisions, the seeded episode sampler and the continual task stream."""
from __future__ import annotations

import json
import random
import zipfile

import pytest
import torch
from conftest import build_tiny_set, image_index, write_tiny_imagenet, zip_folder

from tasks import DataError
from tasks.continual import continual_tasks, make_task
from tasks.datasets import load_dataset, make_synthetic
from tasks.episodes import Episode, sample_episodes
from tasks.imageset import TEST_POOL, TRAIN_POOL, ImageSet
from tasks.splits import (
    CIFAR_FS_BASE,
    CIFAR_FS_NOVEL,
    CIFAR_FS_OPEN,
    MINI_BASE,
    MINI_NOVEL,
    MINI_OPEN,
    ClassSplit,
    resolve_split,
    seeded_split,
)

# The 100 CIFAR-100 fine label names, in the official `meta` order.
CIFAR100_NAMES = (
    "apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly camel can "
    "castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup dinosaur dolphin "
    "elephant flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower leopard lion lizard lobster "
    "man maple_tree motorcycle mountain mouse mushroom oak_tree orange orchid otter palm_tree pear pickup_truck "
    "pine_tree plain plate poppy porcupine possum rabbit raccoon ray road rocket rose sea seal shark shrew skunk "
    "skyscraper snail snake spider squirrel streetcar sunflower sweet_pepper table tank telephone television tiger "
    "tractor train trout tulip turtle wardrobe whale willow_tree wolf woman worm"
).split()


def one_line(exc) -> str:
    msg = str(exc.value)
    assert msg and "\n" not in msg
    return msg


def named_set(names: list[str], per_pool: int = 1) -> ImageSet:
    n = len(names) * 2 * per_pool
    return ImageSet(name="named", images=torch.zeros(n, 3, 2, 2, dtype=torch.uint8),
                    labels=torch.arange(len(names)).repeat_interleave(2 * per_pool),
                    class_names=list(names), pool=torch.tensor([0, 1] * (n // 2)), source="")


def assert_division(split: ClassSplit, sizes=(64, 16, 20), universe=None):
    assert (len(split.base), len(split.open_world), len(split.novel)) == sizes
    parts = [set(split.base), set(split.open_world), set(split.novel)]
    assert sum(len(p) for p in parts) == sum(sizes), "duplicates inside a division"
    assert not (parts[0] & parts[1]) and not (parts[0] & parts[2]) and not (parts[1] & parts[2])
    if universe is not None:
        assert set().union(*parts) <= set(universe)


# --------------------------------------------------------------------------- splits


def test_published_cifar_fs_split_picked_for_cifar_names():
    assert sorted(CIFAR_FS_BASE + CIFAR_FS_OPEN + CIFAR_FS_NOVEL) == sorted(CIFAR100_NAMES)
    names = list(CIFAR100_NAMES)
    random.Random(0).shuffle(names)  # order of the data's classes must not matter
    data = named_set(names)
    split = resolve_split(data, seed=5)
    assert split.source == "published:cifar-fs"
    assert_division(split, universe=names)
    assert set(split.novel) == set(CIFAR_FS_NOVEL) and set(split.open_world) == set(CIFAR_FS_OPEN)
    assert {"baby", "woman", "worm", "whale"} <= set(split.novel) and "apple" in split.base
    assert [data.class_names[i] for i in split.ids(data, "novel")] == list(split.novel)
    assert resolve_split(data, seed=6) == split  # the published list ignores the seed


def test_published_mini_imagenet_split_picked_for_wnids():
    wnids = MINI_BASE + MINI_OPEN + MINI_NOVEL
    assert len(set(wnids)) == 100
    data = named_set(sorted(wnids) + ["n09999999"])  # an extra class does not stop the match
    split = resolve_split(data)
    assert split.source == "published:mini-imagenet"
    assert_division(split, universe=wnids)
    assert "n01930112" in split.novel and "n01855672" in split.open_world  # Ravi & Larochelle test/val


def test_seeded_split_deterministic_and_disjoint():
    data = named_set([f"c{i:03d}" for i in range(100)])
    a, b, c = seeded_split(data, seed=1), seeded_split(data, seed=1), seeded_split(data, seed=2)
    assert a == b and a.source == "seeded:1"
    assert a != c
    for s in (a, c):
        assert_division(s, universe=data.class_names)
    assert set(a.base) | set(a.open_world) | set(a.novel) == set(data.class_names)
    assert resolve_split(data, seed=1) == a  # no file, no published match -> seeded
    json.dumps(a.to_json())


def test_seeded_split_shrinks_for_fewer_classes():
    data = named_set([f"c{i:02d}" for i in range(30)])
    s = seeded_split(data, seed=0)
    assert_division(s, sizes=(19, 5, 6), universe=data.class_names)
    with pytest.raises(DataError) as exc:
        seeded_split(named_set([f"c{i}" for i in range(12)]), seed=0)
    one_line(exc)


def test_split_file_beside_the_data_is_used(tmp_path, cache_dir):
    root = tmp_path / "src"
    info = write_tiny_imagenet(root, n_classes=20, n_train=1, n_val=1, size=8, grey_first=False)
    zip_folder(root, tmp_path / "tiny-imagenet-20.zip", "tiny-imagenet-20", zipfile.ZIP_STORED)
    w = info["wnids"]
    spec = {"description": "test", "base": w[5:17], "open_world": w[17:], "novel": w[:5],
            "names": {x: f"thing {x}" for x in w}}
    (tmp_path / "tiny-imagenet-20.split.json").write_text(json.dumps(spec))
    data = load_dataset("tiny-imagenet", data_dir=tmp_path, image_size=8)
    split = resolve_split(data, seed=3)
    assert split.source == "file:tiny-imagenet-20.split.json"
    assert list(split.base) == w[5:17] and list(split.open_world) == w[17:] and list(split.novel) == w[:5]
    assert resolve_split(load_dataset("tiny-imagenet", data_dir=tmp_path, image_size=8)) == split  # cache hit too
    # --split FILE wins over the file beside the data
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"base": w[:12], "open": w[12:15], "novel": w[15:]}))
    assert list(resolve_split(data, split_file=other).novel) == w[15:]
    # a split naming classes the data does not have is a one-line error
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"base": ["n00000000"], "open_world": [], "novel": w[:2]}))
    with pytest.raises(DataError) as exc:
        resolve_split(data, split_file=bad)
    assert "n00000000" in one_line(exc)
    overlap = tmp_path / "overlap.json"
    overlap.write_text(json.dumps({"base": w[:10], "open_world": w[9:12], "novel": w[12:]}))
    with pytest.raises(DataError):
        resolve_split(data, split_file=overlap)
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(DataError):
        resolve_split(data, split_file=tmp_path / "broken.json")


def test_synthetic_split_is_seeded():
    data = make_synthetic(num_classes=100, train_per_class=1, test_per_class=1, image_size=4)
    split = resolve_split(data, seed=0)
    assert split.source == "seeded:0"
    assert_division(split, universe=data.class_names)


@pytest.mark.realdata
def test_real_split_file(real_data_dir):
    data = load_dataset("tiny-imagenet", data_dir=real_data_dir, image_size=32)
    split = resolve_split(data, seed=123)
    assert split.source == "file:tiny-imagenet-100.split.json"
    raw = json.loads((real_data_dir / "tiny-imagenet-100.split.json").read_text())
    assert list(split.base) == raw["base"] and list(split.open_world) == raw["open_world"]
    assert list(split.novel) == raw["novel"]
    assert_division(split, universe=data.class_names)


# --------------------------------------------------------------------------- episodes


def _episodes(data, k=5, q=3, n=6, seed=0, way=5, classes=None):
    return sample_episodes(data, classes if classes is not None else list(range(data.num_classes)),
                           n_way=way, k_shot=k, n_query=q, n_episodes=n, seed=seed)


def test_episode_pools_order_and_labels(tiny_set):
    eps = _episodes(tiny_set, k=5, q=3, n=8, seed=11, classes=[1, 2, 3, 5, 7, 8, 9])
    assert len(eps) == 8 and [e.index for e in eps] == list(range(8))
    for ep in eps:
        assert isinstance(ep, Episode) and ep.n_way == 5 and ep.k_shot == 5
        assert len(set(ep.classes)) == 5 and set(ep.classes) <= {1, 2, 3, 5, 7, 8, 9}
        assert tiny_set.pool[ep.support].eq(TRAIN_POOL).all()
        assert tiny_set.pool[ep.query].eq(TEST_POOL).all()
        assert not set(ep.support.tolist()) & set(ep.query.tolist())
        assert len(set(ep.support.tolist())) == 25 and len(set(ep.query.tolist())) == 15
        # class-major: all shots of the episode's class 0, then class 1, ...
        assert tiny_set.labels[ep.support].view(5, 5).tolist() == [[c] * 5 for c in ep.classes]
        assert tiny_set.labels[ep.query].view(5, 3).tolist() == [[c] * 3 for c in ep.classes]
        assert ep.support_labels.tolist() == [i for i in range(5) for _ in range(5)]
        assert ep.query_labels.tolist() == [i for i in range(5) for _ in range(3)]
        true = torch.tensor(ep.classes)
        assert torch.equal(true[ep.support_labels], tiny_set.labels[ep.support])
        assert torch.equal(true[ep.query_labels], tiny_set.labels[ep.query])
        # the pixels gathered are those of the indexed images
        assert torch.equal(image_index(tiny_set, ep.support), ep.support)


def test_episodes_same_seed_identical_different_seed_different(tiny_set):
    a, b, c = _episodes(tiny_set, seed=4), _episodes(tiny_set, seed=4), _episodes(tiny_set, seed=5)
    for x, y in zip(a, b, strict=True):
        assert x.classes == y.classes and torch.equal(x.support, y.support) and torch.equal(x.query, y.query)
    assert any(x.classes != z.classes or not torch.equal(x.support, z.support) for x, z in zip(a, c, strict=True))
    assert len({e.classes for e in a}) > 1, "episodes of one seed should not all be the same"
    neg = _episodes(tiny_set, seed=-4)  # a negative seed is its own seed, not an alias of +4
    assert any(x.classes != z.classes or not torch.equal(x.support, z.support) for x, z in zip(a, neg, strict=True))


def test_fewer_shots_are_a_subset_and_queries_do_not_depend_on_shots(tiny_set):
    e10, e20 = _episodes(tiny_set, k=10, q=4, seed=9), _episodes(tiny_set, k=20, q=4, seed=9)
    e1 = _episodes(tiny_set, k=1, q=4, seed=9)
    for a, b, c in zip(e10, e20, e1, strict=True):
        assert a.classes == b.classes == c.classes
        assert set(a.support.tolist()) < set(b.support.tolist())
        assert set(c.support.tolist()) < set(a.support.tolist())
        for pos in range(5):  # per class, the 10 shots are the first 10 of the 20
            assert a.support.view(5, 10)[pos].tolist() == b.support.view(5, 20)[pos, :10].tolist()
        assert torch.equal(a.query, b.query) and torch.equal(a.query, c.query)


def test_n_query_none_takes_every_test_image(tiny_set):
    eps = _episodes(tiny_set, k=3, q=None, n=3, seed=2)
    for ep in eps:
        expected = torch.cat([tiny_set.indices(c, TEST_POOL) for c in ep.classes])
        assert torch.equal(ep.query, expected)
        assert ep.query_labels.tolist() == [i for i in range(5) for _ in range(8)]
    uneven = build_tiny_set(num_classes=6, train_per_class=6, test_per_class=4)
    uneven.pool[uneven.indices(0, TEST_POOL)[:2]] = TRAIN_POOL  # class 0 keeps 2 test images
    ep = _episodes(uneven, k=2, q=None, n=1, seed=0, way=6)[0]
    pos = ep.classes.index(0)
    assert int((ep.query_labels == pos).sum()) == 2 and len(ep.query) == 5 * 4 + 2


def test_episodes_on_synthetic_images_differ_by_class():
    data = make_synthetic(num_classes=10, train_per_class=20, test_per_class=5, image_size=8)
    ep = _episodes(data, k=5, q=5, n=1, seed=0)[0]
    assert torch.equal(torch.tensor(ep.classes)[ep.support_labels], data.labels[ep.support])


@pytest.mark.parametrize("kwargs,needle", [
    ({"k_shot": 25}, "25 shots"),            # classes have 24 train images
    ({"n_query": 9}, "9 queries"),           # and 8 test images
    ({"k_shot": 0}, "shots"),
    ({"k_shot": -1}, "shots"),
    ({"n_way": 0}, "ways"),
    ({"n_episodes": 0}, "episodes"),
    ({"n_query": 0}, "queries"),
    ({"n_way": 11}, "11-way"),
])
def test_episode_bad_numbers(tiny_set, kwargs, needle):
    args = {"n_way": 5, "k_shot": 5, "n_query": 3, "n_episodes": 2, "seed": 0, **kwargs}
    with pytest.raises(DataError) as exc:
        sample_episodes(tiny_set, list(range(10)), **args)
    assert needle in one_line(exc)


def test_too_many_shots_names_the_class_and_the_limit(tiny_set):
    tiny_set.pool[tiny_set.indices(3, TRAIN_POOL)[:20]] = 2  # class 3 keeps 4 train images
    with pytest.raises(DataError) as exc:
        sample_episodes(tiny_set, list(range(10)), 5, 5, 3, 1, 0)
    msg = one_line(exc)
    assert "class_03" in msg and "only 4" in msg and "at most 4" in msg


def test_class_without_test_images_is_an_error_with_all_queries(tiny_set):
    tiny_set.pool[tiny_set.indices(2, TEST_POOL)] = TRAIN_POOL
    with pytest.raises(DataError) as exc:
        sample_episodes(tiny_set, list(range(10)), 5, 5, None, 1, 0)
    assert "class_02" in one_line(exc)


@pytest.mark.realdata
def test_real_episodes(real_data_dir):
    data = load_dataset("tiny-imagenet", data_dir=real_data_dir, image_size=32)
    novel = resolve_split(data).ids(data, "novel")
    eps = sample_episodes(data, novel, n_way=5, k_shot=10, n_query=None, n_episodes=3, seed=0)
    for ep in eps:
        assert set(ep.classes) <= set(novel)
        assert len(ep.support) == 50 and len(ep.query) == 250  # all 50 val images of each class
        assert data.pool[ep.support].eq(TRAIN_POOL).all() and data.pool[ep.query].eq(TEST_POOL).all()
        assert torch.equal(torch.tensor(ep.classes)[ep.query_labels], data.labels[ep.query])


# --------------------------------------------------------------------------- continual stream


def test_continual_tasks(tiny_set):
    pool = [0, 2, 3, 4, 6, 7, 9]
    tasks = continual_tasks(tiny_set, pool, n_tasks=6, classes_per_task=5, images_per_class=7,
                            test_per_class=3, seed=1)
    assert [t.task_id for t in tasks] == list(range(6))
    for t in tasks:
        assert len(t.classes) == 5 and len(set(t.classes)) == 5 and set(t.classes) <= set(pool)
        assert t.train_labels.tolist() == [i for i in range(5) for _ in range(7)]
        assert t.test_labels.tolist() == [i for i in range(5) for _ in range(3)]
        true = torch.tensor(t.classes)
        assert torch.equal(true[t.train_labels], tiny_set.labels[t.train_idx])
        assert torch.equal(true[t.test_labels], tiny_set.labels[t.test_idx])
        assert tiny_set.pool[t.train_idx].eq(TRAIN_POOL).all() and tiny_set.pool[t.test_idx].eq(TEST_POOL).all()
        assert len(set(t.train_idx.tolist())) == 35
        j = t.to_json(tiny_set)
        assert j["classes"] == [tiny_set.class_names[c] for c in t.classes] and j["n_train"] == 35
    same = continual_tasks(tiny_set, pool, 6, 5, 7, 3, seed=1)
    other = continual_tasks(tiny_set, pool, 6, 5, 7, 3, seed=2)
    assert all(a.classes == b.classes and torch.equal(a.train_idx, b.train_idx) for a, b in zip(tasks, same, strict=True))
    assert any(a.classes != b.classes or not torch.equal(a.train_idx, b.train_idx) for a, b in zip(tasks, other, strict=True))
    assert len({t.classes for t in tasks}) > 1
    full = continual_tasks(tiny_set, pool, 2, seed=0)  # default: every train and test image
    assert len(full[0].train_idx) == 5 * 24 and len(full[0].test_idx) == 5 * 8


def test_make_task_explicit_classes(tiny_set):
    t = make_task(tiny_set, task_id=3, classes=(9, 1, 4), images_per_class=None, test_per_class=None, seed=0)
    assert t.classes == (9, 1, 4)
    assert tiny_set.labels[t.train_idx].view(3, 24).tolist() == [[9] * 24, [1] * 24, [4] * 24]
    assert t.train_labels.view(3, 24)[:, 0].tolist() == [0, 1, 2]


@pytest.mark.parametrize("kwargs", [{"n_tasks": 0}, {"classes_per_task": 0}, {"classes_per_task": 8},
                                    {"images_per_class": 0}, {"test_per_class": -1}])
def test_continual_bad_numbers(tiny_set, kwargs):
    args = {"n_tasks": 2, "classes_per_task": 5, "seed": 0, **kwargs}
    with pytest.raises(DataError) as exc:
        continual_tasks(tiny_set, [0, 1, 2, 3, 4, 5, 6], **args)
    one_line(exc)


def test_training_episodes_draw_queries_from_the_train_pool(tiny_set):
    """Base-class meta-training (query_pool="train"): shots and queries both from the train pool, disjoint."""
    eps = sample_episodes(tiny_set, list(range(10)), n_way=5, k_shot=5, n_query=6, n_episodes=8, seed=3,
                          query_pool="train")
    for ep in eps:
        assert tiny_set.pool[ep.support].eq(TRAIN_POOL).all()
        assert tiny_set.pool[ep.query].eq(TRAIN_POOL).all()
        assert not set(ep.support.tolist()) & set(ep.query.tolist())
        assert tiny_set.labels[ep.query].view(5, 6).tolist() == [[c] * 6 for c in ep.classes]
    # the evaluation episodes of the same seed are unchanged by the option's existence
    test_eps = sample_episodes(tiny_set, list(range(10)), 5, 5, 6, 8, 3)
    assert all(torch.equal(a.support, b.support) for a, b in zip(eps, test_eps, strict=True))
    assert all(tiny_set.pool[e.query].eq(TEST_POOL).all() for e in test_eps)


def test_training_episodes_need_shots_plus_queries_train_images(tiny_set):
    with pytest.raises(DataError, match="shots \\+ .* queries per class from the train pool"):
        sample_episodes(tiny_set, list(range(10)), 5, 20, 5, 1, 0, query_pool="train")


def test_meta_training_never_sees_base_class_test_images(tiny_set):
    """The defect this guards: meta-training computed every query loss on the base classes' test images."""
    from methods.base import SourceData
    from methods.episodic import meta_train_tasks
    from tasks.augment import eval_transform
    from tasks.splits import ClassSplit

    data = tiny_set
    data.images[data.pool == TEST_POOL] = 255  # mark every test image
    names = data.class_names
    split = ClassSplit(base=tuple(names[:6]), open_world=tuple(names[6:8]), novel=tuple(names[8:]), source="test")
    marker = eval_transform(torch.full((1, 3, data.image_size, data.image_size), 255, dtype=torch.uint8))[0]
    tasks = list(meta_train_tasks(SourceData(data, split, seed=0), 5, 4, 4, 10, 0, torch.device("cpu"),
                                  augment=False))
    seen = torch.cat([torch.cat([t.xs, t.xq]) for t in tasks])
    assert not (seen == marker).flatten(1).all(1).any()
