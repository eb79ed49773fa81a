"""The `ray` executor: cells as Ray tasks on a local cluster or on many machines.

Why Ray: it starts a real multi-process cluster with the same code that joins a
multi-node one (`--ray-address`), schedules by declared CPU/GPU/memory, retries a task whose worker
died, and returns results to one driver, which stays the only writer of the results store.

How a grid runs:
1. Cells that would load the same trained artifact (same method, artifact seed and method options,
   see `artifact_key`) form a group. For every group of two or more cells one `prepare` task runs
   first; the group's cells take its ObjectRef as an argument, so Ray starts them only after the
   artifact exists. Cells of other groups run meanwhile. On one machine the artifact cache's file
   lock would already stop a double build; across machines without a shared filesystem the prepare
   task also returns the files it built and each cell installs them into its node's cache first,
   so no node trains the same artifact again.
2. Results come back through `ray.wait` as they finish and are yielded as `(cell, result)`, with the
   caller's own `Cell` objects (the CLI maps cells to configs by identity).
3. A worker that dies (killed, OOM) is retried `MAX_RETRIES` times; a Python exception in a cell is
   not retried and is re-raised in the driver with its own type.

Shared-machine settings for a cluster we start: a 200 MB object store (results
are small dicts), no dashboard, logs and sockets under a private temporary directory that is removed
afterwards, every port bound to 127.0.0.1 (Ray binds all interfaces otherwise), and token
authentication with a fresh per-cluster token held in the environment, so nothing is written to
`~/.ray`. A cluster we joined, or one already initialised in this process (the test fixture), is
left running.

Many machines (`--ray-address HOST:PORT`): every node needs this package installed
(`pip install '.[ray]'`), the dataset at the same `--data-dir` path, and, when the cluster uses token
authentication, the cluster's token in RAY_AUTH_TOKEN (or RAY_AUTH_TOKEN_PATH). The results store
need not be shared: workers never write it, and artifacts travel with the prepare tasks' results.
A node whose filesystem lacks the driver's `--results-dir` path keeps its artifact cache wherever
`BENCH_NODE_ARTIFACT_DIR` points in that node's environment (`NODE_ARTIFACT_ENV`; the multi-node
test gives every node its own, i.e. no shared filesystem).
GPU cells declare one GPU each, and Ray then runs each in a fresh worker (its default for GPU
tasks), which frees GPU memory between cells at the cost of rebuilding the Env per cell.
"""
from __future__ import annotations

import dataclasses
import json
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass
from pathlib import Path

import ray

from bench.cell_env import Cell, RunSpec, env_for
from bench.cells import execute_recorded
from bench.errors import UsageError
from bench.profiles import episode_settings
from bench.usage import usable_cores

OBJECT_STORE_BYTES = 200 * 2**20
MAX_RETRIES = 3
DEFAULT_CELL_MEMORY_MB = 1024  # a torch-holding worker is ~0.7 GiB RSS (measured)
REPO_ROOT = Path(__file__).resolve().parents[1]

NODE_ARTIFACT_ENV = "BENCH_NODE_ARTIFACT_DIR"

CellFn = Callable[[RunSpec, Cell], dict]
ArtifactFiles = dict[str, dict[str, bytes]]  # artifact dir name -> file name -> bytes


# ------------------------------------------------------------------------------------------ cluster


@dataclass
class LocalCluster:
    """A Ray cluster this process started; `stop()` shuts it down and removes its files."""

    temp_dir: str
    started_s: float

    def stop(self) -> None:
        ray.shutdown()
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def _use_private_token() -> None:
    """Token authentication without touching ~/.ray: a fresh token in RAY_AUTH_TOKEN, which the
    cluster's processes inherit. A token or mode the user set is respected."""
    if os.environ.get("RAY_AUTH_MODE", "token").lower() != "token":
        return
    os.environ["RAY_AUTH_MODE"] = "token"
    if not (os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH")
            or (Path.home() / ".ray" / "auth_token").exists()):
        os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
    # Ray caches the mode and the token when it is imported; make it read them again.
    from ray._raylet import AuthenticationTokenLoader, Config

    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()


