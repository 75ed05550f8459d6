"""How many shard tasks one process should run at once (`executor.local_workers`): the pseudo-label
stage through its flow with 1, 2, 4 workers and every shard at once (Prefect's thread pool unbounded,
the behaviour before the setting existed), interleaved in one process. Reports wall time and the peak
resident memory above the level at the start of each run (sampled every 5 ms from /proc).

    python benchmarks/bench_local_workers.py --images 64 --per-shard 4 --size 256 512 --repeats 3
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import yaml
from micro_profile import write_config

os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")  # one line per shard task would bury the table
PAGE = os.sysconf("SC_PAGE_SIZE")


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def peak_rss_above_start(fn: Callable[[], object]) -> tuple[float, int]:
    """Wall seconds of `fn()` and the highest RSS seen while it ran, minus RSS when it started."""
    start, peak, stop = rss(), [0], threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], rss())
            time.sleep(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t = time.perf_counter()
    fn()
    elapsed = time.perf_counter() - t
    stop.set()
    sampler.join()
    return elapsed, max(peak[0] - start, 0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--per-shard", type=int, default=4)
    ap.add_argument("--size", type=int, nargs=2, default=(256, 512), metavar=("H", "W"))
    ap.add_argument("--batch", type=int, default=4, help="pseudo_label.batch_size")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    from pipelines.clouds_flow import clouds
    from pipelines.stage_flows import pseudo_label_flow

    shards = -(-args.images // args.per_shard)
    settings = {"1": 1, "2": 2, "4": 4, f"all ({shards})": shards}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        config = write_config(tmp, args.images, args.per_shard)
        tree = yaml.safe_load(config.read_text())
        tree["synthesize"].update(height=args.size[0], width=args.size[1])
        tree["pseudo_label"]["batch_size"] = args.batch
        config.write_text(yaml.safe_dump(tree))
        root = str(tmp / "runs")
        for stage in ("prompts", "synthesize", "ingest"):  # outside the timing
            clouds(mode=stage, config=str(config), root=root)
        clouds(mode="train", config=str(config), root=root, round=0)
        pseudo_label_flow(config=str(config), root=root, round=1)  # warm-up: imports, allocator
        times: dict[str, list[float]] = {name: [] for name in settings}
        memory: dict[str, list[int]] = {name: [] for name in settings}
        for _ in range(args.repeats):
            for name, workers in settings.items():
                t, m = peak_rss_above_start(lambda w=workers: pseudo_label_flow(
                    config=str(config), root=root, round=1, force=True, overrides=[f"executor.local_workers={w}"]))
                times[name].append(t)
                memory[name].append(m)
    h, w = args.size
    print(f"pseudo-label (tiny teacher, CPU), {args.images} images {h}x{w} in {shards} shards, batch {args.batch}; "
          f"best of {args.repeats}, interleaved")
    base = min(times["1"])
    print(f"{'local_workers':>14} {'wall s':>8} {'vs 1':>6} {'peak MiB above start':>22}")
    for name in settings:
        print(f"{name:>14} {min(times[name]):8.3f} {min(times[name]) / base:6.2f} {max(memory[name]) / 2**20:22.0f}")


if __name__ == "__main__":
    main()
