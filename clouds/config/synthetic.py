"""The content-diversification stages: LLM prompts and diffusion images."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from clouds.config.base import Section

DEFAULT_INSTRUCTION = (
    "Write one short description of a photo of an urban street scene, between 8 and 17 words. "
    "Start with 'A photo of a', 'A picture of a' or 'A snapshot of a'. Vary the content (cars, buses, "
    "trucks, trams, pedestrians, cyclists, motorcycles, traffic lights, signs, trees, buildings), and "
    "sometimes the weather or time of day (rain, fog, snow, night, dusk, morning, winter). "
    "Answer with the description only."
)


class PromptsConfig(Section):
    backend: Literal["template", "transformers", "vllm"] = "template"
    model: str | None = Field(None, description="HF repo id or local folder (transformers, vllm)")
    count: int = Field(100, ge=1)
    instruction: str = DEFAULT_INSTRUCTION
    min_words: int = 8
    max_words: int = 17
    prefixes: list[str] = Field(default_factory=lambda: ["A photo of a", "A picture of a", "A snapshot of a"])
    require_prefix: bool = True
    temperature: float = 1.0
    top_p: float = 0.95
    max_new_tokens: int = 48
    batch_size: int = 16
    max_attempts: int = Field(20, description="request rounds before giving up on reaching 'count'")
    tensor_parallel_size: int = 1
    pipeline_parallel_size: int = 1
    dtype: str = "auto"


class SynthesizeConfig(Section):
    backend: Literal["diffusers", "toycity"] = "toycity"
    model: str | None = Field("stabilityai/stable-diffusion-2", description="diffusers repo id or local folder")
    num_images: int = Field(5000, ge=1)
    height: int = 768
    width: int = 768
    steps: int = 50
    guidance_scale: float = 7.5
    scheduler: Literal["euler", "default"] = "euler"
    dtype: Literal["float16", "bfloat16", "float32"] = "float16"
    batch_size: int = 8
    negative_prompt: str | None = None
    max_retries: int = Field(3, description="new seeds tried for a NaN/black image before failing")
