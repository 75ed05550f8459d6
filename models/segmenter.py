"""The CLOUDS segmenter: frozen CLIP backbone + Mask2Former decoder, with loss and semantic inference."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from clouds.config.model import ModelConfig
from clouds.labels import IGNORE
from models.backbone import ClipBackbone
from models.heads import geometric_ensemble
from models.loss import build_criterion, semantic_targets
from models.mask2former import DecoderOutput, Mask2FormerDecoder
from models.vit_backbone import ViTBackbone

SIZE_DIVISIBILITY = 32
"""Inputs are padded to a multiple of the coarsest stride (as the reference's ImageList does)."""


class Segmenter(nn.Module):
    """`backbone` is the (usually frozen, possibly shared with an EMA teacher) CLIP tower, or a timm ViT whose few
    learned tensors (Rein tokens, LoRA, neck) train with the decoder; `decoder` holds every other trainable
    parameter. Images are RGB float on the 0-255 scale, labels train ids with 255 = ignore."""

    def __init__(self, backbone: ClipBackbone | ViTBackbone, decoder: Mask2FormerDecoder, cfg: ModelConfig) -> None:
        super().__init__()
        self.backbone = backbone
        self.decoder = decoder
        self.cfg = cfg
        self.num_classes = decoder.config.num_labels
        self.weight_dict = {
            "loss_cross_entropy": cfg.decoder.class_weight,
            "loss_mask": cfg.decoder.mask_weight,
            "loss_dice": cfg.decoder.dice_weight,
        }
        self.criterion = build_criterion(decoder.config, self.weight_dict, cfg.loss.ignore_pixels)

    def _check_images(self, images: Tensor) -> None:
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be [B,3,H,W] RGB, got shape {tuple(images.shape)}")
        if not images.is_floating_point():
            raise ValueError(f"images must be float on the 0-255 scale, got dtype {images.dtype}")

    def _pad(self, x: Tensor, value: float) -> Tensor:
        h, w = x.shape[-2:]
        ph, pw = (-h) % SIZE_DIVISIBILITY, (-w) % SIZE_DIVISIBILITY
        return F.pad(x, (0, pw, 0, ph), value=value) if ph or pw else x

    def _decode(self, images: Tensor) -> tuple[list[Tensor], DecoderOutput]:
        self._check_images(images)
        # Pad after normalising, with 0, like detectron2's ImageList (padding is "mean colour").
        normed = self._pad(self.backbone.normalize(images), 0.0)
        features = self.backbone(normed)
        return features, self.decoder(features)

    def forward(self, images: Tensor, labels: Tensor) -> dict[str, Tensor]:
        """Training loss. Returns "loss" (weighted total over all layers, the one to backpropagate) and the
        detached weighted sums "loss_ce", "loss_mask", "loss_dice" over all layers (for logging)."""
        if labels.shape[0] != images.shape[0] or labels.shape[-2:] != images.shape[-2:]:
            raise ValueError(f"labels {tuple(labels.shape)} do not match images {tuple(images.shape)}")
        _, out = self._decode(images)
        labels = self._pad(labels.long(), IGNORE)
        mask_labels, class_labels, valid = semantic_targets(labels, self.num_classes)
        aux = [
            {"masks_queries_logits": m, "class_queries_logits": c}
            for m, c in zip(out.mask_logits[:-1], out.class_logits[:-1], strict=True)
        ]
        raw = self.criterion(out.mask_logits[-1], out.class_logits[-1], mask_labels, class_labels, valid, aux)
        parts = {"loss_ce": "loss_cross_entropy", "loss_mask": "loss_mask", "loss_dice": "loss_dice"}
        result: dict[str, Tensor] = {}
        total = out.mask_logits[-1].new_zeros(())
        for short, name in parts.items():
            weighted = sum(v for k, v in raw.items() if k == name or k.startswith(name + "_")) * self.weight_dict[name]
            total = total + weighted
            result[short] = weighted.detach()
        result["loss"] = total
        return result

    def _class_logits_for_inference(self, features: list[Tensor], out: DecoderOutput) -> Tensor:
        class_logits, mask_logits = out.class_logits[-1], out.mask_logits[-1]
        head = self.cfg.head
        if not head.ensemble:
            return class_logits
        pooled = self.backbone.pooled_clip_embeddings(features[-1], mask_logits)
        clip_logits = self.decoder.text_classifier.class_logits(pooled, self.backbone.clip_logit_scale)
        valid = None
        if head.ensemble_on_valid_mask:
            small = F.interpolate(mask_logits, size=features[-1].shape[-2:], mode="bilinear", align_corners=False)
            valid = (small > 0).flatten(2).any(-1)
        return geometric_ensemble(class_logits, clip_logits, head.ensemble_alpha, valid)

    def semantic_scores(self, images: Tensor) -> Tensor:
        """Semantic scores [B,19,H,W] at input resolution: sum over queries of p(class) x sigmoid(mask), with
        masks upsampled to the (padded) input size before the sigmoid, as the reference does. Runs in the
        caller's grad mode; `predict_scores` is the same under inference_mode."""
        h, w = images.shape[-2:]
        features, out = self._decode(images)
        class_probs = self._class_logits_for_inference(features, out).softmax(-1)[..., :-1]
        padded = (h + (-h) % SIZE_DIVISIBILITY, w + (-w) % SIZE_DIVISIBILITY)
        # One image at a time: the upsampled masks are Q x H x W floats (800 MB for 100 queries at 1024x2048),
        # so a batch must not materialise them all at once; the decoder above still runs batched.
        scores = []
        for probs, mask_logits in zip(class_probs, out.mask_logits[-1], strict=True):
            masks = F.interpolate(mask_logits[None], size=padded, mode="bilinear", align_corners=False)[0]
            scores.append(torch.einsum("qc,qhw->chw", probs, masks.sigmoid_())[:, :h, :w])
        return torch.stack(scores)

    @torch.inference_mode()
    def predict_scores(self, images: Tensor) -> Tensor:
        """`semantic_scores` under inference_mode (no autograd bookkeeping; results are inference tensors)."""
        return self.semantic_scores(images)

    @torch.inference_mode()
    def predict(self, images: Tensor) -> Tensor:
        """Train-id map [B,H,W] (argmax of `predict_scores`; never 255)."""
        # max(...).indices: same first-maximum rule as argmax, several times faster over the class dim on CPU.
        return self.predict_scores(images).max(1).indices

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, frozen_backbone={self.backbone.frozen}"
