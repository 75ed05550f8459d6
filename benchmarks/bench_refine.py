"""SAM refinement as the stage runs it vs a per-component loop (one SamPredictor call per component).

Three schedules, all on the same image embedding, seeded prompts and composition:
- batched: the stage's path, one decoder call per image, best mask picked before upsampling;
- all_masks: one plain `predict_torch` call per image (every one of SAM's M masks upsampled);
- loop: one `predict_torch` call per component, as a naive implementation does.
Outputs are compared: float32 GEMM results depend on the batch size in the last bit (MKL picks kernels
by shape), so a pixel whose SAM logit sits exactly on the threshold can flip between schedules. The
benchmark asserts that batched and all_masks labels are identical, that batched and loop pick the same
mask for every component, and that their masks differ only where |logit| < TIE_TOLERANCE; it prints how
many label pixels differ (usually 0). Each image keeps its best time over the repeats.

    python benchmarks/bench_refine.py                         # tiny random SAM, 512x1024 images
    python benchmarks/bench_refine.py --sam vit_b --size 256x512 --images 2 --repeats 1
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from clouds.config import SamRefine
from clouds.device import resolve_device
from models.sam import build_sam
from stages.refine.algorithm import best_masks, finish, plan, refine_with_sam
from stages.refine.components import Prompts, sample_rng
from stages.refine.predictor import SamMaskPredictor

REFERENCE_FRACTION = 5000 / (768 * 768)  # the reference's 5000 px at 768x768, as a share of the image
TIE_TOLERANCE = 1e-4


def synthetic_scene(
    height: int, width: int, regions: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """A Voronoi 'street scene': random regions with random classes, and an image coloured by region."""
    centres = rng.uniform((0, 0), (height, width), size=(regions, 2))
    yy, xx = np.mgrid[0:height, 0:width]
    nearest = np.argmin((yy[..., None] - centres[:, 0]) ** 2 + (xx[..., None] - centres[:, 1]) ** 2, axis=-1)
    classes = rng.integers(0, 19, size=regions).astype(np.uint8)
    colours = rng.integers(0, 256, size=(regions, 3)).astype(np.uint8)
    image = colours[nearest] + rng.integers(0, 8, size=(height, width, 3)).astype(np.uint8)
    return image, classes[nearest]


def per_component(
    image: np.ndarray,
    teacher: np.ndarray,
    predictor: SamMaskPredictor,
    cfg: SamRefine,
    rng: np.random.Generator,
) -> np.ndarray:
    """The naive schedule: same embedding and prompts, but one SamPredictor.predict_torch per component,
    each upsampling all of SAM's masks before the best is picked."""
    prompts = plan(teacher, cfg, rng)
    if prompts.num_components == 0:
        return teacher.copy()
    predictor.set_image(image)
    coords, labels = predictor.prompts_to_torch(prompts.points, prompts.labels)
    chosen = []
    with torch.inference_mode():
        for k in range(prompts.num_components):
            masks, iou, _ = predictor.predictor.predict_torch(coords[k : k + 1], labels[k : k + 1])
            chosen.append(best_masks(masks.cpu().numpy(), iou.cpu().numpy())[0])
    return finish(teacher, prompts, np.stack(chosen))[0]


