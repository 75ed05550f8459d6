"""`clouds export`: a committed checkpoint (or RUN:best) to one self-contained file plus its model card."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch

from clouds.errors import InputError
from stages.export.card import model_card
from stages.export.formats import FORMATS, SUFFIX, write_safetensors, write_torchscript
from stages.export.onnx_format import TOLERANCE, write_onnx
from stages.predict.checkpoints import load_predictor

_ROUND_TRAIN = re.compile(r"(?P<run>[^/]+)/round-(?P<k>\d{3})/train/?$")

USAGE = {
    "safetensors": (
        "```python\nfrom stages.export.formats import load_safetensors_export\n"
        "model, meta = load_safetensors_export('{name}')   # needs the clouds package, no run folder\n"
        "labels = model.predict(images)  # images: float [B,3,H,W] RGB 0-255 -> train ids [B,H,W]\n```"
    ),
    "torchscript": (
        "```python\nimport torch\nmodule = torch.jit.load('{name}')   # needs only torch\n"
        "scores = module(images)  # images: float [1,3,{h},{w}] RGB 0-255 (exactly this size) -> [1,19,{h},{w}]\n"
        "labels = scores.argmax(1)\n```\nThe graph was traced at {h}x{w}: resize images to that size first "
        "(a trace records Mask2Former's padding and mask-upsampling sizes as constants)."
    ),
    "onnx": (
        "```python\nimport onnxruntime as ort\nsession = ort.InferenceSession('{name}')\n"
        "scores = session.run(None, {{'images': images}})[0]  # float32 [1,3,{h},{w}] RGB 0-255 -> [1,19,{h},{w}]\n"
        "```\nTraced at {h}x{w} (resize images to that size first). Checked against PyTorch on 3 images: max abs "
        "score difference {diff:.2e} (accepted up to {tol:.0e})."
    ),
}


@dataclass(frozen=True)
class Exported:
    path: Path
    card: Path
    max_abs_diff: float | None = None
    """ONNX only: largest |score| difference between onnxruntime and PyTorch on 3 images."""


def default_name(checkpoint_url: str, weights: str) -> str:
    """`RUN-round-NNN[-teacher]` for a run's checkpoint, else the folder's name."""
    m = _ROUND_TRAIN.search(checkpoint_url.rstrip("/"))
    base = f"{m.group('run')}-round-{m.group('k')}" if m else Path(checkpoint_url.rstrip("/")).name
    return base + ("-teacher" if weights == "teacher" else "")


def export_checkpoint(checkpoint_url: str, fmt: str, out: Path | None = None, *, weights: str = "student",
                      size: tuple[int, int] = (512, 1024)) -> Exported:
    """Write the export (`out`, default `<name><suffix>` here) and `<out stem>.md` beside it."""
    if fmt not in FORMATS:
        raise InputError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if fmt != "safetensors" and (len(size) != 2 or min(size) < 32):
        raise InputError(f"--size must be HEIGHT WIDTH, each at least 32, got {size}")
    model = load_predictor(checkpoint_url, torch.device("cpu"), weights)
    path = Path(out) if out is not None else Path(default_name(checkpoint_url, weights) + SUFFIX[fmt])
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"checkpoint": checkpoint_url, "weights": weights}
    diff = None
    if fmt == "safetensors":
        write_safetensors(model, path, meta)
    elif fmt == "torchscript":
        write_torchscript(model, path, size, meta)
    else:
        diff = write_onnx(model, path, size, meta)
        if diff > TOLERANCE:
            raise InputError(f"the ONNX graph {path} differs from PyTorch by {diff:.2e} (max abs score) on 3 images, "
                             f"more than {TOLERANCE:.0e}; not writing its model card")
    usage = USAGE[fmt].format(name=path.name, h=size[0], w=size[1], diff=diff or 0.0, tol=TOLERANCE)
    params = sum(p.numel() for p in model.parameters())
    card = path.with_name(path.name.split(".")[0] + ".md")
    card.write_text(model_card(checkpoint_url, path.name, fmt, weights, params, usage))
    return Exported(path, card, diff)
