"""Shard tasks on Ray vs Prefect's thread pool: one stage (toycity `synthesize`) run through its flow
both ways, side by side in one process, on a local Ray cluster of a head and `--workers` one-CPU nodes.
The Ray figure includes everything a user pays: per-stage subflow, task shipping, worker-side rebuild.

    python benchmarks/bench_ray.py --images 128 --per-shard 16 --workers 2 --repeats 3
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from micro_profile import write_config


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=128)
    ap.add_argument("--per-shard", type=int, default=16)
    ap.add_argument("--workers", type=int, default=2, help="Ray worker nodes, one CPU each")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    import ray
    from ray.cluster_utils import Cluster

    from artifacts import open_artifact
    from pipelines.stage_flows import prompts_flow, synthesize_flow

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    for _ in range(args.workers):
        cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    ray_overrides = ["executor.kind=ray", f"executor.address={cluster.address}"]
    try:
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            config = str(write_config(tmp, args.images, args.per_shard))
            root = str(tmp / "runs")
            runs = [f"{mode}-{r}" for r in range(args.repeats + 1) for mode in ("local", "ray")]
            for run in runs:  # prompts outside the timing (also starts Prefect once)
                prompts_flow(config=config, root=root, run=run)
            times: dict[str, list[float]] = {"local": [], "ray": []}
            for r in range(args.repeats + 1):  # repeat 0 warms both paths up (Ray: worker processes, imports)
                for mode in ("local", "ray"):
                    t = time.perf_counter()
                    synthesize_flow(config=config, root=root, run=f"{mode}-{r}",
                                    overrides=ray_overrides if mode == "ray" else None)
                    times[mode].append(time.perf_counter() - t)
            hashes = {open_artifact(f"{root}/{run}/synthesize").lineage["content_hash"] for run in runs}
    finally:
        ray.shutdown()
        cluster.shutdown()
    shards = -(-args.images // args.per_shard)
    local, remote = min(times["local"][1:]), min(times["ray"][1:])
    print(f"synthesize (toycity), {args.images} images in {shards} shards; best of {args.repeats} after a warm-up")
    print(f"Prefect thread pool (1 process): {local:8.3f} s")
    print(f"Ray, {args.workers} worker nodes:          {remote:8.3f} s   ratio ray/local {remote / local:.3f}")
    print(f"Ray first run (cold workers):    {times['ray'][0]:8.3f} s")
    print("all runs (s): " + ", ".join(f"{m} " + " ".join(f"{t:.3f}" for t in ts) for m, ts in times.items()))
    print(f"identical artifacts in all {len(runs)} runs: {len(hashes) == 1}")


if __name__ == "__main__":
    main()
