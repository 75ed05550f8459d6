"""Linear probe of frozen CLIP image towers: how well their features transfer from sim to real / fog / night.

Issue 15 needs a cheap gate for pretrained image towers (`clouds pretrain` writes them, `model.backbone.
pretrained` loads them): before a tower costs a full self-training run, it should show that its frozen
features separate toycity's classes better than random weights do, and keep doing so off the source domain.
This measures exactly that and nothing else. Each tower is built as the project builds it (`create_clip` +
`build_backbone`, frozen); its four feature maps (strides 4/8/16/32) are upsampled bilinearly to stride 4,
concatenated and standardised per channel with train-set statistics; a per-pixel linear classifier (1x1 conv,
19 classes) is trained on them with cross-entropy on the demo's source set (toycity `sim`, seed 1, 160
images at 64x128), its logits upsampled to 64x128 for the loss and the prediction. It is scored on the demo's
four evaluation sets (configs/tiny.yaml: `sim` seed 5, `real` seed 2, `fog` seed 3, `night` seed 4, 40 images
each) with the project's metric code (stages/evaluate/metrics.py), mIoU averaged over the classes with
ground-truth pixels in each set (`gt-present`, as the demo's targets are scored); "target mean" is the mean
over real, fog and night. The data is rendered once and shared by every tower; features are computed once
per tower (the tower is frozen), so only the linear layer trains.

Probe training: Adam (lr 2e-2), minibatches of 16 images in a seeded order reshuffled every epoch, 150 steps
(15 epochs) by default. Measured on a random tower: 600 steps of batch 32 lower the training loss further
(0.52 -> 0.40) but move no mIoU by more than 0.8, while costing ~10x the time; the full-resolution
cross-entropy is most of a step. Three random towers (seeds differ) spread by 0.4 on the target mean and
2.5 on sim: differences of that size are noise, not transfer. Measured on 2 busy cores (`time`, imports
included): one tower 32 s, two 44 s, three 59 s; ~13 s of it is importing open_clip and ~10 s rendering the
320 images (done once), each tower adds ~11 s. Everything is seeded:
`random` is built right after `torch.manual_seed(--seed)`, and the probe's init and batch order are seeded
alike for every tower, so a rerun prints the same table.

    python benchmarks/bench_probe.py --towers random /path/to/tower.safetensors
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from clouds.config.model import BackboneConfig
from clouds.labels import IGNORE, NUM_CLASSES
from clouds.toycity.dataset import generate
from models.backbone import ClipBackbone, build_backbone, create_clip
from stages.evaluate.metrics import confusion_matrix, mean_iou

HEIGHT, WIDTH = 64, 128
TRAIN = ("sim", 1, 160)  # the demo's source set: (domain, seed, count)
EVALS = {"sim": ("sim", 5, 40), "real": ("real", 2, 40), "fog": ("fog", 3, 40), "night": ("night", 4, 40)}
TARGETS = ("real", "fog", "night")
AVERAGE = "gt-present"
RANDOM = "random"


@dataclass
class Split:
    images: Tensor  # [N,3,H,W] float, 0-255
    labels: Tensor  # [N,H,W] int64 train ids, IGNORE where unlabelled


def render(domain: str, seed: int, count: int) -> Split:
    samples = [generate(domain, i, seed, HEIGHT, WIDTH) for i in range(count)]
    images = torch.from_numpy(np.stack([s[0] for s in samples])).permute(0, 3, 1, 2).float()
    labels = torch.from_numpy(np.stack([s[1] for s in samples])).long()
    return Split(images, labels)


def build_tower(model: str, tower: str, seed: int) -> ClipBackbone:
    """`random` (random weights, seeded) or an image-tower weight file, built and frozen as the project does."""
    cfg = BackboneConfig(name=model, pretrained=None if tower == RANDOM else tower, freeze=True)
    torch.manual_seed(seed)
    return build_backbone(cfg, create_clip(cfg))


@torch.inference_mode()
def features(backbone: ClipBackbone, images: Tensor, batch: int = 40) -> Tensor:
    """All four levels upsampled to stride 4 and concatenated: [N, sum(channels), H/4, W/4]."""
    out = []
    for start in range(0, len(images), batch):
        levels = backbone(backbone.normalize(images[start : start + batch]))
        size = levels[0].shape[-2:]
        out.append(torch.cat([F.interpolate(f, size=size, mode="bilinear", align_corners=False)
                              if f.shape[-2:] != size else f for f in levels], dim=1))
    return torch.cat(out)


def standardise(train: Tensor, others: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
    """Per-channel zero mean / unit variance with the train set's statistics, applied to every set."""
    mean = train.mean(dim=(0, 2, 3), keepdim=True)
    std = train.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)
    return (train - mean) / std, {k: (v - mean) / std for k, v in others.items()}


