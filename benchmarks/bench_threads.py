"""Training steps per second at 1 vs N torch threads, on an idle machine and beside CPU burners.

`run.num_threads` sets torch's intra-op threads (and OpenMP/BLAS/OpenCV) in every process the project
starts. Its default must be what is fastest where users run the demo: a small, often busy machine. This
times the demo's training step (tiny segmenter, batch 8 at 64x128, forward + backward + AdamW) with the
thread counts interleaved round by round, so background noise hits all of them alike, first with nothing
else running, then with `--burners` processes spinning on the CPU (other users' jobs).

    python benchmarks/bench_threads.py --threads 1 2 --steps 10 --repeats 3 --burners 2
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import time
from collections.abc import Callable

import torch

from models.build import build_segmenter, tiny_model_config


def _burn() -> None:
    while True:
        pass


def train_step_fn(batch: int, height: int, width: int) -> Callable[[], None]:
    torch.manual_seed(0)
    model = build_segmenter(tiny_model_config())
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    images = torch.rand(batch, 3, height, width) * 255
    labels = torch.randint(0, 19, (batch, height, width))

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        model(images, labels)["loss"].backward()
        optimizer.step()

    return step


def best_steps_per_s(step: Callable[[], None], threads: list[int], steps: int, repeats: int) -> dict[int, float]:
    """Best steps/s of each thread count over `repeats` rounds, interleaved within each round."""
    for n in threads:  # warm-up: allocator, oneDNN kernels
        torch.set_num_threads(n)
        step()
    best = dict.fromkeys(threads, 0.0)
    for _ in range(repeats):
        for n in threads:
            torch.set_num_threads(n)
            start = time.perf_counter()
            for _ in range(steps):
                step()
            best[n] = max(best[n], steps / (time.perf_counter() - start))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--steps", type=int, default=10, help="training steps per timing")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--burners", type=int, default=os.cpu_count() or 2, help="CPU-spinning processes")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, nargs=2, default=[64, 128], metavar=("H", "W"))
    args = parser.parse_args()

    step = train_step_fn(args.batch, *args.size)
    print(f"tiny segmenter train step, batch {args.batch} at {args.size[0]}x{args.size[1]}, "
          f"{os.cpu_count()} cores, best of {args.repeats} x {args.steps} steps")
    results = {"idle": best_steps_per_s(step, args.threads, args.steps, args.repeats)}
    burners = [mp.Process(target=_burn, daemon=True) for _ in range(args.burners)]
    for p in burners:
        p.start()
    try:
        results[f"{args.burners} burners"] = best_steps_per_s(step, args.threads, args.steps, args.repeats)
    finally:
        for p in burners:
            p.terminate()
            p.join()
    base = args.threads[0]
    for load, per_threads in results.items():
        cells = "   ".join(f"{n} thr {v:6.2f} it/s" for n, v in per_threads.items())
        ratios = "   ".join(f"{n}/{base} thr {per_threads[n] / per_threads[base]:.2f}x" for n in args.threads[1:])
        print(f"{load:>10}:   {cells}   {ratios}")


if __name__ == "__main__":
    main()
