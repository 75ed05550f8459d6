"""The content-diversification stages: LLM prompts and diffusion images."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from clouds.config.base import MAX_BATCH, MAX_COUNT, MAX_SIDE, Section

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
    count: int = Field(100, ge=1, le=MAX_COUNT)
    instruction: str = DEFAULT_INSTRUCTION
    min_words: int = Field(8, ge=1, le=1000)
    max_words: int = Field(17, ge=1, le=1000)
    prefixes: list[str] = Field(default_factory=lambda: ["A photo of a", "A picture of a", "A snapshot of a"])
    require_prefix: bool = True
    temperature: float = Field(1.0, gt=0, le=100.0)
    top_p: float = Field(0.95, gt=0, le=1)
    max_new_tokens: int = Field(48, ge=1, le=1 << 16)
    batch_size: int = Field(16, ge=1, le=MAX_BATCH, description="transformers: prompts per generate() call")
    max_attempts: int = Field(20, ge=1, le=10_000, description="request rounds before giving up on reaching 'count'")
    tensor_parallel_size: int = Field(1, ge=1, le=1024, description="vllm only")
    pipeline_parallel_size: int = Field(1, ge=1, le=1024, description="vllm only")
    distributed_executor_backend: Literal["mp", "ray"] | None = Field(
        None, description="vllm only: 'mp' (one node) or 'ray' (GPUs of several nodes of a Ray cluster); null = vLLM's choice"
    )
    dtype: str = Field("auto", description="model weights dtype: auto, float16, bfloat16, float32")

    @model_validator(mode="after")
    def _word_range(self) -> PromptsConfig:
        if self.min_words > self.max_words:
            raise ValueError(f"min_words ({self.min_words}) is larger than max_words ({self.max_words})")
        if self.require_prefix and not self.prefixes:
            raise ValueError("require_prefix is true but prefixes is empty")
        return self


class SynthesizeConfig(Section):
    backend: Literal["diffusers", "toycity"] = "toycity"
    model: str | None = Field("stabilityai/stable-diffusion-2", description="diffusers repo id or local folder")
    num_images: int = Field(5000, ge=1, le=MAX_COUNT)
    height: int = Field(768, ge=16, le=MAX_SIDE)
    width: int = Field(768, ge=16, le=MAX_SIDE)
    steps: int = Field(50, ge=1, le=10_000)
    guidance_scale: float = Field(7.5, ge=0.0, le=100.0, description="classifier-free guidance; <= 1 turns it off")
    scheduler: Literal["euler", "default"] = Field("euler", description="'default' keeps the pipeline's own")
    dtype: Literal["float16", "bfloat16", "float32"] = Field("float16", description="on GPU; CPU runs float32")
    batch_size: int = Field(8, ge=1, le=MAX_BATCH, description="prompts per pipeline call")
    negative_prompt: str | None = None
    max_retries: int = Field(3, ge=0, le=1000, description="new seeds tried for a NaN/black image before failing")
