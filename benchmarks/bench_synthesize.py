"""Diffusion throughput: batched prompts (this project) vs one image per pipeline call (the reference),
side by side in one run on the same images, with the largest pixel difference between the two.

    python benchmarks/bench_synthesize.py --images 16 --batch-size 8 --steps 4 --repeats 3
    python benchmarks/bench_synthesize.py --model stabilityai/stable-diffusion-2 --height 768 --width 768 \
        --steps 50 --images 32 --batch-size 8          # real SD2, on a GPU

Without --model a tiny random SD pipeline is written to a temporary folder and loaded from there.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import torch

from clouds.config import DiffusersSynthesize
from stages.synthesize import build_backend, image_seed, to_uint8
from stages.synthesize.tiny import save_tiny_sd_pipeline

PROMPTS = [
    "A photo of a busy city street with parked cars at night.",
    "A picture of a wide avenue with cyclists in heavy rain.",
    "A snapshot of a downtown intersection with buses on a foggy morning.",
    "A photo of a narrow street with pedestrians crossing in the snow.",
]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(backend, prompts: list[str], seeds: list[int], batch: int) -> tuple[float, list[np.ndarray]]:
    images: list[np.ndarray] = []
    sync(backend.device)
    start = time.perf_counter()
    for i in range(0, len(prompts), batch):
        images += [to_uint8(r.image) for r in backend.render(prompts[i:i + batch], seeds[i:i + batch])]
    sync(backend.device)
    return time.perf_counter() - start, images


def run(args: argparse.Namespace, model: str) -> None:
    cfg = DiffusersSynthesize(
        model=model, height=args.height, width=args.width, steps=args.steps,
        dtype=args.dtype, batch_size=args.batch_size,
    )
    backend = build_backend(cfg, args.device)
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(args.images)]
    seeds = [image_seed(0, i) for i in range(args.images)]
    timed(backend, prompts[:2], seeds[:2], 2)  # warm-up: kernels, allocator, lazy init
    t_single = t_batch = float("inf")
    for _ in range(args.repeats):  # interleaved, best of N: both modes see the same machine load
        t, single = timed(backend, prompts, seeds, 1)
        t_single = min(t_single, t)
        t, batched = timed(backend, prompts, seeds, args.batch_size)
        t_batch = min(t_batch, t)
    diff = max(int(np.abs(a.astype(int) - b.astype(int)).max()) for a, b in zip(single, batched, strict=True))
    print(f"{args.images} images {args.height}x{args.width}, {args.steps} steps, {model}, "
          f"device {backend.device}, {backend.dtype}, torch threads {torch.get_num_threads()}, best of {args.repeats}")
    print(f"{'':26s}{'images/s':>10s}{'s/image':>10s}")
    print(f"{'one image per call':26s}{args.images / t_single:10.2f}{t_single / args.images:10.3f}")
    print(f"{f'batches of {args.batch_size}':26s}{args.images / t_batch:10.2f}{t_batch / args.images:10.3f}")
    print(f"speed-up batched / single: {t_single / t_batch:.2f}x; "
          f"max pixel difference between the two: {diff} (of 255)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="diffusers repo id or folder (default: a tiny random pipeline)")
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--height", type=int, default=64)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--dtype", default="float16", choices=["float16", "bfloat16", "float32"],
                    help="used on GPU; CPU always runs float32")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    if args.model:
        run(args, args.model)
        return
    with tempfile.TemporaryDirectory() as tmp:
        run(args, str(save_tiny_sd_pipeline(tmp)))


if __name__ == "__main__":
    main()
