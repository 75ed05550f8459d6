"""One Prefect flow per stage. Flows only wire stage logic (stages/) to artifact URLs (layout.py)."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NONE

from artifacts import Folder
from pipelines import expected
from pipelines.context import DEFAULT_CONFIG, RunContext
from pipelines.expected import Expected
from pipelines.jobs import JobRecipe
from pipelines.tasks import reuse_or_run, run_sharded


def _ctx(config: str, overrides: list[str] | None, root: str | None, run: str | None, force: bool) -> RunContext:
    return RunContext.load(config, overrides, root, run, force)


def _reuse_or_run(e: Expected, force: bool, run: Any) -> dict[str, Any]:
    """Reuse decided on the values `clouds status` reads too (pipelines/expected.py)."""
    return reuse_or_run(e.name, e.url, e.stage, e.config_hash, e.inputs, force, run)


@task(name="ingest-dataset", cache_policy=NONE, task_run_name="ingest-{spec.name}")
def ingest_dataset(ctx: RunContext, spec: Any) -> dict[str, Any]:
    from stages.ingest.stage import ingest

    e = expected.ingest(ctx.cfg, ctx.layout, spec)
    return _reuse_or_run(
        e, ctx.force,
        lambda overwrite: ingest(spec, e.url, ctx.cfg.artifacts, config_hash=e.config_hash, overwrite=overwrite),
    )


@flow(name="ingest")
def ingest_flow(
    config: str = DEFAULT_CONFIG, overrides: list[str] | None = None, root: str | None = None,
    run: str | None = None, force: bool = False,
) -> dict[str, dict[str, Any]]:
    """Turn the source and every target dataset of the config into artifacts."""
    ctx = _ctx(config, overrides, root, run, force)
    specs = [ctx.cfg.data.source, *ctx.cfg.data.targets]
    futures = {s.name: ingest_dataset.submit(ctx, s) for s in specs}
    return {name: f.result() for name, f in futures.items()}


@flow(name="prompts")
def prompts_flow(
    config: str = DEFAULT_CONFIG, overrides: list[str] | None = None, root: str | None = None,
    run: str | None = None, force: bool = False,
) -> dict[str, Any]:
    """The LLM (or the template writer) writes the street-scene prompts, once per run."""
    from stages.prompts.stage import write_prompts

    ctx = _ctx(config, overrides, root, run, force)
    cfg = ctx.cfg
    e = expected.prompts(cfg, ctx.layout)
    return _reuse_or_run(
        e, ctx.force,
        lambda overwrite: write_prompts(e.url, cfg.prompts, cfg.run.seed, device=cfg.run.device,
                                        shard_max_samples=cfg.artifacts.shard_max_samples, overwrite=overwrite),
    )


def run_stage_shards(ctx: RunContext, stage: str, k: int, overwrite: bool) -> Any:
    """Build the stage's job here (prepares the output folder), then run its shards where the config says."""
    recipe = JobRecipe.of(stage, ctx, k)
    return run_sharded(recipe.build(overwrite=overwrite), recipe, ctx.cfg.executor)


@flow(name="synthesize")
def synthesize_flow(
    config: str = DEFAULT_CONFIG, overrides: list[str] | None = None, root: str | None = None,
    run: str | None = None, force: bool = False,
) -> dict[str, Any]:
    """The diffusion model (or toycity) renders images from the prompts; one task per shard."""
    ctx = _ctx(config, overrides, root, run, force)
    return _reuse_or_run(expected.synthesize(ctx.cfg, ctx.layout), ctx.force,
                         lambda overwrite: run_stage_shards(ctx, "synthesize", 0, overwrite))


@flow(name="pseudo-label")
def pseudo_label_flow(
    config: str = DEFAULT_CONFIG, overrides: list[str] | None = None, root: str | None = None,
    run: str | None = None, round: int = 1, force: bool = False,
) -> dict[str, Any]:
    """The EMA teacher of round k-1 labels every generated image; one task per shard."""
    ctx = _ctx(config, overrides, root, run, force)
    return _reuse_or_run(expected.pseudo_label(ctx.cfg, ctx.layout, round), ctx.force,
                         lambda overwrite: run_stage_shards(ctx, "pseudo-label", round, overwrite))


