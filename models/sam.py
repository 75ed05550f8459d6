"""Loading Segment Anything (SAM) models for pseudo-label refinement.

Model types:
- ``vit_h``, ``vit_l``, ``vit_b``: Meta's SAM, built from ``segment_anything.sam_model_registry``.
  A checkpoint is required (e.g. ``sam_vit_h_4b8939.pth``): random SAM weights give meaningless masks.
- ``vit_t``: MobileSAM, the CLOUDS reference default. It is not on PyPI; install it with
  ``pip install git+https://github.com/ChaoningZhang/MobileSAM`` (package ``mobile_sam``), checkpoint
  ``mobile_sam.pt``.
- ``tiny``: a ~100k-parameter SAM built from segment_anything's own classes, random weights unless
  a checkpoint is given. It exists so tests run the exact predictor path real weights do.
- ``toy``: the same build at 0.5M parameters, which ``clouds run pretrain-sam`` trains on the toy world's
  object masks; the CPU demo refines with the one shipped in ``models/weights/`` (a checkpoint is required).

Each model type is one entry in `SAM_BUILDERS` (a clouds.registry table, like the refiners and image
backends), so adding one is an entry there and its name in `SamRefine.model_type` (clouds/config/selftrain.py).

Checkpoints are read with ``torch.load(weights_only=True)`` (or safetensors) and then
``load_state_dict``; the registry builders call ``torch.load`` on the file themselves, which on older
torch versions unpickles arbitrary objects, so they are always called with ``checkpoint=None``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch
from segment_anything import sam_model_registry
from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

from clouds.device import resolve_device
from clouds.errors import InputError
from clouds.registry import from_config, registry

MOBILE_SAM_INSTALL = "pip install git+https://github.com/ChaoningZhang/MobileSAM"


def build_tiny_sam(
    img_size: int = 256,
    encoder_dim: int = 32,
    encoder_depth: int = 2,
    prompt_dim: int = 32,
    num_heads: int = 2,
    mlp_ratio: float = 2.0,
) -> Sam:
    """A small SAM wired exactly like the registry's builds (ViT encoder with windowed and global attention,
    prompt encoder, two-way transformer mask decoder), so it runs the predictor path real weights take."""
    patch_size = 16
    grid = img_size // patch_size
    sam = Sam(
        image_encoder=ImageEncoderViT(
            img_size=img_size,
            patch_size=patch_size,
            embed_dim=encoder_dim,
            depth=encoder_depth,
            num_heads=num_heads,
            mlp_ratio=mlp_ratio,
            out_chans=prompt_dim,
            qkv_bias=True,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            use_rel_pos=True,
            window_size=8,
            global_attn_indexes=tuple(range(1, encoder_depth, 2)),  # every second block, as SAM's 4 of 12-32
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=prompt_dim,
            image_embedding_size=(grid, grid),
            input_image_size=(img_size, img_size),
            mask_in_chans=4,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(
                depth=2, embedding_dim=prompt_dim, mlp_dim=int(mlp_ratio * prompt_dim), num_heads=num_heads
            ),
            transformer_dim=prompt_dim,
            iou_head_depth=3,
            iou_head_hidden_dim=prompt_dim,
        ),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )
    return sam.eval()


build_toy_sam = partial(build_tiny_sam, encoder_dim=64, encoder_depth=4, prompt_dim=64, num_heads=4, mlp_ratio=4.0)
"""0.5M parameters: the size `clouds run pretrain-sam` trains for the CPU demo's 64x128 streets."""


def _mobile_sam() -> torch.nn.Module:
    try:
        from mobile_sam import sam_model_registry as mobile_registry  # type: ignore[import-not-found]
    except ImportError as err:
        raise ImportError(
            f"refine.model_type 'vit_t' (MobileSAM) needs the mobile_sam package, which is not on PyPI: "
            f"run `{MOBILE_SAM_INSTALL}`, or choose vit_b/vit_l/vit_h"
        ) from err
    return mobile_registry["vit_t"](checkpoint=None)


def _meta_sam(model_type: str) -> Callable[[], torch.nn.Module]:
    """Meta's build of `model_type`, without the checkpoint its registry would unpickle itself."""
    def build() -> torch.nn.Module:
        return sam_model_registry[model_type](checkpoint=None)

    return build


SAM_BUILDERS = registry({
    "vit_h": _meta_sam("vit_h"), "vit_l": _meta_sam("vit_l"), "vit_b": _meta_sam("vit_b"),
    "vit_t": _mobile_sam, "tiny": build_tiny_sam, "toy": build_toy_sam,
})
SAM_MODEL_TYPES: tuple[str, ...] = tuple(SAM_BUILDERS)


def build_sam(model_type: str) -> torch.nn.Module:
    """The architecture of `model_type` with random weights (what a checkpoint is loaded into)."""
    return from_config(SAM_BUILDERS, "refine.model_type", model_type)().eval()


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Tensors only: a checkpoint must not be able to run code when it is read."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"SAM checkpoint {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises UnpicklingError, RuntimeError or EOFError for bad files
        raise InputError(f"SAM checkpoint {path} cannot be read as a weights-only state dict: {err}") from err
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    if not isinstance(state, dict):
        raise InputError(f"SAM checkpoint {path} holds a {type(state).__name__}, not a state dict")
    return state


def load_sam(
    model_type: str,
    checkpoint: str | os.PathLike[str] | None,
    device: str | torch.device = "cpu",
) -> torch.nn.Module:
    """A SAM in eval mode with frozen weights on `device`, ready for `SamPredictor`.

    Real model types need a checkpoint; 'tiny' keeps its random weights when none is given.
    """
    if model_type not in SAM_MODEL_TYPES:
        raise InputError(
            f"unknown SAM model type {model_type!r}; expected one of {', '.join(SAM_MODEL_TYPES)}"
        )
    if checkpoint is None and model_type != "tiny":
        raise InputError(
            f"SAM model type {model_type!r} needs a checkpoint (refine.checkpoint); "
            "random weights would produce meaningless masks"
        )
    state = read_state_dict(checkpoint) if checkpoint is not None else None
    sam = build_sam(model_type)
    if state is not None:
        missing, unexpected = sam.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise InputError(
                f"SAM checkpoint {checkpoint} does not match model type {model_type!r}: "
                f"{len(missing)} missing keys (e.g. {missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]})"
            )
    sam.requires_grad_(False)
    return sam.to(resolve_device(str(device))).eval()
