"""Stable Diffusion (any diffusers pipeline that takes text prompts), batched, one generator per image."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch

from clouds.config import DiffusersSynthesize
from clouds.device import resolve_device
from clouds.errors import InputError
from stages.synthesize.backend import Rendered

log = logging.getLogger(__name__)


def _dtype_keyword() -> str:
    """diffusers renamed from_pretrained's `torch_dtype` to `dtype` (warning on the old name) in 2026;
    the releases this project supports before that reject `dtype`, so pick by what is installed."""
    from diffusers.utils import deprecation_utils

    return "dtype" if hasattr(deprecation_utils, "_resolve_dtype") else "torch_dtype"


class DiffusersBackend:
    """Loads `cfg.model` (repo id or local folder) through DiffusionPipeline.from_pretrained.

    The reference runs SD2 with the Euler discrete scheduler in fp16; `scheduler: default` keeps the
    pipeline's own. Half precision is only used on an accelerator: on CPU fp16 is slow or unsupported.
    Initial noise comes from one CPU generator per image, so an image depends on its own seed alone,
    whatever the batch around it and whatever the device.
    """

    name = "diffusers"

    def __init__(self, cfg: DiffusersSynthesize, device: str = "auto"):
        from diffusers import DiffusionPipeline, EulerDiscreteScheduler

        self.cfg, self.model = cfg, cfg.model
        self.device = resolve_device(device)
        dtype = getattr(torch, cfg.dtype) if self.device.type != "cpu" else torch.float32
        if dtype != getattr(torch, cfg.dtype):
            log.info("synthesize: %s requested, using float32 on CPU", cfg.dtype)
        try:
            pipe = DiffusionPipeline.from_pretrained(cfg.model, **{_dtype_keyword(): dtype})
        except (OSError, ValueError) as err:
            raise InputError(f"synthesize.model={cfg.model!r}: cannot load a diffusers pipeline: {err}") from err
        if cfg.scheduler == "euler":
            pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)
        pipe.set_progress_bar_config(disable=True)
        self.pipe = pipe.to(self.device)
        self.dtype = dtype

    @torch.inference_mode()
    def render(self, prompts: Sequence[str], seeds: Sequence[int]) -> list[Rendered]:
        if len(prompts) != len(seeds):
            raise ValueError(f"{len(prompts)} prompts but {len(seeds)} seeds")
        cfg = self.cfg
        out = self.pipe(
            prompt=list(prompts),
            negative_prompt=[cfg.negative_prompt] * len(prompts) if cfg.negative_prompt else None,
            height=cfg.height,
            width=cfg.width,
            num_inference_steps=cfg.steps,
            guidance_scale=cfg.guidance_scale,
            generator=[torch.Generator("cpu").manual_seed(int(s)) for s in seeds],
            output_type="np",
        )
        flags = getattr(out, "nsfw_content_detected", None) or [False] * len(prompts)
        return [Rendered(image, flagged=bool(flag)) for image, flag in zip(out.images, flags, strict=True)]
