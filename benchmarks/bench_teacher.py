"""Teacher inference throughput: batched `predict_scores` (inference_mode) vs a naive per-image loop.

The pseudo-label stage runs the EMA teacher over every generated image each round, so this is the
segmenter's hot inference path. Three ways are timed on the same random images and weights:
  naive    one image at a time, autograd on (what a training-style forward does by default)
  looped   one image at a time, under inference_mode (isolates the batching gain)
  batched  `predict_scores` on batches of --batch images under inference_mode (what the stage does)
and the naive/batched ratio is printed. The models have random weights (no downloads): `--model tiny`
is the test-sized model; `--model reference` builds convnext_large_d_320 + the reference decoder.

    python benchmarks/bench_teacher.py --model tiny --images 16 --batch 8
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable

import torch

from clouds.config.model import BackboneConfig, ModelConfig
from models.build import build_segmenter, tiny_model_config
from models.ema import make_teacher
from models.segmenter import Segmenter


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time_round_robin(
    ways: dict[str, Callable[[], None]], device: torch.device, repeats: int
) -> dict[str, float]:
    """Best wall-clock seconds of each way over `repeats` rounds, the ways interleaved within every round so
    that load from other processes on a shared machine hits all of them alike (one warm-up call each)."""
    for fn in ways.values():
        fn()
    _sync(device)
    best = dict.fromkeys(ways, float("inf"))
    for _ in range(repeats):
        for name, fn in ways.items():
            start = time.perf_counter()
            fn()
            _sync(device)
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def build_teacher(kind: str, device: torch.device) -> Segmenter:
    if kind == "tiny":
        cfg = tiny_model_config()
    else:
        cfg = ModelConfig(backbone=BackboneConfig(pretrained=None))
    torch.manual_seed(0)
    return make_teacher(build_segmenter(cfg, device=device))


def run(args: argparse.Namespace) -> dict[str, float | int | str]:
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    teacher = build_teacher(args.model, device)
    g = torch.Generator().manual_seed(0)
    images = (torch.rand(args.images, 3, args.height, args.width, generator=g) * 255).to(device)

    def naive() -> None:
        for i in range(len(images)):
            teacher.semantic_scores(images[i : i + 1]).argmax(1)

    def looped() -> None:
        with torch.inference_mode():
            for i in range(len(images)):
                teacher.predict_scores(images[i : i + 1]).argmax(1)

    def batched() -> None:
        for start in range(0, len(images), args.batch):
            teacher.predict(images[start : start + args.batch])

    with torch.inference_mode():
        same = torch.allclose(
            teacher.predict_scores(images[:2]),
            torch.cat([teacher.predict_scores(images[i : i + 1]) for i in range(2)]),
            atol=1e-4,
        )
    best = _time_round_robin({"naive": naive, "looped": looped, "batched": batched}, device, args.repeats)
    t_naive, t_looped, t_batched = best["naive"], best["looped"], best["batched"]
    return {
        "model": args.model,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "images": args.images,
        "size": f"{args.height}x{args.width}",
        "batch": args.batch,
        "naive_s": round(t_naive, 4),
        "looped_inference_mode_s": round(t_looped, 4),
        "batched_s": round(t_batched, 4),
        "naive_img_per_s": round(args.images / t_naive, 2),
        "batched_img_per_s": round(args.images / t_batched, 2),
        "speedup_naive_over_batched": round(t_naive / t_batched, 2),
        "speedup_looped_over_batched": round(t_looped / t_batched, 2),
        "batched_matches_per_image": bool(same),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", choices=["tiny", "reference"], default="tiny")
    parser.add_argument("--images", type=int, default=16, help="images per timed pass")
    parser.add_argument("--batch", type=int, default=8, help="batch size of the batched path")
    parser.add_argument("--height", type=int, default=128)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds (best per way is kept)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch default)")
    parser.add_argument("--json", action="store_true", help="print one JSON line instead of a table")
    args = parser.parse_args(argv)
    result = run(args)
    if args.json:
        sys.stdout.write(json.dumps(result) + "\n")
        return 0
    rows = [
        ("naive (per image, autograd on)", result["naive_s"]),
        ("per image, inference_mode", result["looped_inference_mode_s"]),
        (f"batched x{args.batch}, inference_mode", result["batched_s"]),
    ]
    sys.stdout.write(
        f"teacher inference: model={result['model']} device={result['device']} threads={result['threads']} "
        f"{result['images']} images {result['size']}\n"
    )
    for name, seconds in rows:
        sys.stdout.write(f"  {name:<36} {seconds:9.4f} s  {args.images / seconds:8.2f} img/s\n")
    sys.stdout.write(
        f"  speedup naive/batched: {result['speedup_naive_over_batched']}x "
        f"(per-image inference_mode/batched: {result['speedup_looped_over_batched']}x); "
        f"batched == per-image: {result['batched_matches_per_image']}\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
