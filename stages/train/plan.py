"""What round k trains on and where it writes: one plan for the train flow, torchrun and Ray Train.

The URLs come from the stage table (stages/table.py), the same place the flows and `clouds status` take
every other stage's output from.
"""

from __future__ import annotations

from dataclasses import dataclass

from artifacts import ArtifactError, is_committed
from clouds.config import CloudsConfig
from clouds.layout import RunLayout
from stages.table import STAGES


@dataclass(frozen=True)
class RoundPlan:
    """Round 0: source-only warm-up. Round k: source + round k's refined labels, continuing round k-1."""

    mode: str
    source: str
    synthetic: list[str]
    init: str | None
    iters: int
    output: str

    @property
    def inputs(self) -> list[str]:
        """The input URLs the checkpoint's lineage records, in the order its config hash covers them."""
        return [self.source, *self.synthetic] + ([self.init] if self.init else [])


def round_plan(cfg: CloudsConfig, layout: RunLayout, k: int) -> RoundPlan:
    """Round k's plan without checking that its inputs exist (`clouds status` asks before they do)."""
    train = STAGES["train"]
    source, output = layout.data(cfg.data.source.name), train.output(layout, k)
    if k == 0:
        return RoundPlan("warmup", source, [], None, cfg.train.warmup_iters, output)
    iters = cfg.loop.round_iters or max(1, cfg.train.joint_iters // cfg.loop.rounds)
    return RoundPlan("joint", source, [STAGES["refine"].output(layout, k)], train.output(layout, k - 1), iters, output)


def plan_round(cfg: CloudsConfig, layout: RunLayout, k: int) -> RoundPlan:
    """Round k's plan; refuses a round whose inputs are not committed artifacts, naming the first."""
    plan = round_plan(cfg, layout, k)
    needed = [("source", plan.source), *(("refined labels", u) for u in plan.synthetic)]
    if plan.init:
        needed.append(("previous round's checkpoint", plan.init))
    for what, url in needed:
        if not is_committed(url):
            raise ArtifactError(f"round {k} trains on the {what} at {url}, which is not a committed artifact: "
                                "run the stages before it first")
    return plan
