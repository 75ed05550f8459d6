"""Stage `prompts`: cleaning rules, the template grammar, a real (tiny, random) HF causal LM, vLLM shapes."""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from artifacts import ArtifactError, ArtifactWriter, open_artifact
from clouds.config import TemplatePrompts, TransformersPrompts, VllmPrompts
from stages.prompts import (
    Candidate,
    PromptCollector,
    PromptGenerationError,
    clean_prompt,
    generate_prompts,
    normalise,
    read_prompts,
    rejection_reason,
    write_prompts,
)
from stages.prompts.hf_writer import TransformersWriter, chat_prompt
from stages.prompts.tiny import save_tiny_causal_lm
from stages.prompts.vllm_writer import VLLMWriter, build_requests, parse_outputs

PREFIXES = ["A photo of a", "A picture of a", "A snapshot of a"]
VALID = [
    "A photo of a busy street with parked cars and a red tram at night.",
    "A picture of a quiet avenue with cyclists in the bike lane during heavy rain.",
    "A snapshot of a crowded intersection with buses and pedestrians on a foggy morning.",
    "A photo of a narrow road with a delivery truck and traffic lights in winter.",
]


# -- cleaning and validation ------------------------------------------------------------------
@pytest.mark.parametrize(
    "raw, expected",
    [
        ('  "A photo of a street with cars at night."  ', "A photo of a street with cars at night."),
        ("1. A photo of a street with cars at night.", "A photo of a street with cars at night."),
        ("- **A picture of a road in the rain.**", "A picture of a road in the rain."),
        ("Prompt 3: 'A snapshot of a tram at dusk'", "A snapshot of a tram at dusk"),
        ("Sure! Here is a description:\n\nA photo of a foggy avenue.\nHope it helps", "A photo of a foggy avenue."),
        ("(2) “A photo of a bus stop”", "A photo of a bus stop"),
        ("first line without prefix\nsecond line", "first line without prefix"),
        ("A   photo of a\tstreet", "A photo of a street"),
        ("   \n  \n", ""),
    ],
)
def test_clean_prompt_repairs_llm_formatting(raw: str, expected: str) -> None:
    assert clean_prompt(raw, PREFIXES) == expected


def test_rejection_reasons() -> None:
    def reason(text: str, **kw: Any) -> str | None:
        return rejection_reason(text, min_words=8, max_words=17, prefixes=PREFIXES, **kw)

    assert reason(VALID[0]) is None
    assert reason("a PHOTO of a street with many parked cars tonight") is None  # prefix check ignores case
    assert reason("") == "empty"
    assert reason("A photo of a street.") == "too_short"
    assert reason("A photo of a " + "very " * 20 + "long street.") == "too_long"
    assert reason("An image of a busy street with parked cars and buses.") == "missing_prefix"
    assert reason("A photo of a street with\x07 cars and buses at night.") == "non_printable"
    assert reason("A photo of a street with \ufffd cars and buses at night.") == "non_printable"
    assert reason(VALID[0], truncated=True) == "truncated"
    assert rejection_reason("An image of a busy street with parked cars.", min_words=8, max_words=17) is None


def test_normalise_ignores_case_punctuation_and_spacing() -> None:
    assert normalise("A photo of a Street, at night!") == normalise("a photo of a   street at night")
    assert normalise("A photo of a street at night") != normalise("A picture of a street at night")


def test_collector_counts_every_rejection_and_keeps_first_unique() -> None:
    collector = PromptCollector(count=3, min_words=8, max_words=17, prefixes=PREFIXES)
    answers = [
        VALID[0], VALID[0].upper(), "too short", "Here you go: A photo of a street with cars.", VALID[1], VALID[2], VALID[3],
    ]
    collector.add([Candidate(a, seed=i) for i, a in enumerate(answers)], attempt=0)
    assert [a.text for a in collector.accepted] == [VALID[0], VALID[1], VALID[2]]
    assert [a.seed for a in collector.accepted] == [0, 4, 5]
    stats = collector.stats()
    assert stats["rejected"] == {"too_short": 1, "missing_prefix": 1, "duplicate": 1}
    assert stats["generated"] == 7 and stats["surplus"] == 1 and collector.missing == 0


