"""One Prefect flow per stage. Flows only wire stage logic (stages/) to artifact URLs (layout.py)."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NONE

from artifacts import Folder
from pipelines.context import DEFAULT_CONFIG, RunContext
from pipelines.jobs import JobRecipe, teacher_checkpoint
from pipelines.layout import RunLayout, absolute_root
from pipelines.tasks import reuse_or_run, run_sharded


def _ctx(config: str, overrides: list[str] | None, root: str | None, run: str | None, force: bool) -> RunContext:
    return RunContext.load(config, overrides, root, run, force)


@task(name="ingest-dataset", cache_policy=NONE, task_run_name="ingest-{spec.name}")
def ingest_dataset(ctx: RunContext, spec: Any) -> dict[str, Any]:
    from stages.ingest.stage import default_config_hash, ingest

    url = ctx.layout.data(spec.name)
    h = default_config_hash(spec, ctx.cfg.artifacts)
    return reuse_or_run(
        f"ingest {spec.name}", url, "ingest", h, [], ctx.force,
        lambda overwrite: ingest(spec, url, ctx.cfg.artifacts, config_hash=h, overwrite=overwrite),
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
    from stages.prompts.stage import prompts_config_hash, write_prompts

    ctx = _ctx(config, overrides, root, run, force)
    url, cfg = ctx.layout.once("prompts"), ctx.cfg
    return reuse_or_run(
        "prompts", url, "prompts", prompts_config_hash(cfg.prompts, cfg.run.seed), [], ctx.force,
        lambda overwrite: write_prompts(url, cfg.prompts, cfg.run.seed, device=cfg.run.device,
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
    from stages.synthesize.stage import synthesize_config_hash

    ctx = _ctx(config, overrides, root, run, force)
    cfg = ctx.cfg
    h = synthesize_config_hash(cfg.synthesize, cfg.run.seed, cfg.artifacts.shard_max_samples, cfg.artifacts.image_format)
    return reuse_or_run(
        "synthesize", ctx.layout.once("synthesize"), "synthesize", h, [ctx.layout.once("prompts")], ctx.force,
        lambda overwrite: run_stage_shards(ctx, "synthesize", 0, overwrite),
    )


@flow(name="pseudo-label")
def pseudo_label_flow(
    config: str = DEFAULT_CONFIG, overrides: list[str] | None = None, root: str | None = None,
    run: str | None = None, round: int = 1, force: bool = False,
) -> dict[str, Any]:
    """The EMA teacher of round k-1 labels every generated image; one task per shard."""
    from stages.pseudo_label.stage import config_hash

    ctx = _ctx(config, overrides, root, run, force)
    inputs = [ctx.layout.once("synthesize"), teacher_checkpoint(ctx.layout, round)]
    return reuse_or_run(
        "pseudo-label", ctx.layout.round(round, "pseudo-label"), "pseudo-label", config_hash(ctx.cfg.pseudo_label),
        inputs, ctx.force, lambda overwrite: run_stage_shards(ctx, "pseudo-label", round, overwrite),
    )


@flow(name="refine")
def refine_flow(
    config: str = DEFAULT_CONFIG, overrides: list[str] | None = None, root: str | None = None,
    run: str | None = None, round: int = 1, force: bool = False,
) -> dict[str, Any]:
    """SAM (or superpixels) refines round k's pseudo labels; one task per shard."""
    from stages.refine.stage import config_hash

    ctx = _ctx(config, overrides, root, run, force)
    cfg = ctx.cfg
    return reuse_or_run(
        "refine", ctx.layout.round(round, "refine"), "refine", config_hash(cfg.refine, cfg.run.seed),
        [ctx.layout.round(round, "pseudo-label")], ctx.force,
        lambda overwrite: run_stage_shards(ctx, "refine", round, overwrite),
    )


@flow(name="train")
def train_flow(
    config: str = DEFAULT_CONFIG, overrides: list[str] | None = None, root: str | None = None,
    run: str | None = None, round: int = 0, force: bool = False,
) -> dict[str, Any]:
    """Round 0: source-only warm-up. Round k: source + round k's refined labels, continuing round k-1."""
    from stages.train.launch import plan_round
    from stages.train.stage import train, train_config_hash

    ctx = _ctx(config, overrides, root, run, force)
    cfg = ctx.cfg
    on_ray = cfg.executor.train_workers > 0
    # The same plan torchrun's launcher trains, so a span trained there is reused here. Ray Train workers
    # start in another directory: their plan (and so the checkpoint's lineage) names an absolute root.
    layout = RunLayout(absolute_root(ctx.layout.root), ctx.layout.run) if on_ray else ctx.layout
    plan = plan_round(cfg, layout, round)
    url = plan.output
    inputs = [plan.source, *plan.synthetic] + ([plan.init] if plan.init else [])
    h = train_config_hash(cfg, plan.mode, plan.iters, inputs)

    def go(overwrite: bool) -> Any:
        if overwrite:
            Folder.at(url).remove()
        if on_ray:
            from pipelines.ray_train import train_on_ray

            return train_on_ray(cfg, plan, cfg.executor, name=f"{layout.run}-round-{round:03d}-train")
        return train(cfg, plan.source, plan.synthetic, url, init_checkpoint=plan.init, iters=plan.iters,
                     mode=plan.mode)

    return reuse_or_run(f"train round {round}", url, "train", h, inputs, ctx.force, go)


@flow(name="evaluate")
def evaluate_flow(
    config: str = DEFAULT_CONFIG, overrides: list[str] | None = None, root: str | None = None,
    run: str | None = None, round: int = 0, force: bool = False,
) -> dict[str, Any]:
    """mIoU of round k's student on every target artifact (per domain, per class)."""
    from stages.evaluate.stage import evaluate_config_hash

    ctx = _ctx(config, overrides, root, run, force)
    cfg = ctx.cfg
    checkpoint, url = ctx.layout.round(round, "train"), ctx.layout.round(round, "evaluate")
    targets = {t.name: ctx.layout.data(t.name) for t in cfg.data.targets}
    if not targets:
        get_run_logger().warning("the config names no target datasets: nothing to evaluate")
        return {"stage": "evaluate", "url": None, "reused": False}
    return reuse_or_run(f"evaluate round {round}", url, "evaluate", evaluate_config_hash(cfg.evaluate),
                        [checkpoint, *targets.values()], ctx.force,
                        lambda overwrite: run_stage_shards(ctx, "evaluate", round, overwrite))


STAGE_FLOWS = {
    "ingest": ingest_flow,
    "prompts": prompts_flow,
    "synthesize": synthesize_flow,
    "pseudo-label": pseudo_label_flow,
    "refine": refine_flow,
    "train": train_flow,
    "evaluate": evaluate_flow,
}
ROUND_STAGES = {"pseudo-label", "refine", "train", "evaluate"}
