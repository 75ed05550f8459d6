"""The stage graph as data: one entry per stage, and everything that walks the graph reads it.

The generic stage flow and the parent flow (pipelines/), the Ray shard recipe (pipelines/jobs.py), the
torchrun launcher (stages/train/plan.py), the results reader (stages/report/rounds.py) and `clouds status`
take stage names, folders, run order, identities and job builders from here. Adding a stage is one entry
below plus its stage module (docs/ARCHITECTURE.md).

No Prefect here; stage modules are imported only when a job is built, an artifact built or a hash computed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from clouds.config import CloudsConfig
from clouds.layout import RunLayout
from stages import expected as exp
from stages.expected import Expected
from stages.sharded import ShardedJob

JobBuilder = Callable[[CloudsConfig, RunLayout, int, bool, bool], ShardedJob]
"""(cfg, layout, round, overwrite, attach) -> the stage's shard-parallel job; `attach` in a worker process."""


@dataclass(frozen=True)
class BuildRequest:
    """One artifact to build in the flow's process (stages that are not shard-parallel)."""

    cfg: CloudsConfig
    layout: RunLayout
    round: int
    artifact: Expected
    overwrite: bool  # the URL holds a stale commit (or --force): replace it
    provenance: dict[str, Any] = field(default_factory=dict)  # how the run was asked for (config, overrides)
    trainer: Callable[[CloudsConfig, Any], Any] | None = None  # train: runs the round's plan elsewhere (Ray Train)


@dataclass(frozen=True)
class StageEntry:
    """A stage: its name (flow name, lineage stage and folder), where it sits in a run, what it expects to
    find committed (`expected`: URL, identity, settings) and how it is built: `job` (shards, run where
    `executor` says) or `build` (in the flow's process)."""

    name: str
    summary: str  # the stage flow's docstring
    per_round: bool  # round-{k}/{name}, else {name} once per run
    first_round: int  # the first round whose DAG needs it (0: the warm-up round)
    expected: Callable[[CloudsConfig, RunLayout, int], list[Expected]]
    job: JobBuilder | None = None
    build: Callable[[BuildRequest], Any] | None = None
    in_loop: bool = True  # built by `full-round` / `loop` (pretrain: only on request)
    fans_out: bool = False  # one artifact per item (ingest: per dataset), built as concurrent tasks
    trains: bool = False  # the build may run on Ray Train (executor.train_workers > 0)
    when_empty: str = ""  # logged when the config asks for no artifact of this stage

    def output(self, layout: RunLayout, k: int = 0) -> str:
        """The stage's folder in round k (once-per-run stages: one folder, `k` unused)."""
        return layout.round(k, self.name) if self.per_round else layout.once(self.name)

    def rounds(self, last: int) -> list[int]:
        """The rounds a run up to round `last` builds this stage in (once-per-run stages: one, the first)."""
        if not self.per_round:
            return [self.first_round] if self.first_round <= last else []
        return list(range(self.first_round, last + 1))


# -- builders: each calls its stage module with the config values that stage reads ------------------
def _ingest(req: BuildRequest) -> Any:
    from stages.ingest.stage import ingest

    return ingest(req.artifact.item, req.artifact.url, req.cfg.artifacts, config_hash=req.artifact.config_hash,
                  overwrite=req.overwrite)


def _prompts(req: BuildRequest) -> Any:
    from stages.prompts.stage import write_prompts

    cfg = req.cfg
    return write_prompts(req.artifact.url, cfg.prompts, cfg.run.seed, device=cfg.run.device,
                         shard_max_samples=cfg.artifacts.shard_max_samples, overwrite=req.overwrite)


def _pretrain(req: BuildRequest) -> Any:
    from artifacts import Folder
    from stages.pretrain.stage import pretrain

    if req.overwrite:
        Folder.at(req.artifact.url).remove(within=req.layout.base)
    return pretrain(req.cfg, req.artifact.url, req.provenance)


def _pretrain_sam(req: BuildRequest) -> Any:
    from artifacts import Folder
    from stages.pretrain.sam_stage import pretrain_sam

    if req.overwrite:
        Folder.at(req.artifact.url).remove(within=req.layout.base)
    return pretrain_sam(req.cfg, req.artifact.url, req.provenance)


def _train(req: BuildRequest) -> Any:
    """Round k's plan (the one torchrun's launcher trains), here or on `req.trainer` (Ray Train)."""
    from artifacts import Folder
    from stages.train.plan import plan_round
    from stages.train.recipe import TrainRecipe

    layout = exp.train_layout(req.cfg, req.layout)
    plan = plan_round(req.cfg, layout, req.round)  # refuses a round whose inputs are not committed
    if req.overwrite:
        Folder.at(plan.output).remove(within=layout.base)
    if req.trainer is not None:
        return req.trainer(req.cfg, plan)
    return TrainRecipe.of(req.cfg, plan).run()


def _synthesize_job(cfg: CloudsConfig, layout: RunLayout, k: int, overwrite: bool, attach: bool) -> ShardedJob:
    from stages.synthesize.stage import prepare_synthesize

    return prepare_synthesize(
        layout.once("prompts"), layout.once("synthesize"), cfg.synthesize, cfg.run.seed,
        cfg.artifacts.shard_max_samples, device=cfg.run.device, image_format=cfg.artifacts.image_format,
        overwrite=overwrite, attach=attach, verify=cfg.artifacts.verify_reads,
    )


