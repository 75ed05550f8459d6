"""Prompt writing with any Hugging Face causal LM (repo id or local folder), batched, sampled, seeded."""

from __future__ import annotations

import logging
import math
from typing import Any

import torch

from clouds.config import TransformersPrompts
from clouds.device import resolve_device
from clouds.errors import InputError
from stages.prompts.records import Candidate
from stages.prompts.seeds import derive_seed

log = logging.getLogger(__name__)


def _dtype(name: str) -> Any:
    if name == "auto":
        return "auto"
    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype):
        raise InputError(f"prompts.dtype={name!r} is not a torch dtype (use auto, float16, bfloat16, float32)")
    return dtype


def chat_prompt(tokenizer: Any, instruction: str) -> tuple[str, bool]:
    """The text fed to the model and whether the tokenizer should add its own special tokens.

    Instruction-tuned models answer well only inside their chat template; a template already holds
    BOS, so special tokens are not added twice. Base models without one get the bare instruction.
    """
    if getattr(tokenizer, "chat_template", None):
        messages = [{"role": "user", "content": instruction}]
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True), False
    return instruction.rstrip() + "\n", True


class TransformersWriter:
    """Samples `n` answers per call in batches of `cfg.batch_size`, one seed per batch.

    The batch seed goes through `torch.random.fork_rng`, so generation is reproducible without
    touching the caller's global RNG state.
    """

    backend = "transformers"

    def __init__(self, cfg: TransformersPrompts, seed: int, device: str = "auto"):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.cfg, self.seed, self.model = cfg, seed, cfg.model
        self.device = resolve_device(device)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(cfg.model, padding_side="left")
            self.lm = AutoModelForCausalLM.from_pretrained(cfg.model, dtype=_dtype(cfg.dtype))
        except OSError as err:
            raise InputError(f"prompts.model={cfg.model!r}: cannot load a causal LM and tokenizer: {err}") from err
        self.lm.to(self.device).eval()
        if self.tokenizer.pad_token is None:
            if self.tokenizer.eos_token is None:
                raise InputError(f"prompts.model={cfg.model!r}: the tokenizer has neither a pad nor an eos token")
            self.tokenizer.pad_token = self.tokenizer.eos_token
        eos = self.lm.generation_config.eos_token_id
        eos = eos if eos is not None else self.tokenizer.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, (list, tuple)) else [eos]) - {None}
        self.prompt, self.add_special = chat_prompt(self.tokenizer, cfg.instruction)
        log.info("prompts: %s on %s (chat template: %s)", cfg.model, self.device, not self.add_special)

    @torch.inference_mode()
    def generate_batch(self, size: int, batch_seed: int) -> list[Candidate]:
        enc = self.tokenizer(
            [self.prompt] * size, return_tensors="pt", padding=True, add_special_tokens=self.add_special
        ).to(self.device)
        devices = [self.device.index or 0] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(batch_seed)
            out = self.lm.generate(
                **enc,
                do_sample=True,
                temperature=self.cfg.temperature,
                top_p=self.cfg.top_p,
                max_new_tokens=self.cfg.max_new_tokens,
                pad_token_id=self.tokenizer.pad_token_id,
            )
        new = out[:, enc["input_ids"].shape[1]:].tolist()
        texts = self.tokenizer.batch_decode(new, skip_special_tokens=True)
        return [Candidate(t, batch_seed, truncated=not self.eos_ids & set(row)) for t, row in zip(texts, new, strict=True)]

    def __call__(self, n: int, attempt: int) -> list[Candidate]:
        """At least `n` answers: the last batch is filled, since a partial batch costs the same time."""
        out: list[Candidate] = []
        for b in range(math.ceil(n / self.cfg.batch_size)):
            out += self.generate_batch(self.cfg.batch_size, derive_seed(self.seed, "transformers", attempt, b))
        return out
