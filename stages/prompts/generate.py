"""The prompt stage's logic: ask a writer for answers until enough unique valid prompts exist."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from clouds.config import PromptsConfig, TemplatePrompts, TransformersPrompts, VllmPrompts
from clouds.errors import CloudsError
from clouds.registry import from_config, registry
from stages.prompts.cleaning import PromptCollector
from stages.prompts.records import KEY_FORMAT, Candidate, PromptRecord

log = logging.getLogger(__name__)


class PromptGenerationError(CloudsError, RuntimeError):
    """The writer could not produce enough unique valid prompts; the message holds the counts."""

    def __init__(self, message: str, stats: dict[str, Any]):
        super().__init__(message)
        self.stats = stats


class PromptWriter(Protocol):
    """Anything that answers `n` requests for round `attempt` (it may return more than `n`)."""

    def __call__(self, n: int, attempt: int) -> Sequence[Candidate | str]: ...


def _template(cfg: TemplatePrompts, seed: int, device: str) -> PromptWriter:
    from stages.prompts.template import TemplateWriter

    return TemplateWriter(cfg, seed)


def _transformers(cfg: TransformersPrompts, seed: int, device: str) -> PromptWriter:
    from stages.prompts.hf_writer import TransformersWriter

    return TransformersWriter(cfg, seed, device)


def _vllm(cfg: VllmPrompts, seed: int, device: str) -> PromptWriter:
    from stages.prompts.vllm_writer import VLLMWriter

    return VLLMWriter(cfg, seed)


WRITERS = registry({"template": _template, "transformers": _transformers, "vllm": _vllm})
"""`prompts.backend` -> the writer's builder (each imports its model library only when chosen)."""


def build_writer(cfg: PromptsConfig, seed: int, device: str = "auto") -> PromptWriter:
    return from_config(WRITERS, "prompts.backend", cfg.backend)(cfg, seed, device)


def _as_candidates(answers: Sequence[Candidate | str], seed: int) -> list[Candidate]:
    return [a if isinstance(a, Candidate) else Candidate(str(a), seed) for a in answers]


def collect_prompts(
    cfg: PromptsConfig, seed: int, writer: PromptWriter | Callable[[int, int], Sequence[Candidate | str]]
) -> tuple[list[PromptRecord], dict[str, Any]]:
    """Unique valid prompts and the counts behind them; raises PromptGenerationError on a shortfall."""
    prefixes = list(cfg.prefixes) if cfg.require_prefix else []
    collector = PromptCollector(cfg.count, cfg.min_words, cfg.max_words, prefixes)
    for attempt in range(cfg.max_attempts):
        if not collector.missing:
            break
        collector.add(_as_candidates(writer(collector.missing, attempt), seed), attempt)
        log.info("prompts: attempt %d, %d/%d unique", attempt, len(collector.accepted), cfg.count)
    stats = collector.stats()
    model = getattr(cfg, "model", None)  # the template writer has none
    if collector.missing:
        raise PromptGenerationError(
            f"prompts ({cfg.backend}, model {model}): {collector.report()}; raise prompts.max_attempts, "
            "loosen the word range or prefixes, or use a stronger model",
            stats,
        )
    backend = getattr(writer, "backend", cfg.backend)
    model = getattr(writer, "model", model)
    records = [
        PromptRecord(KEY_FORMAT.format(i), a.text, backend, model, seed, a.attempt, a.seed)
        for i, a in enumerate(collector.accepted)
    ]
    return records, stats


def generate_prompts(
    cfg: PromptsConfig, seed: int, *, writer: PromptWriter | None = None, device: str = "auto"
) -> list[PromptRecord]:
    """`cfg.count` unique prompts from the configured backend (or an injected writer)."""
    records, _ = collect_prompts(cfg, seed, writer or build_writer(cfg, seed, device))
    return records
