"""The frozen CLIP image tower, cut open to give Mask2Former a stride 4/8/16/32 feature pyramid.

open_clip builds the model (so a real tag, a local weight file and the project's tiny test configs all go
through `open_clip.create_model`); this module only knows how to walk the two tower families CLOUDS uses:
timm ConvNeXt (`visual.trunk.stem` + `visual.trunk.stages`) and open_clip's ModifiedResNet (RN50/RN101:
a 3-conv stem + avgpool, then `layer1..layer4`). ViT towers have no pyramid and are refused.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import open_clip
import torch
import torch.nn.functional as F
from open_clip.modified_resnet import ModifiedResNet
from open_clip.timm_model import TimmModel
from torch import Tensor, nn

from clouds.config.model import BackboneConfig
from clouds.errors import InputError
from models.heads import mask_pool
from models.tower_weights import is_image_tower_file, load_image_tower

log = logging.getLogger(__name__)

MODEL_CONFIG_DIR = Path(__file__).parent / "model_configs"
"""Tiny CLIP architectures (random weights) that build through the same `open_clip.create_model` path."""

STRIDES = (4, 8, 16, 32)
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def register_model_configs() -> None:
    """Make the project's tiny CLIP configs known to open_clip's registry (idempotent)."""
    names = {p.stem for p in MODEL_CONFIG_DIR.glob("*.json")}
    if not names.issubset(open_clip.list_models()):
        open_clip.add_model_config(MODEL_CONFIG_DIR)


def _is_local_path(pretrained: str) -> bool:
    return os.sep in pretrained or pretrained.startswith(".") or Path(pretrained).suffix in {
        ".bin", ".pt", ".pth", ".safetensors", ".ckpt",
    }


def _shipped_or_given(pretrained: str | None) -> str | None:
    """A relative weight path that does not exist from the working directory is looked up in the project
    (the shipped `models/weights/` files), so a Prefect worker started elsewhere finds them too."""
    if pretrained is None or os.path.isabs(pretrained) or os.path.exists(pretrained):
        return pretrained
    shipped = PROJECT_ROOT / pretrained
    return str(shipped) if shipped.is_file() else pretrained


def create_clip(cfg: BackboneConfig, device: str | torch.device = "cpu") -> nn.Module:
    """Build the whole open_clip model (image + text tower) the backbone and the text head are cut from.

    `pretrained` is an open_clip tag for `name`, a local weight file, or None for random weights. A value that
    is neither a known tag nor an existing file fails here, naming it, rather than deep in open_clip's
    download code.
    """
    if cfg.library != "open_clip":
        raise InputError(f"backbone.library {cfg.library!r}: {cfg.name!r} is not an open_clip CLIP model; this step "
                         "needs a CLIP tower (backbone.library: open_clip)")
    register_model_configs()
    name, pretrained = cfg.name, _shipped_or_given(cfg.pretrained)
    if name.startswith("local-dir:") and not os.path.isdir(name.removeprefix("local-dir:")):
        raise FileNotFoundError(f"backbone.name: open_clip model directory {name.removeprefix('local-dir:')!r} "
                                "does not exist")
    has_schema = name.startswith(("hf-hub:", "local-dir:"))  # weights come with the model; `pretrained` unused
    if not has_schema and name not in open_clip.list_models():
        raise InputError(f"backbone.name {name!r} is not an open_clip model config (see open_clip.list_models())")
    if pretrained is not None and not has_schema:
        tags = open_clip.list_pretrained_tags_by_model(name)
        if pretrained not in tags and not os.path.isfile(pretrained):
            if _is_local_path(pretrained) or not tags:
                raise FileNotFoundError(f"backbone.pretrained: weight file {pretrained!r} does not exist")
            raise InputError(
                f"backbone.pretrained {pretrained!r} is neither a file nor a pretrained tag of {name!r} "
                f"(known tags: {tags})"
            )
    if pretrained is not None and not has_schema and is_image_tower_file(pretrained):
        # A tower-only file (clouds pretrain): random text tower, strictly loaded image tower.
        model = open_clip.create_model(name, pretrained=None, device=device)
        load_image_tower(model.visual, pretrained, name)
        log.info("backbone %s: image tower loaded from %s", name, pretrained)
        return model
    model = open_clip.create_model(name, pretrained=None if has_schema else pretrained, device=device)
    if pretrained is None:
        log.info("backbone %s built with random weights (pretrained: null)", name)
    return model


class ClipBackbone(nn.Module):
    """Multi-scale features of a CLIP image tower, plus the CLIP-space readout the test-time ensemble needs.

    Frozen (the CLOUDS reference) means: no parameter requires grad, the tower stays in eval mode even when
    a parent calls `.train()` (BatchNorm statistics of RN50 and dropout must not move), and the forward runs
    without building a graph. `freeze=False` makes it an ordinary trainable module.
    """

    def __init__(
        self,
        visual: nn.Module,
        pixel_mean: tuple[float, float, float],
        pixel_std: tuple[float, float, float],
        clip_logit_scale: float,
        freeze: bool = True,
    ) -> None:
        super().__init__()
        if isinstance(visual, TimmModel) and hasattr(visual.trunk, "stages") and hasattr(visual.trunk, "stem"):
            self.kind = "convnext"
            info = visual.trunk.feature_info
            self.channels = [int(f["num_chs"]) for f in info]
            strides = tuple(int(f["reduction"]) for f in info)
        elif isinstance(visual, ModifiedResNet):
            self.kind = "resnet"
            self.channels = [int(layer[-1].conv3.out_channels) for layer in
                             (visual.layer1, visual.layer2, visual.layer3, visual.layer4)]
            strides = STRIDES
        else:
            raise InputError(
                f"CLIP image tower {type(visual).__name__} has no stride 4/8/16/32 pyramid: use a ConvNeXt "
                "(timm) or ModifiedResNet (RN50/RN101) open_clip model"
            )
        if strides != STRIDES:
            raise InputError(f"CLIP image tower gives strides {strides}, Mask2Former needs {STRIDES}")
        self.visual = visual
        self.strides = list(STRIDES)
        self.frozen = freeze
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean, dtype=torch.float32).view(1, 3, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std, dtype=torch.float32).view(1, 3, 1, 1), False)
        # CLIP's own (trained) temperature, used only to score mask-pooled features against text embeddings.
        self.register_buffer("clip_logit_scale", torch.tensor(float(clip_logit_scale)), False)
        if freeze:
            self.requires_grad_(False)
            self.eval()

    @property
    def embed_dim(self) -> int:
        """Width of the CLIP joint embedding space the pooled features are projected to."""
        if self.kind == "convnext":
            head = self.visual.head
            last = [m for m in head.modules() if isinstance(m, nn.Linear)][-1]
            return int(last.out_features)
        return int(self.visual.attnpool.c_proj.out_features)

    def train(self, mode: bool = True) -> ClipBackbone:
        return super().train(mode and not self.frozen)

    def normalize(self, images: Tensor) -> Tensor:
        """RGB on the 0-255 scale -> CLIP-normalised input (mean/std are given on the 0-255 scale too)."""
        return (images - self.pixel_mean) / self.pixel_std

    def forward(self, images: Tensor) -> list[Tensor]:
        """Normalised images [B,3,H,W] -> features at strides 4, 8, 16, 32 (the last is CLIP's dense map)."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            if self.kind == "convnext":
                trunk = self.visual.trunk
                x = trunk.stem(images)
                feats = []
                for stage in trunk.stages:
                    x = stage(x)
                    feats.append(x)
                feats[-1] = trunk.norm_pre(feats[-1])
                return feats
            v = self.visual
            x = v.act1(v.bn1(v.conv1(images)))
            x = v.act2(v.bn2(v.conv2(x)))
            x = v.act3(v.bn3(v.conv3(x)))
            x = v.avgpool(x)
            feats = []
            for layer in (v.layer1, v.layer2, v.layer3, v.layer4):
                x = layer(x)
                feats.append(x)
            return feats

    def pooled_clip_embeddings(self, dense: Tensor, mask_logits: Tensor) -> Tensor:
        """Mask-pool CLIP's stride-32 map under each query's mask and project into CLIP space: [B,Q,D].

        ConvNeXt follows FC-CLIP/CLOUDS: average the dense features where the mask logit is positive, then run
        the tower's own pooling head (norm) and projection on the pooled vector. ModifiedResNet follows the
        CLOUDS reference: its attention pool, with attention restricted to the mask.
        """
        if self.kind == "convnext":
            pooled = mask_pool(dense, mask_logits)
            b, q, c = pooled.shape
            x = self.visual.trunk.head(pooled.reshape(b * q, c, 1, 1))
            x = self.visual.head(x)
            return x.view(b, q, -1)
        masks = F.interpolate(mask_logits, size=dense.shape[-2:], mode="bilinear", align_corners=False)
        return self._attnpool_masked(dense, (masks > 0).to(dense.dtype))

    def _attnpool_masked(self, x: Tensor, masks: Tensor) -> Tensor:
        pool = self.visual.attnpool
        batch, channel, height, width = x.shape
        num_masks = masks.shape[1]
        pos = pool.positional_embedding.to(x.dtype)
        spatial = pos[1:]
        side = int(math.sqrt(spatial.shape[0]))
        spatial = spatial.t().reshape(1, channel, side, side)
        spatial = F.interpolate(spatial, size=(height, width), mode="bilinear", align_corners=False)
        spatial = spatial.permute(2, 3, 0, 1).reshape(height * width, 1, channel)
        tokens = x.reshape(batch, channel, height * width).permute(2, 0, 1)
        key_value = tokens + spatial
        query = (tokens.mean(0, keepdim=True) + pos[:1, None, :]).repeat_interleave(num_masks, dim=0)
        blocked = (masks.reshape(batch, num_masks, height * width) < 0.5)
        # A query whose mask is empty may attend everywhere rather than produce NaN.
        blocked = blocked & ~blocked.all(dim=-1, keepdim=True)
        attn_mask = blocked.unsqueeze(1).expand(-1, pool.num_heads, -1, -1).reshape(
            batch * pool.num_heads, num_masks, height * width
        )
        out = F.multi_head_attention_forward(
            query=query, key=key_value, value=key_value, embed_dim_to_check=channel,
            num_heads=pool.num_heads,
            q_proj_weight=pool.q_proj.weight, k_proj_weight=pool.k_proj.weight, v_proj_weight=pool.v_proj.weight,
            in_proj_weight=None, in_proj_bias=torch.cat([pool.q_proj.bias, pool.k_proj.bias, pool.v_proj.bias]),
            bias_k=None, bias_v=None, add_zero_attn=False, dropout_p=0.0,
            out_proj_weight=pool.c_proj.weight, out_proj_bias=pool.c_proj.bias,
            use_separate_proj_weight=True, training=False, need_weights=False, attn_mask=attn_mask,
        )[0]
        return out.permute(1, 0, 2)


def build_backbone(cfg: BackboneConfig, clip_model: nn.Module) -> ClipBackbone:
    """Wrap the image tower of an already-built open_clip model (built by `create_clip`)."""
    return ClipBackbone(
        clip_model.visual,
        pixel_mean=cfg.pixel_mean,
        pixel_std=cfg.pixel_std,
        clip_logit_scale=float(clip_model.logit_scale.detach()),
        freeze=cfg.freeze,
    )