def _pseudo_label_job(cfg: CloudsConfig, layout: RunLayout, k: int, overwrite: bool, attach: bool) -> ShardedJob:
    from clouds.device import resolve_device
    from stages.pseudo_label.stage import prepare_pseudo_label

    return prepare_pseudo_label(
        None, layout.once("synthesize"), exp.teacher_checkpoint(layout, k), layout.round(k, "pseudo-label"),
        cfg.pseudo_label, device=resolve_device(cfg.run.device), overwrite=overwrite, attach=attach,
        verify=cfg.artifacts.verify_reads,
    )


def _refine_job(cfg: CloudsConfig, layout: RunLayout, k: int, overwrite: bool, attach: bool) -> ShardedJob:
    from clouds.device import resolve_device
    from stages.refine.stage import prepare_refine

    return prepare_refine(
        layout.round(k, "pseudo-label"), layout.round(k, "refine"), cfg.refine, cfg.run.seed,
        cfg.artifacts.shard_max_samples, device=resolve_device(cfg.run.device), overwrite=overwrite, attach=attach,
        verify=cfg.artifacts.verify_reads,
    )


def _evaluate_job(cfg: CloudsConfig, layout: RunLayout, k: int, overwrite: bool, attach: bool) -> ShardedJob:
    """A folder artifact: nothing is prepared on storage until `finish`, so `attach` changes nothing."""
    from artifacts import Folder
    from stages.evaluate.stage import prepare_evaluate

    url = layout.round(k, "evaluate")
    if overwrite:
        Folder.at(url).remove(within=layout.base)
    targets = {t.name: layout.data(t.name) for t in cfg.data.targets}
    averages = {t.name: t.average for t in cfg.data.targets}
    return prepare_evaluate(layout.round(k, "train"), targets, cfg.evaluate, url,
                            device=cfg.run.device, averages=averages, verify=cfg.artifacts.verify_reads)


def stage_table(entries: Iterable[StageEntry]) -> Mapping[str, StageEntry]:
    """A read-only table in run order (within a round, entries run in the order given)."""
    table = {e.name: e for e in entries}
    return MappingProxyType(table)


STAGES: Mapping[str, StageEntry] = stage_table([
    StageEntry("pretrain", "Label-free pretraining of the image tower on streets in every domain (once; not part "
               "of a round).\n\nIts `image_tower.safetensors` is what `model.backbone.pretrained` names (the tiny "
               "profile ships one).", per_round=False, first_round=0, expected=exp.pretrain, build=_pretrain,
               in_loop=False),
    StageEntry("pretrain-sam", "Trains a small Segment Anything model on the toy world's object masks, class-agnostic "
               "(once; not part of a round).\n\nIts `sam.safetensors` is what `refine.checkpoint` names (the tiny "
               "profile ships one).", per_round=False, first_round=0, expected=exp.pretrain_sam,
               build=_pretrain_sam, in_loop=False),
    StageEntry("ingest", "Turn the source and every target dataset of the config into artifacts.", per_round=False,
               first_round=0, expected=exp.datasets, build=_ingest, fans_out=True),
    StageEntry("prompts", "The LLM (or the template writer) writes the street-scene prompts, once per run.",
               per_round=False, first_round=1, expected=exp.prompts, build=_prompts),
    StageEntry("synthesize", "The diffusion model (or toycity) renders images from the prompts; one task per shard.",
               per_round=False, first_round=1, expected=exp.synthesize, job=_synthesize_job),
    StageEntry("pseudo-label", "The EMA teacher of round k-1 labels every generated image; one task per shard.",
               per_round=True, first_round=1, expected=exp.pseudo_label, job=_pseudo_label_job),
    StageEntry("refine", "SAM (or superpixels) refines round k's pseudo labels; one task per shard.",
               per_round=True, first_round=1, expected=exp.refine, job=_refine_job),
    StageEntry("train", "Round 0: source-only warm-up. Round k: source + round k's refined labels, continuing "
               "round k-1.", per_round=True, first_round=0, expected=exp.train, build=_train, trains=True),
    StageEntry("evaluate", "mIoU of round k's student on every target artifact (per domain, per class).",
               per_round=True, first_round=0, expected=exp.evaluate, job=_evaluate_job,
               when_empty="the config names no target datasets: nothing to evaluate"),
])


def round_stages(table: Mapping[str, StageEntry] = STAGES) -> list[str]:
    return [e.name for e in table.values() if e.per_round]


def run_order(last: int, table: Mapping[str, StageEntry] = STAGES) -> list[tuple[StageEntry, int]]:
    """(stage, round) for everything round `last` needs, in DAG order: round by round, each round's stages in
    table order, a once-per-run stage in the first round that needs it."""
    return [(e, k) for k in range(last + 1) for e in table.values() if e.in_loop and k in e.rounds(last)]


def report(layout: RunLayout, last: int, table: Mapping[str, StageEntry] = STAGES) -> Expected:
    """The HTML report `clouds run full-round/loop` rewrites at its end (pipelines.clouds_flow.publish): it
    names every per-round artifact of rounds 0..last as an input, and has no config hash of its own."""
    inputs = [e.output(layout, k) for e, k in run_order(last, table) if e.per_round]
    return Expected("report", "report", layout.report, "-", inputs, covers="nothing (rewritten by every run)")


def run_artifacts(cfg: CloudsConfig, layout: RunLayout, last: int,
                  table: Mapping[str, StageEntry] = STAGES) -> list[Expected]:
    """Every artifact `clouds run loop --rounds last` builds, in the order the flows build them, the report
    last."""
    out = [e for entry, k in run_order(last, table) for e in entry.expected(cfg, layout, k)]
    out.append(report(layout, last, table))
    return out