def check_float32_ties(predictor: SamMaskPredictor, image: np.ndarray, prompts: Prompts) -> int:
    """Assert the schedules agree but for threshold ties; returns how many mask pixels were ties."""
    p = predictor.predictor
    predictor.set_image(image)
    coords, labels = predictor.prompts_to_torch(prompts.points, prompts.labels)
    ties = 0
    with torch.inference_mode():
        logits, iou, _ = p.predict_torch(coords, labels, multimask_output=True, return_logits=True)
        for k in range(prompts.num_components):
            one_logits, one_iou, _ = p.predict_torch(coords[k : k + 1], labels[k : k + 1], return_logits=True)
            best = int(iou[k].argmax())
            if int(one_iou[0].argmax()) != best:
                raise AssertionError(f"component {k}: the schedules pick different masks")
            a, b = logits[k, best], one_logits[0, best]
            differ = (a > p.model.mask_threshold) != (b > p.model.mask_threshold)
            if (a[differ].abs() >= TIE_TOLERANCE).any() or (b[differ].abs() >= TIE_TOLERANCE).any():
                raise AssertionError(f"component {k}: masks differ at pixels that are not threshold ties")
            ties += int(differ.sum())
    return ties


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sam", choices=["tiny", "vit_b"], default="tiny", help="random-weight SAM to time")
    parser.add_argument(
        "--size", default=None, help="HxW of the images (default 512x1024 tiny, 256x512 vit_b)"
    )
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--regions", type=int, default=60, help="Voronoi regions per image (components)")
    parser.add_argument("--repeats", type=int, default=5, help="timed passes (each image keeps its best)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    height, width = map(int, (args.size or ("512x1024" if args.sam == "tiny" else "256x512")).split("x"))

    torch.manual_seed(args.seed)
    device = resolve_device(args.device)
    sam = build_sam(args.sam).to(device).eval().requires_grad_(False)
    predictor = SamMaskPredictor(sam, multimask=True)
    cfg = SamRefine(model_type=args.sam, min_area_fraction=REFERENCE_FRACTION)
    rng = np.random.default_rng(args.seed)
    scenes = [synthetic_scene(height, width, args.regions, rng) for _ in range(args.images)]
    keys = [f"bench_{i}" for i in range(args.images)]

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    every_mask = SamMaskPredictor(sam, multimask=True, select_best=False)  # predict_torch unchanged
    schedules = {
        "batched": lambda image, teacher, key: refine_with_sam(
            image, teacher, predictor, cfg, sample_rng(args.seed, key), key
        )[0],
        "all_masks": lambda image, teacher, key: refine_with_sam(
            image, teacher, every_mask, cfg, sample_rng(args.seed, key), key
        )[0],
        "loop": lambda image, teacher, key: per_component(
            image, teacher, predictor, cfg, sample_rng(args.seed, key)
        ),
    }

    def timed(name: str, key: str, image: np.ndarray, teacher: np.ndarray) -> tuple[float, np.ndarray]:
        sync()
        start = time.perf_counter()
        label = schedules[name](image, teacher, key)
        sync()
        return time.perf_counter() - start, label

    # the schedules alternate image by image, and each image keeps its best time: on a shared machine
    # this is what is least disturbed by other processes
    best = {name: [float("inf")] * len(scenes) for name in schedules}
    outputs: dict[str, list[np.ndarray]] = {}
    timed("batched", keys[0], *scenes[0])  # warm-up: allocator, kernels
    for _ in range(args.repeats):
        for i, (key, (image, teacher)) in enumerate(zip(keys, scenes, strict=True)):
            for name in schedules:
                elapsed, label = timed(name, key, image, teacher)
                best[name][i] = min(best[name][i], elapsed)
                outputs.setdefault(name, [None] * len(scenes))[i] = label
    kept = [
        plan(teacher, cfg, sample_rng(args.seed, key)).num_components
        for key, (_, teacher) in zip(keys, scenes, strict=True)
    ]
    for key, a, c in zip(keys, outputs["batched"], outputs["all_masks"], strict=True):
        if not np.array_equal(a, c):
            raise AssertionError(f"{key}: picking the mask before upsampling changed the label")
    differing = sum(int((a != c).sum()) for a, c in zip(outputs["batched"], outputs["loop"], strict=True))
    ties = sum(
        check_float32_ties(predictor, image, plan(teacher, cfg, sample_rng(args.seed, key)))
        for key, (image, teacher) in zip(keys, scenes, strict=True)
    )
    if differing > ties:
        raise AssertionError(
            f"{differing} label pixels differ between schedules but only {ties} are threshold ties"
        )

    # the embedding alone, to show what part of an image's time the prompt schedule can change
    embed_times = []
    for _ in range(args.repeats):
        for image, _ in scenes:
            sync()
            start = time.perf_counter()
            predictor.set_image(image)
            sync()
            embed_times.append(time.perf_counter() - start)
    t_embed = min(embed_times)  # a lower bound, subtracted from both schedules

    b, all_masks, loop = (statistics.mean(best[name]) for name in ("batched", "all_masks", "loop"))
    print(
        f"SAM {args.sam} (random weights) on {device}, {height}x{width}, {args.images} images, "
        f"components kept per image {statistics.mean(kept):.1f} (min {min(kept)}, max {max(kept)}), "
        f"torch threads {torch.get_num_threads()}"
    )
    print(f"  image embedding (set_image)   {t_embed * 1e3:9.1f} ms")
    print(f"  batched, 1 call per image     {b * 1e3:9.1f} ms/image")
    print(f"  batched, all M masks upsampled{all_masks * 1e3:9.1f} ms/image  (plain predict_torch)")
    print(f"  loop, 1 call per component    {loop * 1e3:9.1f} ms/image")
    print(f"  speed-up (whole image)        {loop / b:9.2f}x")
    print(f"  speed-up (prompt decoding)    {(loop - t_embed) / max(b - t_embed, 1e-9):9.2f}x")
    print(f"  speed-up from batching alone  {loop / all_masks:9.2f}x  (both upsample all M masks)")
    print(
        f"  float32 labels: {differing} differing pixels of {len(scenes) * height * width}; "
        f"mask choices identical, {ties} mask pixels are threshold ties (|logit| < {TIE_TOLERANCE})"
    )


if __name__ == "__main__":
    main()