def upsampled_logits(probe: nn.Module, feats: Tensor) -> Tensor:
    return F.interpolate(probe(feats), size=(HEIGHT, WIDTH), mode="bilinear", align_corners=False)


def train_probe(feats: Tensor, labels: Tensor, steps: int, batch: int, lr: float, seed: int) -> nn.Module:
    """A 1x1 conv trained with cross-entropy (Adam, seeded init and batch order)."""
    torch.manual_seed(seed)
    probe = nn.Conv2d(feats.shape[1], NUM_CLASSES, kernel_size=1)
    optimizer = torch.optim.Adam(probe.parameters(), lr=lr)
    order = torch.Generator().manual_seed(seed)
    batches: list[Tensor] = []
    for _ in range(steps):
        if not batches:
            batches = list(torch.randperm(len(feats), generator=order).split(batch))
        idx = batches.pop(0)
        loss = F.cross_entropy(upsampled_logits(probe, feats[idx]), labels[idx], ignore_index=IGNORE)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return probe.eval()


@torch.inference_mode()
def miou(probe: nn.Module, feats: Tensor, labels: Tensor) -> float:
    """mIoU in percent under the `gt-present` rule, from the project's confusion matrix."""
    pred = upsampled_logits(probe, feats).argmax(1)
    return 100.0 * mean_iou(confusion_matrix(pred, labels), average=AVERAGE)


def score_tower(backbone: ClipBackbone, train: Split, evals: dict[str, Split], args: argparse.Namespace
                ) -> dict[str, float]:
    """mIoU of the tower's linear probe on each evaluation set, plus the target mean."""
    train_feats, eval_feats = standardise(features(backbone, train.images),
                                          {k: features(backbone, s.images) for k, s in evals.items()})
    probe = train_probe(train_feats, train.labels, args.steps, args.batch, args.lr, args.seed)
    scores = {k: miou(probe, eval_feats[k], s.labels) for k, s in evals.items()}
    scores["target mean"] = float(np.mean([scores[k] for k in TARGETS]))
    return scores


def table(rows: dict[str, dict[str, float]]) -> list[str]:
    columns = [*EVALS, "target mean"]
    width = max(len("tower"), *(len(name) for name in rows))
    first = next(iter(rows.values()))["target mean"]
    lines = ["  ".join([f"{'tower':<{width}}", *(f"{c:>11}" for c in columns), f"{'vs first':>9}"])]
    for i, (name, scores) in enumerate(rows.items()):
        diff = f"{scores['target mean'] - first:+9.1f}" if i else f"{'':>9}"
        lines.append("  ".join([f"{name:<{width}}", *(f"{scores[c]:11.1f}" for c in columns), diff]))
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--towers", nargs="+", default=[RANDOM], metavar="TOWER",
                        help=f"'{RANDOM}' (random weights) or an image-tower weight file (clouds pretrain), "
                             "several side by side; differences are reported against the first")
    parser.add_argument("--model", default="clouds-tiny-convnext", help="open_clip model name of every tower")
    parser.add_argument("--steps", type=int, default=150, help="probe training steps")
    parser.add_argument("--batch", type=int, default=16, help="probe training images per step")
    parser.add_argument("--lr", type=float, default=2e-2, help="probe Adam learning rate")
    parser.add_argument("--seed", type=int, default=0, help="seeds the random tower, the probe init and batch order")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    torch.set_num_threads(args.threads)

    try:  # before rendering anything: a missing or mismatched weight file fails at once, in one line
        towers = {t: build_tower(args.model, t, args.seed) for t in dict.fromkeys(args.towers)}
    except (FileNotFoundError, ValueError) as err:
        sys.stderr.write(f"bench_probe: {err}\n")
        return 2

    train = render(*TRAIN)
    evals = {name: render(*spec) for name, spec in EVALS.items()}
    rows = {name: score_tower(backbone, train, evals, args) for name, backbone in towers.items()}

    sys.stdout.write(f"command: python {shlex.join(sys.argv if argv is None else [sys.argv[0], *argv])}\n")
    sys.stdout.write(
        f"linear probe, mIoU % ({AVERAGE}): model={args.model}, train {TRAIN[0]} seed {TRAIN[1]} x{TRAIN[2]} "
        f"at {HEIGHT}x{WIDTH}, {args.steps} Adam steps (batch {args.batch}, lr {args.lr}), seed {args.seed}, "
        f"threads={torch.get_num_threads()}\n"
    )
    for line in table(rows):
        sys.stdout.write(line + "\n")
    sys.stdout.write(f"wall time: {time.perf_counter() - start:.1f} s (towers, rendering, features, probes; not imports)\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