def start_local_cluster(num_cpus: int, num_gpus: int | None = None,
                        object_store_bytes: int = OBJECT_STORE_BYTES) -> LocalCluster:
    """Start a private local cluster configured for a shared machine (see the module docstring)."""
    _use_private_token()
    # Workers import bench/methods/tasks from this checkout even when it is not pip-installed.
    path = os.environ.get("PYTHONPATH", "")
    if str(REPO_ROOT) not in path.split(os.pathsep):
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), path) if p)
    # Loopback only: with this switch Ray uses 127.0.0.1 as the node address and binds every
    # server to it. Ray reads the constant at call time; restore it so a later join still works.
    from ray._private import ray_constants

    saved_flag, saved_env = ray_constants.ENABLE_RAY_CLUSTER, os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER")
    ray_constants.ENABLE_RAY_CLUSTER = False
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    temp_dir = tempfile.mkdtemp(prefix="ray-lgb-", dir="/tmp")  # short: unix socket paths are capped
    t0 = time.perf_counter()
    try:
        ray.init(num_cpus=num_cpus, num_gpus=num_gpus, include_dashboard=False, log_to_driver=False,
                 object_store_memory=object_store_bytes, _temp_dir=temp_dir, configure_logging=False)
    except Exception:
        shutil.rmtree(temp_dir, ignore_errors=True)
        raise
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved_flag
        if saved_env is None:
            os.environ.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", None)
        else:
            os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = saved_env
    return LocalCluster(temp_dir, time.perf_counter() - t0)


def _connect(ray_address: str | None, device: str) -> LocalCluster | None:
    """Use the cluster already initialised here, join `ray_address`, or start a local one."""
    if ray.is_initialized():
        return None
    if ray_address:
        ray.init(address=ray_address, log_to_driver=False, configure_logging=False)
        return None
    cpus = usable_cores()
    gpus = None
    if device.startswith("cuda"):
        import torch

        gpus = torch.cuda.device_count()
    return start_local_cluster(cpus, gpus)


# ------------------------------------------------------------------------------------------ tasks


def artifact_key(spec: RunSpec, cell: Cell) -> Hashable:
    """Cells with the same key load the same prepared state: (method, artifact seed, options).

    Mirrors `Env.prepared`'s key without building an Env.
    """
    p = cell.params
    return (cell.method, episode_settings(spec.profile).artifact_seed_for(int(p.get("seed", 0))),
            json.dumps(p.get("method_options") or {}, sort_keys=True, default=str))


def _set_threads(threads: int) -> None:
    import torch

    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def _node_local(spec: RunSpec) -> RunSpec:
    """The spec as this node sees it: its artifact cache under NODE_ARTIFACT_ENV when set.

    Workers use `results_dir` only for the artifact cache (`RunSpec.cache_dir`); the store itself is
    written by the driver alone, so pointing it elsewhere on a worker changes nothing else."""
    node_dir = os.environ.get(NODE_ARTIFACT_ENV)
    if not node_dir:
        return spec
    return dataclasses.replace(spec, results_dir=str(Path(node_dir) / "results"))


_USED: dict[Hashable, list[str]] = {}  # per worker process: artifact key -> artifact dirs its prepare used


def _prepare_here(spec: RunSpec, cell: Cell) -> Hashable:
    """Prepare the cell's method in this process and remember which artifact dirs that used."""
    env = env_for(spec)
    p = cell.params
    key = artifact_key(spec, cell)
    n_before = len(env.cache.touched)
    env.prepared(cell.method, int(p.get("seed", 0)), p.get("method_options"))
    used = env.cache.touched[n_before:]
    if used or key not in _USED:  # nothing touched: prepared earlier in this process, keep that record
        _USED[key] = list(dict.fromkeys(used))
    return key


def _prepare(spec: RunSpec, cell: Cell, threads: int) -> ArtifactFiles:
    """Prepare the cell's method once and return the files of every artifact it used.

    Every artifact it used, not only those this process built: when a node is lost, Ray re-runs a
    prepare task whose result lived there, possibly in a worker that prepared (or loaded) the method
    before; shipping only fresh builds would then ship nothing and every node would train it again."""
    _set_threads(threads)
    spec = _node_local(spec)
    key = _prepare_here(spec, cell)
    out: ArtifactFiles = {}
    for d in map(Path, _USED[key]):
        out[d.name] = {f.name: f.read_bytes() for f in d.iterdir() if f.is_file() and not f.name.startswith(".")}
    return out


def _install_artifacts(spec: RunSpec, artifacts: ArtifactFiles) -> None:
    """Write shipped artifact files into this node's cache unless they are there already."""
    for name, files in artifacts.items():
        d = spec.cache_dir / name
        if (d / "artifact.pt").exists():
            continue
        d.mkdir(parents=True, exist_ok=True)
        for fname, data in sorted(files.items(), key=lambda kv: kv[0] == "artifact.pt"):  # artifact last
            tmp = d / f".{fname}.tmp{os.getpid()}"
            tmp.write_bytes(data)
            os.replace(tmp, d / fname)


