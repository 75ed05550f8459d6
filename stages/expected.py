"""What each stage expects to find committed: URL, identity (stage, config hash, input URLs) and settings.

The stage table (stages/table.py) names one of these functions per stage; the generic stage flow
(pipelines/stage_flows.py) decides reuse from exactly these values, and `clouds status`
(pipelines/status.py) classifies a run's artifacts from them, so the two cannot drift apart. Each one
also names the settings its config hash covers, keyed by dotted config key, both as the config holds
them now and as the artifact's lineage recorded them, so a stale artifact can name the key that changed.
The hash is `artifacts.identity.config_hash` of the settings the stage module itself hashes and records.

No Prefect here, and the stage modules (torch) are imported only when a hash is computed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from artifacts.identity import Identity, config_hash
from clouds.config import CloudsConfig
from clouds.layout import RunLayout, absolute_root

Settings = dict[str, Any]


def _none(_: dict[str, Any]) -> Settings | None:
    return None


@dataclass(frozen=True)
class Expected:
    """One artifact a flow builds or reuses: reused when `self.identity.is_current(url)` holds."""

    name: str  # how the flow names the step in its log and result ("train round 1")
    stage: str  # the stage its lineage must record
    url: str
    config_hash: str
    inputs: list[str]
    round: int | None = None
    covers: str = ""  # what the config hash covers, in words
    settings: Settings = field(default_factory=dict)  # dotted config key -> value the hash covers, now
    recorded: Callable[[dict[str, Any]], Settings | None] = _none  # lineage -> the same keys as recorded
    item: Any = None  # what a stage building several artifacts builds this one from (ingest: its dataset spec)

    @property
    def identity(self) -> Identity:
        return Identity(self.stage, self.config_hash, list(self.inputs))


def flatten(prefix: str, value: Any) -> Settings:
    """Nested dicts as dotted keys; lists and scalars are leaves (`train.crop_size: [64, 128]`)."""
    if isinstance(value, dict):
        out: Settings = {}
        for key, sub in value.items():
            out.update(flatten(f"{prefix}.{key}" if prefix else str(key), sub))
        return out
    return {prefix: value}


def _dump(section: Any) -> dict[str, Any]:
    return section.model_dump(mode="json")


def _params(lineage: dict[str, Any]) -> dict[str, Any] | None:
    params = lineage.get("params")
    return params if isinstance(params, dict) and params else None


def _dataset_key(cfg: CloudsConfig, name: str) -> str:
    if name == cfg.data.source.name:
        return "data.source"
    for i, target in enumerate(cfg.data.targets):
        if target.name == name:
            return f"data.targets.{i}"
    raise ValueError(f"dataset {name!r} is neither the source nor a target of the config")


# -- once per run ------------------------------------------------------------------------------------
def ingest(cfg: CloudsConfig, layout: RunLayout, spec: Any) -> Expected:
    from stages.ingest.stage import STAGE, ingest_settings

    key = _dataset_key(cfg, spec.name)

    def dataset(dumped: dict[str, Any]) -> Settings:  # `average` is evaluation's, not in ingest's hash
        return flatten(key, {k: v for k, v in dumped.items() if k != "average"})

    def recorded(lineage: dict[str, Any]) -> Settings | None:
        params = _params(lineage)
        if params is None or not isinstance(params.get("dataset"), dict):
            return None
        return {**dataset(params["dataset"]), "artifacts.image_format": params.get("image_format")}

    return Expected(
        f"ingest {spec.name}", STAGE, layout.data(spec.name),
        config_hash(ingest_settings(spec, cfg.artifacts.image_format)), [],
        covers=f"{key} (less average), artifacts.image_format", item=spec,
        settings={**dataset(_dump(spec)), "artifacts.image_format": cfg.artifacts.image_format}, recorded=recorded,
    )


def datasets(cfg: CloudsConfig, layout: RunLayout, k: int = 0) -> list[Expected]:
    """One artifact per dataset of the config, the source first (`k` unused: built once per run)."""
    return [ingest(cfg, layout, s) for s in (cfg.data.source, *cfg.data.targets)]


def prompts(cfg: CloudsConfig, layout: RunLayout, k: int = 0) -> list[Expected]:
    from stages.prompts.stage import STAGE, prompts_settings

    def recorded(lineage: dict[str, Any]) -> Settings | None:
        params = _params(lineage)
        if params is None or "prompts" not in params:
            return None
        return {**flatten("prompts", params["prompts"]), "run.seed": params.get("seed")}

    return [Expected(
        "prompts", STAGE, layout.once("prompts"), config_hash(prompts_settings(cfg.prompts, cfg.run.seed)), [],
        covers="prompts, run.seed",
        settings={**flatten("prompts", _dump(cfg.prompts)), "run.seed": cfg.run.seed}, recorded=recorded,
    )]


def synthesize(cfg: CloudsConfig, layout: RunLayout, k: int = 0) -> list[Expected]:
    from stages.synthesize.stage import STAGE, synthesize_settings

    a = cfg.artifacts

    def recorded(lineage: dict[str, Any]) -> Settings | None:
        params = _params(lineage)
        if params is None or "synthesize" not in params:
            return None
        return {**flatten("synthesize", params["synthesize"]), "run.seed": params.get("seed"),
                "artifacts.shard_max_samples": params.get("shard_max_samples"),
                "artifacts.image_format": params.get("image_format")}

    return [Expected(
        "synthesize", STAGE, layout.once("synthesize"),
        config_hash(synthesize_settings(cfg.synthesize, cfg.run.seed, a.shard_max_samples, a.image_format)),
        [layout.once("prompts")],
        covers="synthesize, run.seed, artifacts.shard_max_samples, artifacts.image_format",
        settings={**flatten("synthesize", _dump(cfg.synthesize)), "run.seed": cfg.run.seed,
                  "artifacts.shard_max_samples": a.shard_max_samples, "artifacts.image_format": a.image_format},
        recorded=recorded,
    )]


def pretrain(cfg: CloudsConfig, layout: RunLayout, k: int = 0) -> list[Expected]:
    """Not part of a run's DAG: `clouds run pretrain` builds it once, and a profile names its tower file."""
    from stages.pretrain.stage import STAGE, pretrain_params

    def recorded(lineage: dict[str, Any]) -> Settings | None:
        params = _params(lineage)
        if params is None or "pretrain" not in params:
            return None
        return {**flatten("pretrain", params["pretrain"]), "model.backbone.name": params.get("model")}

    return [Expected(
        "pretrain", STAGE, layout.once("pretrain"), config_hash(pretrain_params(cfg)), [],
        covers="pretrain, model.backbone.name",
        settings={**flatten("pretrain", _dump(cfg.pretrain)), "model.backbone.name": cfg.model.backbone.name},
        recorded=recorded,
    )]