# -- generate_prompts with injected writers ------------------------------------------------------
def test_injected_writer_produces_a_valid_set_with_provenance() -> None:
    calls: list[tuple[int, int]] = []

    def writer(n: int, attempt: int) -> list[str]:
        calls.append((n, attempt))
        return VALID[:2] if attempt == 0 else ["1. " + VALID[1], VALID[2]]

    records = generate_prompts(TemplatePrompts(count=3), seed=5, writer=writer)
    assert [r.text for r in records] == VALID[:3]
    assert [r.id for r in records] == ["prompt-000000", "prompt-000001", "prompt-000002"]
    assert [r.attempt for r in records] == [0, 0, 1]
    assert {r.backend for r in records} == {"template"} and all(r.seed == 5 for r in records)
    assert calls == [(3, 0), (1, 1)]  # each round asks only for what is still missing


def test_shortfall_fails_with_counts_by_reason() -> None:
    def writer(n: int, attempt: int) -> list[str]:
        return [VALID[0], "nonsense"] * n

    with pytest.raises(PromptGenerationError) as info:
        generate_prompts(TemplatePrompts(count=3, max_attempts=4), seed=0, writer=writer)
    message = str(info.value)
    assert "asked for 3 unique prompts" in message and "over 4 attempts" in message
    assert "unique 1" in message and "duplicate=" in message and "too_short=" in message
    assert "nonsense" in message  # an example of each rejection is shown
    assert info.value.stats["generated"] == 2 * (3 + 2 + 2 + 2)
    assert info.value.stats["rejected"] == {"duplicate": 2 + 3 * 2, "too_short": 3 + 3 * 2}


# -- template backend ---------------------------------------------------------------------------
def test_template_gives_unique_valid_prompts_deterministic_per_seed() -> None:
    cfg = TemplatePrompts(count=150)
    first = generate_prompts(cfg, seed=3)
    assert [r.text for r in first] == [r.text for r in generate_prompts(cfg, seed=3)]
    assert [r.text for r in first] != [r.text for r in generate_prompts(cfg, seed=4)]
    assert len({normalise(r.text) for r in first}) == 150
    for r in first:
        assert rejection_reason(r.text, min_words=8, max_words=17, prefixes=PREFIXES) is None, r.text
    assert any(w in " ".join(r.text for r in first) for w in ("rain", "fog", "snow", "night"))


def test_template_follows_configured_prefixes_and_word_range() -> None:
    cfg = TemplatePrompts(count=40, prefixes=["A snapshot of a"], min_words=10, max_words=12)
    for r in generate_prompts(cfg, seed=0):
        assert r.text.startswith("A snapshot of a") and 10 <= len(r.text.split()) <= 12


# -- transformers backend with a tiny random LM -------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(save_tiny_causal_lm(tmp_path_factory.mktemp("tiny-lm")))


def lm_config(model: str, **kw: Any) -> TransformersPrompts:
    kw.setdefault("max_new_tokens", 12)
    return TransformersPrompts(model=model, batch_size=3, **kw)


def test_random_lm_generates_and_shortfall_names_reasons(tiny_lm: str) -> None:
    with pytest.raises(PromptGenerationError) as info:
        generate_prompts(lm_config(tiny_lm, count=2, max_attempts=2), seed=0, device="cpu")
    stats = info.value.stats
    assert stats["generated"] == 6  # 2 rounds, each one full batch of 3 (only 2 were missing)
    assert stats["unique"] == 0 and sum(stats["rejected"].values()) == 6
    assert "transformers" in str(info.value) and tiny_lm in str(info.value)


def test_transformers_writer_uses_chat_template_and_is_seeded(tiny_lm: str) -> None:
    cfg = lm_config(tiny_lm)
    writer = TransformersWriter(cfg, seed=1, device="cpu")
    assert writer.tokenizer.padding_side == "left"
    assert cfg.instruction in writer.prompt and writer.prompt.endswith("<|assistant|>")
    assert writer.add_special is False  # the template already holds BOS
    rng_before = torch.get_rng_state()
    a = writer(3, attempt=0)
    assert torch.equal(rng_before, torch.get_rng_state())  # the caller's RNG is left alone
    assert [c.text for c in a] == [c.text for c in TransformersWriter(cfg, seed=1, device="cpu")(3, 0)]
    assert [c.text for c in a] != [c.text for c in writer(3, attempt=1)]
    assert len(a) == 3 and {c.seed for c in a} == {a[0].seed}  # one seed per batch