def _run_cell(spec: RunSpec, cell: Cell, threads: int, artifacts: ArtifactFiles | None,
              cell_fn: CellFn | None) -> dict:
    """One cell on a worker; `artifacts` is the resolved output of its group's prepare task.

    The result also names the node that ran it and how many artifacts this task had to train itself
    (0 when its group's prepare task shipped them), so a multi-node run can be audited."""
    _set_threads(threads)
    spec = _node_local(spec)
    cache = env_for(spec).cache
    n_built = len(cache.built)
    if artifacts is not None:  # a member of a group with a prepare task: load its state the same way
        _install_artifacts(spec, artifacts)
        _prepare_here(spec, cell)  # so a later re-run of that prepare here can ship what it used
    result = (cell_fn or execute_recorded)(spec, cell)
    result["node"] = ray.get_runtime_context().get_node_id()
    result["artifacts_built_by_cell"] = len(env_for(spec).cache.built) - n_built
    return result


_prepare_remote = ray.remote(_prepare)
_run_cell_remote = ray.remote(_run_cell)


# ------------------------------------------------------------------------------------------ driver


def _cell_memory_bytes(spec: RunSpec, concurrency: int) -> int:
    """Declared memory per task, capped so `concurrency` tasks always fit the cluster's memory."""
    want = int(spec.profile.get("executor", {}).get("cell_memory_mb", DEFAULT_CELL_MEMORY_MB)) * 2**20
    total = float(ray.cluster_resources().get("memory", 0.0))
    return max(2**20, min(want, int(0.9 * total / max(1, concurrency)))) if total else want


def run_ray(spec: RunSpec, cells: list[Cell], workers: int | None = None, ray_address: str | None = None,
            cell_fn: CellFn | None = None) -> Iterator[tuple[Cell, dict]]:
    """Run `cells` as Ray tasks; yield `(cell, result)` as each finishes.

    `workers` is the number of cells run at once (default: one per cluster CPU); each cell is
    declared to need `cluster CPUs // workers` CPUs and gets that many torch threads, so cells
    never oversubscribe the cores. A local cluster we start gets every core. With `spec.threads`
    set (--threads) every cell gets exactly that many. `cell_fn` replaces `execute_recorded`
    (tests use it to kill a worker mid-cell).
    """
    if not cells:
        return
    cluster = _connect(ray_address, spec.device)
    pending: dict[ray.ObjectRef, Cell] = {}
    preps: list[ray.ObjectRef] = []
    try:
        cpus_total = max(1, int(ray.cluster_resources().get("CPU", 1)))
        if spec.threads:  # fixed by --threads: as many cells at once as fit
            threads = spec.threads
            concurrency = max(1, min(workers or cpus_total // threads, len(cells)))
        else:
            concurrency = max(1, min(workers or cpus_total, cpus_total, len(cells)))
            threads = max(1, cpus_total // concurrency)
        gpu = 1 if spec.device.startswith("cuda") else 0
        if gpu and not ray.cluster_resources().get("GPU"):  # else every cell waits forever, unschedulable
            raise UsageError("--device cuda, but the Ray cluster has no GPU; pass --device cpu or join a cluster with GPUs")
        opts = {"num_cpus": min(threads, cpus_total), "num_gpus": gpu, "memory": _cell_memory_bytes(spec, concurrency),
                "max_retries": MAX_RETRIES, "retry_exceptions": False}
        groups: dict[Hashable, list[Cell]] = {}
        for c in cells:
            groups.setdefault(artifact_key(spec, c), []).append(c)
        for members in groups.values():
            prep = None
            if len(members) > 1:
                prep = _prepare_remote.options(name=f"prepare:{members[0].method}", **opts).remote(
                    spec, members[0], threads)
                preps.append(prep)
            for c in members:
                ref = _run_cell_remote.options(name=c.label()[:120], **opts).remote(spec, c, threads, prep, cell_fn)
                pending[ref] = c
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            ref = done[0]
            cell = pending.pop(ref)
            yield cell, ray.get(ref)  # a failed cell raises here, as the original exception type
    finally:
        for ref in [*pending, *preps]:
            if ray.is_initialized():
                ray.cancel(ref, force=True)
        if cluster is not None:
            cluster.stop()
        elif ray_address:
            ray.shutdown()  # disconnect this driver; the cluster keeps running
