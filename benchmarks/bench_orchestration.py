"""Prefect's cost: one tiny stage (toycity `synthesize`) run directly vs through its Prefect flow,
side by side in one process. Reports the overhead as a share of wall time and per shard task.

    python benchmarks/bench_orchestration.py --images 64 --per-shard 4 --repeats 3
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from micro_profile import write_config


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--per-shard", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    from clouds.config import load_config
    from pipelines.stage_flows import prompts_flow, synthesize_flow
    from stages.synthesize.stage import prepare_synthesize

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        config = write_config(tmp, args.images, args.per_shard)
        cfg = load_config(config)
        root = str(tmp / "runs")
        for r in range(args.repeats):  # prompts for every run, outside the timing (also starts Prefect once)
            prompts_flow(config=str(config), root=root, run=f"flow-{r}")
        prompts = f"{root}/flow-0/prompts"
        direct, flowed, reused = [], [], []
        for r in range(args.repeats):
            t = time.perf_counter()
            prepare_synthesize(prompts, str(tmp / f"direct-{r}"), cfg.synthesize, cfg.run.seed,
                               cfg.artifacts.shard_max_samples, device="cpu").run_all()
            direct.append(time.perf_counter() - t)
            t = time.perf_counter()
            synthesize_flow(config=str(config), root=root, run=f"flow-{r}")
            flowed.append(time.perf_counter() - t)
        for r in range(args.repeats):  # a flow whose output is up to date: the fixed cost of a flow run
            t = time.perf_counter()
            synthesize_flow(config=str(config), root=root, run=f"flow-{r}")
            reused.append(time.perf_counter() - t)
    shards = -(-args.images // args.per_shard)
    d, f, e = min(direct), min(flowed), min(reused)
    print(f"synthesize (toycity), {args.images} images in {shards} shards; best of {args.repeats}")
    print(f"direct stage call:           {d:8.3f} s")
    print(f"through its Prefect flow:    {f:8.3f} s   ratio flow/direct {f / d:.3f}")
    print(f"overhead share of wall time: {100 * (f - d) / f:8.1f} %")
    print(f"flow run with nothing to do: {e:8.3f} s   (fixed cost of a flow run)")
    print(f"per-shard task overhead:     {1000 * max(f - d - e, 0.0) / shards:8.1f} ms")


if __name__ == "__main__":
    main()
