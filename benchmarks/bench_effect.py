"""Does the CLOUDS loop beat training on the source alone? Seeds, mean and spread, equal iterations.

One run of the demo cannot say: seeds move the tiny profile's target mIoU by about as much as the method
does (issue 15). For each seed this runs the profile's whole loop (`clouds run loop`) and a source-only
control trained for the same number of iterations (`clouds run full-round --round 0` with
`train.warmup_iters` = warm-up + rounds x round iterations), then prints, per domain, mean ± sample standard
deviation over seeds for every round and the control, the paired difference last round − control per seed,
and the pseudo-label mIoU before and after refinement.

    python benchmarks/bench_effect.py --config configs/tiny.yaml --seeds 0 1 2 --parallel 2 --root /tmp/effect

Runs that are already committed under `--root` are reused (the CLI's own reuse), so an interrupted
benchmark resumes. Each run uses the profile's `run.num_threads` (1 by default).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from clouds.config import load_config
from clouds.layout import RunLayout
from stages.report import RoundResult
from stages.report.figures import is_in_domain
from stages.report.rounds import collect_rounds

CLOUDS = str(Path(sys.executable).with_name("clouds"))


def _commands(config: str, root: str, seed: int, control_iters: int, extra: list[str]) -> dict[str, list[str]]:
    sets = [a for kv in [f"run.seed={seed}", *extra] for a in ("--set", kv)]
    common = ["--config", config, "--root", root]
    return {
        f"s{seed}": [CLOUDS, "run", "loop", *common, "--run", f"s{seed}", *sets],
        f"control-s{seed}": [CLOUDS, "run", "full-round", "--round", "0", *common, "--run", f"control-s{seed}",
                             *sets, "--set", f"train.warmup_iters={control_iters}"],
    }


def _run(name: str, cmd: list[str], logs: Path) -> float:
    started = time.monotonic()
    with open(logs / f"{name}.log", "w") as log:
        rc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT).returncode
    if rc != 0:
        raise SystemExit(f"bench_effect: {' '.join(cmd)} failed (exit {rc}); see {logs / f'{name}.log'}")
    return time.monotonic() - started


def _cell(values: list[float]) -> str:
    if not values:
        return "–"
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.mean(values):.1f} ± {100 * spread:.1f}"


def _target_mean(r: RoundResult) -> float:
    targets = [v for d, v in r.miou.items() if not is_in_domain(d)]  # as the report averages
    return sum(targets) / len(targets)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/tiny.yaml")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--root", default="/tmp/clouds-effect", help="where the runs go (reused if committed)")
    parser.add_argument("--parallel", type=int, default=2, help="runs at once (each uses run.num_threads)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="config override for every run")
    args = parser.parse_args()

    cfg = load_config(args.config, args.overrides)
    rounds = cfg.loop.rounds
    per_round = cfg.loop.round_iters or max(1, cfg.train.joint_iters // rounds)  # as stages/train/launch.py
    control_iters = cfg.train.warmup_iters + rounds * per_round
    logs = Path(args.root) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    jobs = {name: cmd for s in args.seeds
            for name, cmd in _commands(args.config, args.root, s, control_iters, args.overrides).items()}
    started = time.monotonic()
    with ThreadPoolExecutor(args.parallel) as pool:
        walls = dict(zip(jobs, pool.map(lambda item: _run(item[0], item[1], logs), jobs.items()), strict=True))

    loops = {s: collect_rounds(RunLayout(args.root, f"s{s}"), rounds) for s in args.seeds}
    controls = {s: collect_rounds(RunLayout(args.root, f"control-s{s}"), 0)[0] for s in args.seeds}
    domains = sorted(controls[args.seeds[0]].miou)
    print(f"command: python {' '.join(sys.argv)}")
    print(f"profile {args.config}: warm-up {cfg.train.warmup_iters} it + {rounds} rounds x {per_round} it; "
          f"control: source only, {control_iters} it; seeds {args.seeds}; mIoU % (mean ± sd over seeds)")
    header = ["run", *domains, "target mean", "pseudo teacher", "pseudo refined"]
    rows = []
    for k in range(rounds + 1):
        rs = [loops[s][k] for s in args.seeds]
        label = "round 0 (source only)" if k == 0 else f"round {k}"
        rows.append([label, *[_cell([r.miou[d] for r in rs]) for d in domains], _cell([_target_mean(r) for r in rs]),
                     _cell([r.pseudo_before for r in rs if r.pseudo_before is not None]),
                     _cell([r.pseudo_after for r in rs if r.pseudo_after is not None])])
    cs = [controls[s] for s in args.seeds]
    rows.append([f"control ({control_iters} it)", *[_cell([r.miou[d] for r in cs]) for d in domains],
                 _cell([_target_mean(r) for r in cs]), "–", "–"])
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))
    diffs = [_target_mean(loops[s][rounds]) - _target_mean(controls[s]) for s in args.seeds]
    print(f"round {rounds} - control, target mean, per seed: " + ", ".join(f"{100 * d:+.1f}" for d in diffs)
          + f"; mean {100 * statistics.mean(diffs):+.1f}, better in {sum(d > 0 for d in diffs)}/{len(diffs)} seeds")
    print(f"wall time: {time.monotonic() - started:.0f} s for {len(jobs)} runs ({args.parallel} at once); "
          "per run: " + ", ".join(f"{n} {w:.0f} s" for n, w in walls.items()))


if __name__ == "__main__":
    main()
