"""Stage `prompts`: an LLM (or a seeded grammar) writes short street-scene descriptions for diffusion."""

from stages.prompts.cleaning import PromptCollector, clean_prompt, normalise, rejection_reason
from stages.prompts.generate import (
    PromptGenerationError,
    PromptWriter,
    build_writer,
    collect_prompts,
    generate_prompts,
)
from stages.prompts.records import Candidate, PromptRecord
from stages.prompts.seeds import derive_seed
from stages.prompts.stage import prompts_settings, read_prompts, write_prompts

__all__ = [
    "Candidate", "PromptCollector", "PromptGenerationError", "PromptRecord", "PromptWriter", "build_writer",
    "clean_prompt", "collect_prompts", "derive_seed", "generate_prompts", "normalise", "prompts_settings",
    "read_prompts", "rejection_reason", "write_prompts",
]