def pretrain_sam(cfg: CloudsConfig, layout: RunLayout, k: int = 0) -> list[Expected]:
    """Not part of a run's DAG: `clouds run pretrain-sam` builds it once, and a profile's refine section names
    its SAM file."""
    from stages.pretrain.sam_stage import STAGE, pretrain_sam_params

    def recorded(lineage: dict[str, Any]) -> Settings | None:
        params = _params(lineage)
        if params is None or "pretrain_sam" not in params:
            return None
        return flatten("pretrain_sam", params["pretrain_sam"])

    return [Expected(
        "pretrain-sam", STAGE, layout.once("pretrain-sam"), config_hash(pretrain_sam_params(cfg)), [],
        covers="pretrain_sam", settings=flatten("pretrain_sam", _dump(cfg.pretrain_sam)), recorded=recorded,
    )]


# -- per round ---------------------------------------------------------------------------------------
def teacher_checkpoint(layout: RunLayout, k: int) -> str:
    """Round k is labelled by the EMA teacher saved by round k-1's training (round 0 = warm-up)."""
    return layout.round(k - 1, "train")


def pseudo_label(cfg: CloudsConfig, layout: RunLayout, k: int) -> list[Expected]:
    from stages.pseudo_label.stage import STAGE, pseudo_label_settings

    def recorded(lineage: dict[str, Any]) -> Settings | None:
        params = _params(lineage)
        return None if params is None else flatten("pseudo_label", params)

    return [Expected(
        "pseudo-label", STAGE, layout.round(k, STAGE), config_hash(pseudo_label_settings(cfg.pseudo_label)),
        [layout.once("synthesize"), teacher_checkpoint(layout, k)], round=k, covers="pseudo_label",
        settings=flatten("pseudo_label", _dump(cfg.pseudo_label)), recorded=recorded,
    )]