@flow(name="refine")
def refine_flow(
    config: str = DEFAULT_CONFIG, overrides: list[str] | None = None, root: str | None = None,
    run: str | None = None, round: int = 1, force: bool = False,
) -> dict[str, Any]:
    """SAM (or superpixels) refines round k's pseudo labels; one task per shard."""
    ctx = _ctx(config, overrides, root, run, force)
    return _reuse_or_run(expected.refine(ctx.cfg, ctx.layout, round), ctx.force,
                         lambda overwrite: run_stage_shards(ctx, "refine", round, overwrite))


@flow(name="train")
def train_flow(
    config: str = DEFAULT_CONFIG, overrides: list[str] | None = None, root: str | None = None,
    run: str | None = None, round: int = 0, force: bool = False,
) -> dict[str, Any]:
    """Round 0: source-only warm-up. Round k: source + round k's refined labels, continuing round k-1."""
    from stages.train.stage import train

    ctx = _ctx(config, overrides, root, run, force)
    cfg = ctx.cfg
    on_ray = cfg.executor.train_workers > 0
    # The same plan torchrun's launcher trains, so a span trained there is reused here (on Ray Train, with
    # the root made absolute: see expected.train).
    e, plan, layout = expected.train(cfg, ctx.layout, round)
    url = plan.output

    def go(overwrite: bool) -> Any:
        if overwrite:
            Folder.at(url).remove(within=layout.base)
        if on_ray:
            from pipelines.ray_train import train_on_ray

            return train_on_ray(cfg, plan, cfg.executor, name=f"{layout.run}-round-{round:03d}-train")
        return train(cfg, plan.source, plan.synthetic, url, init_checkpoint=plan.init, iters=plan.iters,
                     mode=plan.mode)

    return _reuse_or_run(e, ctx.force, go)


@flow(name="evaluate")
def evaluate_flow(
    config: str = DEFAULT_CONFIG, overrides: list[str] | None = None, root: str | None = None,
    run: str | None = None, round: int = 0, force: bool = False,
) -> dict[str, Any]:
    """mIoU of round k's student on every target artifact (per domain, per class)."""
    ctx = _ctx(config, overrides, root, run, force)
    e = expected.evaluate(ctx.cfg, ctx.layout, round)
    if e is None:
        get_run_logger().warning("the config names no target datasets: nothing to evaluate")
        return {"stage": "evaluate", "url": None, "reused": False}
    return _reuse_or_run(e, ctx.force, lambda overwrite: run_stage_shards(ctx, "evaluate", round, overwrite))


@flow(name="pretrain")
def pretrain_flow(
    config: str = DEFAULT_CONFIG, overrides: list[str] | None = None, root: str | None = None,
    run: str | None = None, force: bool = False,
) -> dict[str, Any]:
    """Label-free pretraining of the image tower on streets in every domain (once; not part of a round).

    Its `image_tower.safetensors` is what `model.backbone.pretrained` names (the tiny profile ships one)."""
    from stages.pretrain.stage import pretrain

    ctx = _ctx(config, overrides, root, run, force)
    e = expected.pretrain(ctx.cfg, ctx.layout)
    provenance = {"config": config, "overrides": list(overrides or [])}

    def go(overwrite: bool) -> Any:
        if overwrite:
            Folder.at(e.url).remove(within=ctx.layout.base)
        return pretrain(ctx.cfg, e.url, provenance)

    return _reuse_or_run(e, ctx.force, go)


STAGE_FLOWS = {
    "pretrain": pretrain_flow,
    "ingest": ingest_flow,
    "prompts": prompts_flow,
    "synthesize": synthesize_flow,
    "pseudo-label": pseudo_label_flow,
    "refine": refine_flow,
    "train": train_flow,
    "evaluate": evaluate_flow,
}
ROUND_STAGES = {"pseudo-label", "refine", "train", "evaluate"}