def test_plain_prompt_without_chat_template() -> None:
    text, add_special = chat_prompt(SimpleNamespace(chat_template=None), "Describe a street.")
    assert text == "Describe a street.\n" and add_special is True


def test_transformers_decode_path_yields_valid_set(tiny_lm: str) -> None:
    """A 'good' LM, stood in for by making generate() emit chosen sentences, gives a valid set."""
    cfg = lm_config(tiny_lm, count=3, max_new_tokens=24)
    writer = TransformersWriter(cfg, seed=0, device="cpu")
    tok = writer.tokenizer
    scripted = iter([VALID[0], VALID[0], "A photo of a street with cars and"] + VALID[1:])

    def fake_generate(input_ids: torch.Tensor, **kw: Any) -> torch.Tensor:
        rows = []
        for _ in range(input_ids.shape[0]):
            text = next(scripted)
            ids = tok(text, add_special_tokens=False)["input_ids"]
            ids = ids + ([tok.eos_token_id] if text.endswith(".") else [])  # no EOS: cut by max_new_tokens
            rows.append(ids + [tok.pad_token_id] * (kw["max_new_tokens"] - len(ids)))
        return torch.cat([input_ids, torch.tensor(rows)], dim=1)

    writer.lm.generate = fake_generate  # type: ignore[method-assign]
    records = generate_prompts(cfg, seed=0, writer=writer)
    assert [r.text for r in records] == VALID[:3]
    assert {r.backend for r in records} == {"transformers"} and records[0].model == tiny_lm


def test_transformers_needs_a_loadable_model(tmp_path) -> None:
    with pytest.raises(ValueError, match="model"):  # the config requires one (tests/test_config.py)
        TransformersPrompts()
    with pytest.raises(ValueError, match="cannot load a causal LM"):
        TransformersWriter(lm_config(str(tmp_path / "missing")), seed=0, device="cpu")


# -- vLLM (no vllm import: fake objects shaped like vllm's) ------------------------------------------------
@dataclass
class FakeSamplingParams:
    n: int
    temperature: float
    top_p: float
    max_tokens: int
    seed: int


def request_output(text: str, finish: str = "stop", rid: str = "0") -> SimpleNamespace:
    completion = SimpleNamespace(text=text, finish_reason=finish, token_ids=[1, 2])
    return SimpleNamespace(request_id=rid, prompt="...", outputs=[completion], finished=True)


def test_vllm_request_building() -> None:
    cfg = VllmPrompts(model="meta-llama/Llama-2-70b-chat-hf", temperature=0.7, max_new_tokens=40)
    conversations, params, seeds = build_requests(cfg, 0, 4, 1, FakeSamplingParams)
    assert conversations == [[{"role": "user", "content": cfg.instruction}]] * 4
    assert [p.seed for p in params] == seeds and len(set(seeds)) == 4
    assert {(p.n, p.temperature, p.top_p, p.max_tokens) for p in params} == {(1, 0.7, 0.95, 40)}
    assert seeds != build_requests(cfg, 0, 4, 2, FakeSamplingParams)[2]  # new seeds per round


def test_vllm_output_parsing() -> None:
    outs = [request_output(VALID[0]), request_output("A photo of a street with", "length")]
    cands = parse_outputs(outs, [11, 12])
    assert [(c.text, c.seed, c.truncated) for c in cands] == [(VALID[0], 11, False), ("A photo of a street with", 12, True)]
    with pytest.raises(RuntimeError, match="2 outputs for 3 requests"):
        parse_outputs(outs, [1, 2, 3])
    with pytest.raises(RuntimeError, match="request 0"):
        parse_outputs([SimpleNamespace(request_id="7", outputs=[])], [1])