def refine(cfg: CloudsConfig, layout: RunLayout, k: int) -> list[Expected]:
    from stages.refine.stage import STAGE, refine_settings

    def recorded(lineage: dict[str, Any]) -> Settings | None:
        params = _params(lineage)
        if params is None or "refine" not in params:
            return None
        return {**flatten("refine", params["refine"]), "run.seed": params.get("seed")}

    return [Expected(
        "refine", STAGE, layout.round(k, "refine"), config_hash(refine_settings(cfg.refine, cfg.run.seed)),
        [layout.round(k, "pseudo-label")], round=k, covers="refine, run.seed",
        settings={**flatten("refine", _dump(cfg.refine)), "run.seed": cfg.run.seed}, recorded=recorded,
    )]


ITERS_KEY = "iters (the round's span: train.warmup_iters in round 0, else loop.round_iters or " \
            "train.joint_iters // loop.rounds)"


def train_layout(cfg: CloudsConfig, layout: RunLayout) -> RunLayout:
    """The layout a round's training names: Ray Train workers start in another directory, so their plan (and
    so the checkpoint's lineage) names an absolute root."""
    if cfg.executor.train_workers > 0:
        return RunLayout(absolute_root(layout.root), layout.run)
    return layout


def train(cfg: CloudsConfig, layout: RunLayout, k: int) -> list[Expected]:
    """Round k's checkpoint, as the plan torchrun and Ray Train run (stages.train.plan) names it."""
    from stages.train.plan import round_plan
    from stages.train.settings import STAGE, train_settings

    plan = round_plan(cfg, train_layout(cfg, layout), k)
    inputs = plan.inputs

    def recorded(lineage: dict[str, Any]) -> Settings | None:
        params = _params(lineage)
        if params is None or "train" not in params or "model" not in params:
            return None  # checkpoints committed before the lineage recorded these sections
        return {**flatten("model", params["model"]), **flatten("train", params["train"]),
                "run.seed": params.get("seed"), ITERS_KEY: params.get("iters")}

    return [Expected(
        f"train round {k}", STAGE, plan.output, config_hash(train_settings(cfg, plan.mode, plan.iters, inputs)), inputs,
        round=k, covers="model, train, run.seed, the round's iterations and its input URLs",
        settings={**flatten("model", _dump(cfg.model)), **flatten("train", _dump(cfg.train)),
                  "run.seed": cfg.run.seed, ITERS_KEY: plan.iters},
        recorded=recorded,
    )]


def evaluate(cfg: CloudsConfig, layout: RunLayout, k: int) -> list[Expected]:
    """Round k's scores on every target; none when the config names no target (nothing to evaluate)."""
    from stages.evaluate.stage import STAGE, evaluate_settings

    targets = {t.name: layout.data(t.name) for t in cfg.data.targets}
    if not targets:
        return []
    averages = {t.name: t.average for t in cfg.data.targets}
    index = {t.name: i for i, t in enumerate(cfg.data.targets)}

    def recorded(lineage: dict[str, Any]) -> Settings | None:
        params = _params(lineage)
        if params is None:
            return None
        rules = (lineage.get("stats") or {}).get("average") or {}
        return {**flatten("evaluate", params),
                **{f"data.targets.{index[n]}.average": rule for n, rule in rules.items() if n in index}}

    return [Expected(
        f"evaluate round {k}", STAGE, layout.round(k, "evaluate"), config_hash(evaluate_settings(cfg.evaluate, averages)),
        [layout.round(k, "train"), *targets.values()], round=k, covers="evaluate, data.targets.*.average",
        settings={**flatten("evaluate", _dump(cfg.evaluate)),
                  **{f"data.targets.{i}.average": t.average for i, t in enumerate(cfg.data.targets)}},
        recorded=recorded,
    )]
