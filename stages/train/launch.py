"""Run one round's training as torchrun's entry point: `torchrun --nproc_per_node=N -m stages.train.launch ...`.

Each process joins the group torchrun describes and runs the same `TrainRecipe` the train flow and Ray Train
run, on the same artifact URLs (the stage table's, through stages.train.plan), so a multi-GPU round is a drop-in
replacement for `clouds run train`. Without torchrun it is a one-process run. Prefect is not started here: the
flow's reuse/--force handling stays with the flow, and the recipe itself skips an already committed checkpoint.
The process group is this launcher's: it leaves it after the recipe, also after a failure.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

from clouds.config import load_config
from clouds.layout import RunLayout
from clouds.threads import apply_num_threads
from stages.train.distributed import init_from_env, shutdown
from stages.train.plan import plan_round
from stages.train.recipe import TrainRecipe

log = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m stages.train.launch", description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="config YAML")
    parser.add_argument("--root", default=None, help="run root URL (default: run.root of the config)")
    # Not `--run`: torchrun's own parser would take it for an abbreviation of its --run-path.
    parser.add_argument("--run-name", dest="run", default=None, help="run name (default: run.name of the config)")
    parser.add_argument("--round", type=int, default=0, help="0 = source-only warm-up, k >= 1 = joint round k")
    parser.add_argument("--iters", type=int, default=None, help="override the round's iteration count")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="config override a.b=value")
    args = parser.parse_args(argv)
    cfg = load_config(args.config, args.overrides)
    apply_num_threads(cfg.run.num_threads)
    layout = RunLayout(args.root or cfg.run.root, args.run or cfg.run.name)
    plan = plan_round(cfg, layout, args.round)
    rank, world_size, _ = init_from_env()
    logging.basicConfig(level=logging.INFO if rank == 0 else logging.WARNING,
                        format=f"[rank {rank}/{world_size}] %(levelname)s %(name)s: %(message)s")
    try:
        return TrainRecipe.of(cfg, plan, iters=args.iters).run()
    finally:
        shutdown()


if __name__ == "__main__":
    main()
