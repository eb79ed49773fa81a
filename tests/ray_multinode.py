"""A grid on a multi-node Ray test cluster, one node removed mid-grid (run by test_ray_multinode.py).

Run as a script in its own process (`python tests/ray_multinode.py PROFILE RESULTS NODES_ROOT`) so
its cluster never meets the single-node cluster the other Ray tests share in the pytest process.

`ray.cluster_utils.Cluster` starts a head node (no CPUs: the driver lives there, no cell runs
there) and three worker nodes of one CPU each, every one a separate raylet with its own object
store, all on 127.0.0.1. Each node gets its own artifact folder (BENCH_NODE_ARTIFACT_DIR), so nodes
share no filesystem, as on separate machines: a cell runs with the artifact its group's prepare task
built on whichever node ran it. After the first result arrives one worker node is removed (its
raylet and workers killed); Ray retries its tasks elsewhere and rebuilds lost objects.

Prints one JSON line: the exit code of `python -m bench run`, the removed node and how many cells
were still to come when it was removed.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORKER_NODES = 3


def main(profile: str, results: str, nodes_root: str) -> int:
    sys.path.insert(0, str(ROOT))
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    import ray
    from ray.cluster_utils import Cluster

    import bench.ray_executor as rx
    from bench import cli

    rx._use_private_token()
    temp_dir = tempfile.mkdtemp(prefix="ray-mn-", dir="/tmp")  # short: unix socket paths are capped
    os.environ["RAY_TMPDIR"] = temp_dir  # sessions and the "current cluster" file: nothing under /tmp/ray
    node = {"node_ip_address": "127.0.0.1", "object_store_memory": 80 * 2**20}
    cluster = Cluster(initialize_head=True, head_node_args={
        **node, "num_cpus": 0, "include_dashboard": False,
        "env_vars": {rx.NODE_ARTIFACT_ENV: str(Path(nodes_root) / "head")}})
    summary: dict = {}
    try:
        workers = [cluster.add_node(**node, num_cpus=1, env_vars={rx.NODE_ARTIFACT_ENV: str(Path(nodes_root) / f"node{i}")})
                   for i in range(WORKER_NODES)]
        cluster.wait_for_nodes()
        cluster.connect()
        victim = workers[0]
        real_run_ray = rx.run_ray

        def run_ray_losing_a_node(spec, cells, *args, **kwargs):
            for i, item in enumerate(real_run_ray(spec, cells, *args, **kwargs)):
                if i == 0:
                    summary["removed_node"] = victim.node_id
                    summary["cells_left_at_removal"] = len(cells) - 1
                    cluster.remove_node(victim, allow_graceful=False)
                yield item

        rx.run_ray = run_ray_losing_a_node
        summary["nodes"] = [n.node_id for n in workers]
        summary["rc"] = cli.main(["run", "--method", "protonet", "--experiment", "table3", "--dataset", "synthetic",
                                  "--profile", profile, "--results-dir", results, "--executor", "ray",
                                  "--threads", "1", "--no-report"])
    finally:
        ray.shutdown()
        cluster.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
