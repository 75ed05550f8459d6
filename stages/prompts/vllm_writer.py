"""Prompt writing with vLLM's offline engine, for the 70B-class chat models the reference used.

vLLM is an optional extra (`pip install clouds[vllm]`). Request building and output parsing are
plain functions over duck-typed objects so they are testable without it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from clouds.config import VllmPrompts
from stages.prompts.records import Candidate
from stages.prompts.seeds import derive_seed


def import_vllm() -> Any:
    try:
        import vllm
    except ImportError as err:
        raise ImportError(
            "prompts.backend=vllm needs vLLM, an optional extra: pip install 'clouds[vllm]' "
            "(or use prompts.backend=transformers)"
        ) from err
    return vllm


def build_requests(
    cfg: VllmPrompts, seed: int, n: int, attempt: int, sampling_params: Callable[..., Any]
) -> tuple[list[list[dict[str, str]]], list[Any], list[int]]:
    """One single-turn conversation per prompt, each with its own seeded SamplingParams."""
    seeds = [derive_seed(seed, "vllm", attempt, j) for j in range(n)]
    conversations = [[{"role": "user", "content": cfg.instruction}] for _ in range(n)]
    params = [
        sampling_params(
            n=1, temperature=cfg.temperature, top_p=cfg.top_p, max_tokens=cfg.max_new_tokens, seed=s
        )
        for s in seeds
    ]
    return conversations, params, seeds


def parse_outputs(outputs: Sequence[Any], seeds: Sequence[int]) -> list[Candidate]:
    """RequestOutput -> Candidate; an answer cut by max_tokens (finish_reason 'length') is truncated."""
    if len(outputs) != len(seeds):
        raise RuntimeError(f"vLLM returned {len(outputs)} outputs for {len(seeds)} requests")
    candidates = []
    for i, (request, seed) in enumerate(zip(outputs, seeds, strict=True)):
        if not request.outputs:
            raise RuntimeError(f"vLLM request {i} (request_id {getattr(request, 'request_id', '?')}) has no output")
        completion = request.outputs[0]
        candidates.append(Candidate(completion.text, seed, truncated=completion.finish_reason == "length"))
    return candidates


def engine_parallelism(cfg: VllmPrompts) -> dict[str, Any]:
    """How vLLM spreads the model: tensor parallel within a node, pipeline parallel across stages; a
    model bigger than one node needs the Ray backend (vLLM then joins the running Ray cluster)."""
    out: dict[str, Any] = {
        "tensor_parallel_size": cfg.tensor_parallel_size,
        "pipeline_parallel_size": cfg.pipeline_parallel_size,
    }
    if cfg.distributed_executor_backend is not None:
        out["distributed_executor_backend"] = cfg.distributed_executor_backend
    return out


class VLLMWriter:
    """`llm` and `sampling_params` default to vllm.LLM / vllm.SamplingParams built from the config."""

    backend = "vllm"

    def __init__(self, cfg: VllmPrompts, seed: int, *, llm: Any = None, sampling_params: Any = None):
        self.cfg, self.seed, self.model = cfg, seed, cfg.model
        if llm is None or sampling_params is None:
            vllm = import_vllm()
            sampling_params = sampling_params or vllm.SamplingParams
            llm = llm or vllm.LLM(model=cfg.model, dtype=cfg.dtype, seed=seed, **engine_parallelism(cfg))
        self.llm, self.sampling_params = llm, sampling_params

    def __call__(self, n: int, attempt: int) -> list[Candidate]:
        conversations, params, seeds = build_requests(self.cfg, self.seed, n, attempt, self.sampling_params)
        outputs = self.llm.chat(messages=conversations, sampling_params=params, use_tqdm=False)
        return parse_outputs(outputs, seeds)
