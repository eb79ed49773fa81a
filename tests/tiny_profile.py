"""A profile of CPU seconds (16 px synthetic images, width 0.25) for tests that run real grids in
other processes (the executors, the results lock, damaged cells, Ray on several nodes)."""
from __future__ import annotations


def tiny_profile(name: str, shots: tuple[int, ...] = (5, 10), tasks: int = 1, epochs: int = 2,
                 extra: str = "") -> str:
    """The profile as TOML text; `extra` appends further sections (e.g. `[methods.protonet]`)."""
    return f"""\
name = "{name}"
[data]
image_size = 16
synthetic = {{ num_classes = 40, train_per_class = 20, test_per_class = 5 }}
[episodes]
n_way = 5
shots = {list(shots)}
open_world_shots = 5
queries = 5
tasks = {tasks}
seeds = 2
artifact_seed = "cell"
[individual]
width = 0.25
epochs = {epochs}
lr = 0.05
momentum = 0.9
weight_decay = 5e-4
batch_size = 16
crop_padding = 0
""" + extra
