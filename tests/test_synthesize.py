"""Stage `synthesize`: a tiny random SD pipeline loaded by path, seeds, resume, and bad-image retries."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from artifacts import ArtifactError, open_artifact
from artifacts.identity import Identity
from clouds.config import DiffusersSynthesize, SynthesizeConfig, TemplatePrompts, ToycitySynthesize
from stages.prompts import PromptRecord, write_prompts
from stages.synthesize import (
    ImageGenerationError,
    Rendered,
    build_backend,
    image_problem,
    image_seed,
    num_shards,
    plan_images,
    prepare_synthesize,
    shard_jobs,
    synthesize_settings,
    to_uint8,
)
from stages.synthesize.tiny import save_tiny_sd_pipeline

PROMPTS = "memory://run/prompts"


def synthesize_here(prompts_url: str, output_url: str, cfg: SynthesizeConfig, seed: int, shard_max_samples: int,
                    **kwargs):
    """The whole stage in this process: every pending shard, then the commit (as `clouds run` does)."""
    return prepare_synthesize(prompts_url, output_url, cfg, seed, shard_max_samples, **kwargs).run_all()


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(save_tiny_sd_pipeline(tmp_path_factory.mktemp("tiny-sd")))


@pytest.fixture
def prompts() -> str:
    write_prompts(PROMPTS, TemplatePrompts(count=3), seed=0)
    return PROMPTS


def sd_config(model: str, **kw) -> DiffusersSynthesize:
    base = dict(model=model, num_images=5, height=32, width=48, steps=2, batch_size=2)
    return DiffusersSynthesize(**{**base, **kw})


def records(n: int) -> list[PromptRecord]:
    return [PromptRecord(f"prompt-{i:06d}", f"A photo of a street number {i}", "template", None, 0, 0, i)
            for i in range(n)]


# -- plan and checks ------------------------------------------------------------------------------
def test_plan_cycles_prompts_with_distinct_seeds_and_fixed_shards() -> None:
    jobs = plan_images(records(3), 7, run_seed=1)
    assert [j.prompt.id[-1] for j in jobs] == list("0120120")
    assert len({j.seed() for j in jobs}) == 7 and jobs[4].seed() == image_seed(1, 4)
    assert jobs[4].seed(1) != jobs[4].seed(0) and plan_images(records(3), 7, run_seed=2)[0].seed() != jobs[0].seed()
    assert num_shards(7, 3) == 3
    assert [j.index for j in shard_jobs(jobs, 2, 3)] == [6] and [j.key for j in shard_jobs(jobs, 0, 3)][0] == "image-000000"
    with pytest.raises(ValueError, match="shard 3 does not exist"):
        shard_jobs(jobs, 3, 3)
    with pytest.raises(ValueError, match="empty prompt list"):
        plan_images([], 3, 0)


def test_image_problems() -> None:
    fine = np.full((4, 4, 3), 0.5, dtype=np.float32)
    assert image_problem(Rendered(fine)) is None
    assert image_problem(Rendered(np.where(np.eye(4)[..., None] > 0, np.nan, fine))) == "nan"
    assert image_problem(Rendered(np.zeros((4, 4, 3), np.float32))) == "black"
    assert image_problem(Rendered(np.zeros((4, 4, 3), np.uint8))) == "black"
    assert image_problem(Rendered(fine, flagged=True)) == "nsfw"
    assert to_uint8(np.array([0.0, 0.5, 1.2], np.float32)).tolist() == [0, 128, 255]


# -- the diffusers backend, loaded by path like a hub checkpoint -------------------------------------------------
def test_diffusers_backend_is_deterministic_per_image(tiny_sd: str) -> None:
    cfg = sd_config(tiny_sd)
    backend = build_backend(cfg, device="cpu")
    assert type(backend.pipe.scheduler).__name__ == "EulerDiscreteScheduler"
    assert type(build_backend(sd_config(tiny_sd, scheduler="default"), "cpu").pipe.scheduler).__name__ == "PNDMScheduler"
    texts, seeds = ["a street at night", "a tram in the rain", "a road in fog"], [11, 22, 33]
    batch = [to_uint8(r.image) for r in backend.render(texts, seeds)]
    assert batch[0].shape == (32, 48, 3)
    again = [to_uint8(r.image) for r in backend.render(texts, seeds)]
    assert all(a.tobytes() == b.tobytes() for a, b in zip(batch, again, strict=True))  # same seeds, same bytes
    alone = to_uint8(backend.render(texts[1:2], seeds[1:2])[0].image)
    # Alone vs in a batch: the same noise and prompt; batched CPU kernels may differ in the last float bit.
    assert np.abs(alone.astype(int) - batch[1].astype(int)).max() <= 1
    assert batch[0].tobytes() != batch[1].tobytes()


def test_diffusers_backend_names_a_bad_model(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="synthesize.model"):
        build_backend(sd_config(str(tmp_path / "nothing-here")), "cpu")
    with pytest.raises(ValueError, match="model"):  # the config requires one
        sd_config(None)


def test_synthesize_artifact_end_to_end(tiny_sd: str, prompts: str) -> None:
    cfg = sd_config(tiny_sd)
    art = synthesize_here(prompts, "memory://run/images", cfg, seed=3, shard_max_samples=2, device="cpu")
    assert art.num_samples == 5 and len(art.shards) == 3 and art.stage == "synthesize"
    assert art.lineage["inputs"][0]["url"] == prompts and art.lineage["stats"]["retries"] == {}
    samples = list(art.iter_samples())
    assert [s["__key__"] for s in samples] == [f"image-{i:06d}" for i in range(5)]
    meta = samples[4]["json"]
    assert meta["domain"] == "generated" and meta["prompt_id"] == "prompt-000001" and meta["attempt"] == 0
    assert meta["seed"] == image_seed(3, 4) and meta["model"] == tiny_sd
    assert samples[4]["png"].shape == (32, 48, 3)
    # Any image can be regenerated alone from its json.
    alone = build_backend(cfg, "cpu").render([meta["prompt"]], [meta["seed"]])[0]
    assert np.abs(to_uint8(alone.image).astype(int) - samples[4]["png"].astype(int)).max() <= 1
    # Same config, same prompts: the one up-to-date rule (what the flow asks) reuses it.
    assert Identity.of("synthesize", synthesize_settings(cfg, 3, 2), [prompts]).is_current("memory://run/images")


class CountingBackend:
    """Wraps a backend, counts render calls, and can crash on the n-th one like a killed worker."""

    def __init__(self, inner, crash_on_call: int | None = None):
        self.inner, self.crash_on_call, self.calls = inner, crash_on_call, 0
        self.name, self.model = inner.name, inner.model

    def render(self, prompts: Sequence[str], seeds: Sequence[int]) -> list[Rendered]:
        self.calls += 1
        if self.calls == self.crash_on_call:
            raise RuntimeError("simulated crash")
        return self.inner.render(prompts, seeds)


def test_resume_after_interruption_matches_uninterrupted_run(tiny_sd: str, prompts: str, tmp_path: Path) -> None:
    cfg = sd_config(tiny_sd, num_images=6, batch_size=1)
    backend = build_backend(cfg, "cpu")
    clean = synthesize_here(prompts, str(tmp_path / "clean"), cfg, 0, 2, backend=backend)
    url = str(tmp_path / "resumed")
    crashing = CountingBackend(backend, crash_on_call=5)  # shards 0 and 1 done, crash inside shard 2
    with pytest.raises(RuntimeError, match="simulated crash"):
        synthesize_here(prompts, url, cfg, 0, 2, backend=crashing)
    with pytest.raises(ArtifactError):
        open_artifact(url)
    job = prepare_synthesize(prompts, url, cfg, 0, 2, backend=backend)
    assert job.pending() == [2]
    rerun = CountingBackend(backend)
    resumed = synthesize_here(prompts, url, cfg, 0, 2, backend=rerun)
    assert rerun.calls == 2  # only the missing shard's two images were rendered
    assert resumed.lineage["content_hash"] == clean.lineage["content_hash"]
    assert resumed.manifest.column("member_sha256").to_pylist() == clean.manifest.column("member_sha256").to_pylist()


# -- bad images ------------------------------------------------------------------------------------
class FakeBackend:
    """Grey images whose level encodes the seed; seeds listed in `bad` come out black or NaN."""

    name, model = "fake", None

    def __init__(self, bad: dict[int, str] | None = None, always_bad: bool = False):
        self.bad, self.always_bad, self.seen = bad or {}, always_bad, []

    def render(self, prompts: Sequence[str], seeds: Sequence[int]) -> list[Rendered]:
        out = []
        for seed in seeds:
            self.seen.append(seed)
            problem = "black" if self.always_bad else self.bad.get(seed)
            image = np.full((8, 8, 3), 0.2 + (seed % 100) / 200, np.float32)
            if problem == "black":
                image[:] = 0.0
            elif problem == "nan":
                image[0, 0, 0] = np.nan
            out.append(Rendered(image, flagged=problem == "nsfw"))
        return out


def test_bad_images_are_retried_with_recorded_seeds(prompts: str) -> None:
    cfg = ToycitySynthesize(num_images=4, batch_size=4, max_retries=3)
    bad = {image_seed(9, 1, 0): "black", image_seed(9, 1, 1): "nan", image_seed(9, 2, 0): "nsfw"}
    art = synthesize_here(prompts, "memory://run/fake", cfg, 9, 4, backend=FakeBackend(bad))
    metas = {s["json"]["index"]: s["json"] for s in art.iter_samples()}
    assert metas[0]["attempt"] == 0 and metas[0]["failed_attempts"] == []
    assert metas[1]["attempt"] == 2 and metas[1]["seed"] == image_seed(9, 1, 2)
    assert metas[1]["failed_attempts"] == [
        {"attempt": 0, "seed": image_seed(9, 1, 0), "problem": "black"},
        {"attempt": 1, "seed": image_seed(9, 1, 1), "problem": "nan"},
    ]
    assert metas[2]["attempt"] == 1
    assert art.lineage["stats"]["retries"] == {"black": 1, "nan": 1, "nsfw": 1}
    assert art.lineage["stats"]["retried_images"] == 2
    for s in art.iter_samples():
        assert s["png"].max() > 0


def test_persistently_bad_image_fails_naming_index_and_prompt(prompts: str) -> None:
    cfg = ToycitySynthesize(num_images=2, batch_size=2, max_retries=2)
    backend = FakeBackend(always_bad=True)
    with pytest.raises(ImageGenerationError, match=r"image 0 \(image-000000\) from prompt prompt-000000 'A .*'") as info:
        synthesize_here(prompts, "memory://run/bad", cfg, 0, 2, backend=backend)
    assert "black, black, black" in str(info.value) and "max_retries=2" in str(info.value)
    assert backend.seen == [image_seed(0, 0, 0), image_seed(0, 1, 0), image_seed(0, 0, 1), image_seed(0, 0, 2)]


def test_missing_prompts_artifact_is_a_clear_error() -> None:
    with pytest.raises(ArtifactError, match="does not exist"):
        synthesize_here("memory://nowhere/prompts", "memory://run/x", ToycitySynthesize(num_images=1), 0, 1)


# -- toycity backend ---------------------------------------------------------------------------------
def test_toycity_backend_contract_with_a_stand_in_renderer(prompts: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The stage's side of the toycity API: prompt+seed -> spec, domain, image and true label stored."""
    calls = []

    def render(spec, domain, height, width, seed, style):
        calls.append((spec["text"], domain, height, width, seed, style))
        rng = np.random.default_rng(seed)
        return rng.integers(1, 256, (height, width, 3), np.uint8), rng.integers(0, 19, (height, width), np.uint8)

    fake = SimpleNamespace(
        spec_from_prompt=lambda text, seed: {"text": text, "seed": seed},
        domain_for=lambda spec: "night" if "night" in spec["text"] else "real",
        render=render,
    )
    monkeypatch.setitem(sys.modules, "clouds.toycity", fake)
    cfg = ToycitySynthesize(num_images=4, height=16, width=24, batch_size=3)
    art = synthesize_here(prompts, "memory://run/toy-contract", cfg, 0, 3)
    samples = list(art.iter_samples())
    assert [c[1:] for c in calls] == [("night" if "night" in c[0] else "real", 16, 24, image_seed(0, i), "generated")
                                      for i, c in enumerate(calls)]
    for s, (text, domain, _h, _w, seed, _style) in zip(samples, calls, strict=True):
        assert s["true.seg.png"].shape == (16, 24) and s["png"].shape == (16, 24, 3)
        assert s["json"]["render_domain"] == domain and s["json"]["seed"] == seed and s["json"]["prompt"] == text
    fake.render = lambda *a, **k: (np.ones((16, 24, 3), np.uint8), np.full((16, 24), 40, np.uint8))
    with pytest.raises(ValueError, match=r"label values \[40\]"):
        synthesize_here(prompts, "memory://run/toy-bad", cfg, 0, 3)


def test_toycity_backend_stores_true_labels(prompts: str) -> None:
    toycity = pytest.importorskip("clouds.toycity")
    if not hasattr(toycity, "spec_from_prompt"):
        pytest.skip("clouds.toycity (another helper's work) is not in this checkout yet")
    cfg = ToycitySynthesize(num_images=3, height=48, width=96, batch_size=2)
    art = synthesize_here(prompts, "memory://run/toy", cfg, 0, 2)
    samples = list(art.iter_samples())
    assert len(samples) == 3
    for s in samples:
        assert s["png"].shape == (48, 96, 3) and s["true.seg.png"].shape == (48, 96)
        assert s["json"]["backend"] == "toycity" and "render_domain" in s["json"]
    again = synthesize_here(prompts, "memory://run/toy2", cfg, 0, 2)
    assert again.lineage["content_hash"] == art.lineage["content_hash"]