def test_vllm_writer_end_to_end_with_fake_engine() -> None:
    class FakeLLM:
        def __init__(self) -> None:
            self.calls: list[dict[str, Any]] = []

        def chat(self, messages: list, sampling_params: list, use_tqdm: bool) -> list:
            self.calls.append({"messages": messages, "params": sampling_params})
            texts = [*VALID[:3], VALID[2]] if len(self.calls) == 1 else VALID[3:]
            return [request_output(f"{i + 1}. {t}") for i, t in enumerate(texts[: len(messages)])]

    llm = FakeLLM()
    cfg = VllmPrompts(model="some/chat-model", count=4)
    writer = VLLMWriter(cfg, seed=0, llm=llm, sampling_params=FakeSamplingParams)
    records = generate_prompts(cfg, seed=0, writer=writer)
    assert sorted(r.text for r in records) == sorted(VALID)
    assert [len(c["messages"]) for c in llm.calls] == [4, 1]  # the second round asks for the one missing
    assert records[0].request_seed == llm.calls[0]["params"][0].seed


def test_vllm_engine_gets_the_parallel_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The vllm.LLM constructor is called with the config's tensor/pipeline parallel sizes and backend."""
    built: list[dict[str, Any]] = []

    class FakeEngine:
        def __init__(self, **kwargs: Any) -> None:
            built.append(kwargs)

    monkeypatch.setitem(sys.modules, "vllm", types.SimpleNamespace(LLM=FakeEngine, SamplingParams=FakeSamplingParams))
    cfg = VllmPrompts(model="meta-llama/Llama-2-70b-chat-hf", tensor_parallel_size=4,
                      pipeline_parallel_size=2, distributed_executor_backend="ray", dtype="float16")
    VLLMWriter(cfg, seed=3)
    assert built == [{"model": "meta-llama/Llama-2-70b-chat-hf", "dtype": "float16", "seed": 3,
                      "tensor_parallel_size": 4, "pipeline_parallel_size": 2, "distributed_executor_backend": "ray"}]
    VLLMWriter(VllmPrompts(model="x/y"), seed=0)
    assert "distributed_executor_backend" not in built[-1] and built[-1]["tensor_parallel_size"] == 1


def test_vllm_missing_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "vllm", None)
    with pytest.raises(ImportError, match=r"pip install 'clouds\[vllm\]'"):
        VLLMWriter(VllmPrompts(model="x/y"), seed=0)


# -- the artifact ---------------------------------------------------------------------------------
def test_write_prompts_artifact_round_trip() -> None:
    cfg = TemplatePrompts(count=12)
    art = write_prompts("memory://run/prompts", cfg, seed=7, shard_max_samples=5)
    assert art.num_samples == 12 and len(art.shards) == 3 and art.stage == "prompts"
    assert art.keys[:2] == ["prompt-000000", "prompt-000001"]
    assert art.lineage["stats"]["unique"] == 12 and art.lineage["params"]["seed"] == 7
    sample = next(art.iter_samples())
    assert set(sample["json"]) >= {"id", "text", "backend", "model", "seed", "attempt"}
    assert sample["txt"] == sample["json"]["text"]
    records = read_prompts("memory://run/prompts")
    assert records == generate_prompts(cfg, seed=7)
    again = write_prompts("memory://run/prompts", cfg, seed=7)  # same config: reused, not rewritten
    assert again.lineage["committed_at"] == art.lineage["committed_at"]
    assert again.lineage["content_hash"] == art.lineage["content_hash"]
    with pytest.raises(ArtifactError, match="already a committed artifact"):
        write_prompts("memory://run/prompts", cfg, seed=8)  # another config never silently replaces it
    other = write_prompts("memory://run/prompts", cfg, seed=8, overwrite=True)
    assert other.lineage["content_hash"] != art.lineage["content_hash"]


def test_read_prompts_names_the_bad_sample() -> None:
    w = ArtifactWriter("memory://bad/prompts", stage="prompts", config_hash="x")
    w.write_shard(0, [{"__key__": "prompt-000000", "txt": "A photo of a street with cars at night."}])
    w.commit()
    with pytest.raises(ArtifactError, match=r"sample 'prompt-000000'.*needs 'txt' and 'json'"):
        read_prompts(open_artifact("memory://bad/prompts"))


def test_config_refuses_impossible_word_range_and_prefix_rules() -> None:
    with pytest.raises(ValueError, match="min_words"):
        TemplatePrompts(min_words=12, max_words=8)
    with pytest.raises(ValueError, match="prefixes is empty"):
        TemplatePrompts(prefixes=[])
    assert TemplatePrompts(prefixes=[], require_prefix=False).prefixes == []
