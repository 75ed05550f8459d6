"""Training step time and peak memory per backbone profile (issue 16), random weights, for when a GPU is lent.

For each profile the segmenter is built from the profile's `model` section with `pretrained: null` (nothing
to download), then timed over --steps training steps after --warmup: forward (loss) + backward + AdamW step
over the trainable parameters, at the profile's crop (or --size), batch --batch. Reported per profile:
build seconds, trainable parameters (backbone / decoder), median and mean seconds per step, images per
second, and peak memory (CUDA: max_memory_allocated; CPU: the process's peak RSS, which only grows).

    python benchmarks/bench_backbones_gpu.py                      # GPU: the three real-size profiles
    python benchmarks/bench_backbones_gpu.py --tiny --device cpu  # CPU check: tiny towers at 64x128
    python benchmarks/bench_backbones_gpu.py --profiles configs/gta5-dinov2-rein.yaml --batch 2 --dtype bf16

Profiles are measured one after another in this process; --json prints one JSON line per profile.
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import statistics
import sys
import time
from pathlib import Path

import torch

from clouds.config import load_config
from clouds.config.model import ModelConfig
from models.build import build_segmenter, tiny_model_config

ROOT = Path(__file__).resolve().parent.parent
REAL_PROFILES = ("configs/gta5.yaml", "configs/gta5-dinov2-rein.yaml", "configs/gta5-eva02-lora.yaml")
TINY_PROFILES: dict[str, ModelConfig] = {
    "tiny-convnext (open_clip, frozen)": tiny_model_config(),
    "tiny-vit + rein": tiny_model_config("clouds-tiny-vit", library="timm", peft={"kind": "rein"}),
    "tiny-eva + lora": tiny_model_config("clouds-tiny-eva", library="timm", peft={"kind": "lora"}),
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _real(profile: str) -> tuple[ModelConfig, tuple[int, int]]:
    cfg = load_config(ROOT / profile, overrides=["model.backbone.pretrained=null"])
    return cfg.model, tuple(cfg.train.crop_size)


def measure(name: str, model_cfg: ModelConfig, size: tuple[int, int], args: argparse.Namespace) -> dict:
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    torch.manual_seed(0)
    start = time.perf_counter()
    model = build_segmenter(model_cfg, device=device)
    build_s = time.perf_counter() - start
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-5)
    images = torch.rand(args.batch, 3, *size, device=device) * 255
    labels = torch.randint(0, 19, (args.batch, *size), device=device)
    dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[args.dtype]
    times = []
    for step in range(args.warmup + args.steps):
        _sync(device)
        t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss = model(images, labels)["loss"]
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        _sync(device)
        if step >= args.warmup:
            times.append(time.perf_counter() - t0)
    result = {
        "profile": name, "device": str(device), "dtype": args.dtype, "batch": args.batch, "size": list(size),
        "backbone": f"{model_cfg.backbone.library}:{model_cfg.backbone.name}",
        "peft": model_cfg.backbone.peft.kind, "build_s": round(build_s, 2),
        "trainable_backbone": sum(p.numel() for p in model.backbone.parameters() if p.requires_grad),
        "trainable_decoder": sum(p.numel() for p in model.decoder.parameters() if p.requires_grad),
        "frozen": sum(p.numel() for p in model.parameters() if not p.requires_grad),
        "step_s_median": round(statistics.median(times), 4), "step_s_mean": round(statistics.fmean(times), 4),
        "img_per_s": round(args.batch / statistics.median(times), 2), "peak_mb": round(_peak_mb(device), 1),
        "loss": round(float(loss.detach()), 4),
    }
    del model, optimizer, params, loss
    gc.collect()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profiles", nargs="*", default=list(REAL_PROFILES), help="profile YAML files")
    parser.add_argument("--tiny", action="store_true", help="the tiny towers at 64x128 instead (CPU check)")
    parser.add_argument("--size", type=int, nargs=2, default=None, metavar=("H", "W"),
                        help="input size (default: the profile's train.crop_size; 64 128 with --tiny)")
    parser.add_argument("--batch", type=int, default=2, help="images per step (per GPU: the recipes use 2-4)")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--dtype", choices=["fp32", "bf16", "fp16"], default="fp32", help="autocast dtype")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads on CPU")
    parser.add_argument("--json", action="store_true", help="one JSON line per profile instead of a table")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.tiny:
        runs = [(n, c, tuple(args.size or (64, 128))) for n, c in TINY_PROFILES.items()]
    else:
        runs = []
        for profile in args.profiles:
            cfg, crop = _real(profile)
            runs.append((Path(profile).stem, cfg, tuple(args.size or crop)))
    for name, cfg, size in runs:
        try:
            result = measure(name, cfg, size, args)
        except torch.OutOfMemoryError as err:
            result = {"profile": name, "error": f"out of memory: {str(err).splitlines()[0]}"}
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        if args.json:
            sys.stdout.write(json.dumps(result) + "\n")
        elif "error" in result:
            sys.stdout.write(f"{name:<36} {result['error']}\n")
        else:
            sys.stdout.write(
                f"{name:<36} {result['device']} {result['dtype']} b{result['batch']} {result['size'][0]}x"
                f"{result['size'][1]}: {result['step_s_median']:.3f} s/step ({result['img_per_s']} img/s), peak "
                f"{result['peak_mb']:.0f} MB, trainable backbone {result['trainable_backbone']:,} decoder "
                f"{result['trainable_decoder']:,}, frozen {result['frozen']:,}, build {result['build_s']} s\n"
            )
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
