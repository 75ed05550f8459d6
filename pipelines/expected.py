"""What each stage flow expects to find committed: URL, stage, config hash and input URLs.

The flows (pipelines/stage_flows.py) decide reuse from exactly these values, and `clouds status`
(pipelines/status.py) classifies a run's artifacts from them, so the two cannot drift apart. Each one
also names the settings its config hash covers, keyed by dotted config key, both as the config holds
them now and as the artifact's lineage recorded them, so a stale artifact can name the key that changed.

No Prefect here, and the stage modules (torch) are imported only when a hash is computed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from clouds.config import CloudsConfig
from pipelines.jobs import teacher_checkpoint
from pipelines.layout import RunLayout, absolute_root

Settings = dict[str, Any]


def _none(_: dict[str, Any]) -> Settings | None:
    return None


@dataclass(frozen=True)
class Expected:
    """One artifact a flow builds or reuses: reused when `pipelines.reuse.is_up_to_date(url, stage,
    config_hash, inputs)` holds."""

    name: str  # how the flow names the step in its log and result ("train round 1")
    stage: str  # the stage its lineage must record
    url: str
    config_hash: str
    inputs: list[str]
    round: int | None = None
    covers: str = ""  # what the config hash covers, in words
    settings: Settings = field(default_factory=dict)  # dotted config key -> value the hash covers, now
    recorded: Callable[[dict[str, Any]], Settings | None] = _none  # lineage -> the same keys as recorded


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
    from stages.ingest.stage import STAGE, default_config_hash

    key = _dataset_key(cfg, spec.name)

    def dataset(dumped: dict[str, Any]) -> Settings:  # `average` is evaluation's, not in ingest's hash
        return flatten(key, {k: v for k, v in dumped.items() if k != "average"})

    def recorded(lineage: dict[str, Any]) -> Settings | None:
        params = _params(lineage)
        if params is None or not isinstance(params.get("dataset"), dict):
            return None
        return {**dataset(params["dataset"]), "artifacts.image_format": params.get("image_format")}

    return Expected(
        f"ingest {spec.name}", STAGE, layout.data(spec.name), default_config_hash(spec, cfg.artifacts), [],
        covers=f"{key} (less average), artifacts.image_format",
        settings={**dataset(_dump(spec)), "artifacts.image_format": cfg.artifacts.image_format}, recorded=recorded,
    )


def datasets(cfg: CloudsConfig, layout: RunLayout) -> list[Expected]:
    return [ingest(cfg, layout, s) for s in (cfg.data.source, *cfg.data.targets)]


def prompts(cfg: CloudsConfig, layout: RunLayout) -> Expected:
    from stages.prompts.stage import STAGE, prompts_config_hash

    def recorded(lineage: dict[str, Any]) -> Settings | None:
        params = _params(lineage)
        if params is None or "prompts" not in params:
            return None
        return {**flatten("prompts", params["prompts"]), "run.seed": params.get("seed")}

    return Expected(
        "prompts", STAGE, layout.once("prompts"), prompts_config_hash(cfg.prompts, cfg.run.seed), [],
        covers="prompts, run.seed",
        settings={**flatten("prompts", _dump(cfg.prompts)), "run.seed": cfg.run.seed}, recorded=recorded,
    )


def synthesize(cfg: CloudsConfig, layout: RunLayout) -> Expected:
    from stages.synthesize.stage import STAGE, synthesize_config_hash

    a = cfg.artifacts

    def recorded(lineage: dict[str, Any]) -> Settings | None:
        params = _params(lineage)
        if params is None or "synthesize" not in params:
            return None
        return {**flatten("synthesize", params["synthesize"]), "run.seed": params.get("seed"),
                "artifacts.shard_max_samples": params.get("shard_max_samples"),
                "artifacts.image_format": params.get("image_format")}

    return Expected(
        "synthesize", STAGE, layout.once("synthesize"),
        synthesize_config_hash(cfg.synthesize, cfg.run.seed, a.shard_max_samples, a.image_format),
        [layout.once("prompts")],
        covers="synthesize, run.seed, artifacts.shard_max_samples, artifacts.image_format",
        settings={**flatten("synthesize", _dump(cfg.synthesize)), "run.seed": cfg.run.seed,
                  "artifacts.shard_max_samples": a.shard_max_samples, "artifacts.image_format": a.image_format},
        recorded=recorded,
    )


def pretrain(cfg: CloudsConfig, layout: RunLayout) -> Expected:
    """Not part of a run's DAG: `clouds run pretrain` builds it once, and a profile names its tower file."""
    from stages.pretrain.stage import STAGE, pretrain_config_hash

    def recorded(lineage: dict[str, Any]) -> Settings | None:
        params = _params(lineage)
        if params is None or "pretrain" not in params:
            return None
        return {**flatten("pretrain", params["pretrain"]), "model.backbone.name": params.get("model")}

    return Expected(
        "pretrain", STAGE, layout.once("pretrain"), pretrain_config_hash(cfg), [],
        covers="pretrain, model.backbone.name",
        settings={**flatten("pretrain", _dump(cfg.pretrain)), "model.backbone.name": cfg.model.backbone.name},
        recorded=recorded,
    )


# -- per round ---------------------------------------------------------------------------------------
def pseudo_label(cfg: CloudsConfig, layout: RunLayout, k: int) -> Expected:
    from stages.pseudo_label.stage import config_hash

    def recorded(lineage: dict[str, Any]) -> Settings | None:
        params = _params(lineage)
        return None if params is None else flatten("pseudo_label", params)

    return Expected(
        "pseudo-label", "pseudo-label", layout.round(k, "pseudo-label"), config_hash(cfg.pseudo_label),
        [layout.once("synthesize"), teacher_checkpoint(layout, k)], round=k, covers="pseudo_label",
        settings=flatten("pseudo_label", _dump(cfg.pseudo_label)), recorded=recorded,
    )


