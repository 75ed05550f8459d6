"""The content-diversification stages: LLM prompts and diffusion images."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Discriminator, Field, Tag, model_validator

from clouds.config.base import MAX_BATCH, MAX_COUNT, MAX_SIDE, Section
from clouds.config.variants import MethodTag, Variants

DEFAULT_INSTRUCTION = (
    "Write one short description of a photo of an urban street scene, between 8 and 17 words. "
    "Start with 'A photo of a', 'A picture of a' or 'A snapshot of a'. Vary the content (cars, buses, "
    "trucks, trams, pedestrians, cyclists, motorcycles, traffic lights, signs, trees, buildings), and "
    "sometimes the weather or time of day (rain, fog, snow, night, dusk, morning, winter). "
    "Answer with the description only."
)


class PromptsBase(Section):
    """What every prompt writer shares: how many prompts, and which answers count as one."""

    count: int = Field(100, ge=1, le=MAX_COUNT)
    min_words: int = Field(8, ge=1, le=1000)
    max_words: int = Field(17, ge=1, le=1000)
    prefixes: list[str] = Field(default_factory=lambda: ["A photo of a", "A picture of a", "A snapshot of a"])
    require_prefix: bool = True
    max_attempts: int = Field(20, ge=1, le=10_000, description="request rounds before giving up on reaching 'count'")

    @model_validator(mode="after")
    def _word_range(self) -> PromptsBase:
        if self.min_words > self.max_words:
            raise ValueError(f"min_words ({self.min_words}) is larger than max_words ({self.max_words})")
        if self.require_prefix and not self.prefixes:
            raise ValueError("require_prefix is true but prefixes is empty")
        return self


class TemplatePrompts(PromptsBase):
    """The model-free grammar (stages/prompts/template.py): CI, laptops, the toy pipeline."""

    backend: Literal["template"] = "template"


class LlmPrompts(PromptsBase):
    """What the LLM writers share: the model (no default: there is no sensible one to download), the
    instruction and the sampling."""

    model: str = Field(min_length=1, description="a HF repo id or a local folder")
    instruction: str = DEFAULT_INSTRUCTION
    temperature: float = Field(1.0, gt=0, le=100.0)
    top_p: float = Field(0.95, gt=0, le=1)
    max_new_tokens: int = Field(48, ge=1, le=1 << 16)
    dtype: str = Field("auto", description="model weights dtype: auto, float16, bfloat16, float32")


class TransformersPrompts(LlmPrompts):
    backend: Literal["transformers"] = "transformers"
    batch_size: int = Field(16, ge=1, le=MAX_BATCH, description="prompts per generate() call")


class VllmPrompts(LlmPrompts):
    backend: Literal["vllm"] = "vllm"
    tensor_parallel_size: int = Field(1, ge=1, le=1024)
    pipeline_parallel_size: int = Field(1, ge=1, le=1024)
    distributed_executor_backend: Literal["mp", "ray"] | None = Field(
        None, description="'mp' (one node) or 'ray' (GPUs of several nodes of a Ray cluster); null = vLLM's choice"
    )


PromptsConfig = Annotated[
    Annotated[TemplatePrompts, Tag("template")] | Annotated[TransformersPrompts, Tag("transformers")]
    | Annotated[VllmPrompts, Tag("vllm")],
    Discriminator(MethodTag("backend", "template")),
]
"""`prompts`: the options of the writer `prompts.backend` names (absent: template)."""

PROMPTS_VARIANTS = Variants.of("prompts", PromptsConfig)


class SynthesizeBase(Section):
    """What every image backend shares: how many images of which size, made how many at a time."""

    num_images: int = Field(5000, ge=1, le=MAX_COUNT)
    height: int = Field(768, ge=16, le=MAX_SIDE)
    width: int = Field(768, ge=16, le=MAX_SIDE)
    batch_size: int = Field(8, ge=1, le=MAX_BATCH, description="prompts per pipeline call")
    max_retries: int = Field(3, ge=0, le=1000, description="new seeds tried for a NaN/black image before failing")


class ToycitySynthesize(SynthesizeBase):
    """The built-in street-scene renderer (clouds/toycity): no model, true labels to measure with."""

    backend: Literal["toycity"] = "toycity"


class DiffusersSynthesize(SynthesizeBase):
    """A diffusers text-to-image pipeline (the reference: Stable Diffusion 2, Euler, fp16)."""

    backend: Literal["diffusers"] = "diffusers"
    model: str = Field("stabilityai/stable-diffusion-2", min_length=1, description="diffusers repo id or local folder")
    steps: int = Field(50, ge=1, le=10_000)
    guidance_scale: float = Field(7.5, ge=0.0, le=100.0, description="classifier-free guidance; <= 1 turns it off")
    scheduler: Literal["euler", "default"] = Field("euler", description="'default' keeps the pipeline's own")
    dtype: Literal["float16", "bfloat16", "float32"] = Field("float16", description="on GPU; CPU runs float32")
    negative_prompt: str | None = None


SynthesizeConfig = Annotated[
    Annotated[ToycitySynthesize, Tag("toycity")] | Annotated[DiffusersSynthesize, Tag("diffusers")],
    Discriminator(MethodTag("backend", "toycity")),
]
"""`synthesize`: the options of the backend `synthesize.backend` names (absent: toycity)."""

SYNTHESIZE_VARIANTS = Variants.of("synthesize", SynthesizeConfig)