def refine(cfg: CloudsConfig, layout: RunLayout, k: int) -> Expected:
    from stages.refine.stage import STAGE, config_hash

    def recorded(lineage: dict[str, Any]) -> Settings | None:
        params = _params(lineage)
        if params is None or "refine" not in params:
            return None
        return {**flatten("refine", params["refine"]), "run.seed": params.get("seed")}

    return Expected(
        "refine", STAGE, layout.round(k, "refine"), config_hash(cfg.refine, cfg.run.seed),
        [layout.round(k, "pseudo-label")], round=k, covers="refine, run.seed",
        settings={**flatten("refine", _dump(cfg.refine)), "run.seed": cfg.run.seed}, recorded=recorded,
    )


ITERS_KEY = "iters (the round's span: train.warmup_iters in round 0, else loop.round_iters or " \
            "train.joint_iters // loop.rounds)"


def train(cfg: CloudsConfig, layout: RunLayout, k: int, *, check: bool = True) -> tuple[Expected, Any, RunLayout]:
    """Round k's checkpoint, the plan it trains (stages.train.launch, the same torchrun runs) and the layout
    the plan names. `check=True` refuses a round whose inputs are not committed (as the flow does)."""
    from stages.train.launch import plan_round, round_plan
    from stages.train.stage import STAGE, train_config_hash

    # Ray Train workers start in another directory: their plan (and so the checkpoint's lineage) names an
    # absolute root.
    if cfg.executor.train_workers > 0:
        layout = RunLayout(absolute_root(layout.root), layout.run)
    plan = (plan_round if check else round_plan)(cfg, layout, k)
    inputs = [plan.source, *plan.synthetic] + ([plan.init] if plan.init else [])

    def recorded(lineage: dict[str, Any]) -> Settings | None:
        params = _params(lineage)
        if params is None or "train" not in params or "model" not in params:
            return None  # checkpoints committed before the lineage recorded these sections
        return {**flatten("model", params["model"]), **flatten("train", params["train"]),
                "run.seed": params.get("seed"), ITERS_KEY: params.get("iters")}

    expected = Expected(
        f"train round {k}", STAGE, plan.output, train_config_hash(cfg, plan.mode, plan.iters, inputs), inputs,
        round=k, covers="model, train, run.seed, the round's iterations and its input URLs",
        settings={**flatten("model", _dump(cfg.model)), **flatten("train", _dump(cfg.train)),
                  "run.seed": cfg.run.seed, ITERS_KEY: plan.iters},
        recorded=recorded,
    )
    return expected, plan, layout


def evaluate(cfg: CloudsConfig, layout: RunLayout, k: int) -> Expected | None:
    """Round k's scores on every target; None when the config names no target (nothing to evaluate)."""
    from stages.evaluate.stage import STAGE, evaluate_config_hash

    targets = {t.name: layout.data(t.name) for t in cfg.data.targets}
    if not targets:
        return None
    averages = {t.name: t.average for t in cfg.data.targets}
    index = {t.name: i for i, t in enumerate(cfg.data.targets)}

    def recorded(lineage: dict[str, Any]) -> Settings | None:
        params = _params(lineage)
        if params is None:
            return None
        rules = (lineage.get("stats") or {}).get("average") or {}
        return {**flatten("evaluate", params),
                **{f"data.targets.{index[n]}.average": rule for n, rule in rules.items() if n in index}}

    return Expected(
        f"evaluate round {k}", STAGE, layout.round(k, "evaluate"), evaluate_config_hash(cfg.evaluate, averages),
        [layout.round(k, "train"), *targets.values()], round=k, covers="evaluate, data.targets.*.average",
        settings={**flatten("evaluate", _dump(cfg.evaluate)),
                  **{f"data.targets.{i}.average": t.average for i, t in enumerate(cfg.data.targets)}},
        recorded=recorded,
    )


ROUND_STAGES = ("pseudo-label", "refine", "train", "evaluate")


def report(layout: RunLayout, last: int) -> Expected:
    """The HTML report `clouds run full-round/loop` rewrites at its end (pipelines.clouds_flow.publish): it
    names every committed artifact of rounds 0..last as an input, and has no config hash of its own."""
    inputs = [layout.round(0, s) for s in ("train", "evaluate")]
    inputs += [layout.round(k, s) for k in range(1, last + 1) for s in ROUND_STAGES]
    return Expected("report", "report", layout.report, "-", inputs, covers="nothing (rewritten by every run)")


def run_artifacts(cfg: CloudsConfig, layout: RunLayout, last: int) -> list[Expected]:
    """Every artifact `clouds run loop --rounds last` builds, in the order the flows build them
    (pipelines.clouds_flow._run_rounds), the report last."""
    out = datasets(cfg, layout)
    out.append(train(cfg, layout, 0, check=False)[0])
    out += [e for e in [evaluate(cfg, layout, 0)] if e is not None]
    if last >= 1:
        out += [prompts(cfg, layout), synthesize(cfg, layout)]
    for k in range(1, last + 1):
        out += [pseudo_label(cfg, layout, k), refine(cfg, layout, k), train(cfg, layout, k, check=False)[0]]
        out += [e for e in [evaluate(cfg, layout, k)] if e is not None]
    out.append(report(layout, last))
    return out
