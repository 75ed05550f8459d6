"""The stage graph is data: a new stage is one table entry plus its stage module, and the flows, the run
order, the report's inputs and `clouds status` all pick it up (here: a toy stage, defined in this file)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from artifacts import ArtifactWriter
from artifacts.identity import config_hash
from clouds.config import CloudsConfig, load_config
from clouds.layout import RunLayout
from stages.expected import Expected
from stages.table import STAGES, BuildRequest, StageEntry, report, run_artifacts, run_order, stage_table

MICRO = str(Path(__file__).with_name("micro.yaml"))


# -- place 1: the toy stage's module (what the stage reads, what it writes) ---------------------------
def toy_settings(seed: int) -> dict[str, Any]:
    return {"seed": seed}


def toy_expected(cfg: CloudsConfig, layout: RunLayout, k: int) -> list[Expected]:
    settings = toy_settings(cfg.run.seed)
    return [Expected(f"toy round {k}", "toy", TOY.output(layout, k), config_hash(settings), [], round=k,
                     covers="run.seed", settings={"run.seed": cfg.run.seed},
                     recorded=lambda lineage: {"run.seed": lineage["params"]["seed"]})]


def build_toy(req: BuildRequest) -> Any:
    settings = toy_settings(req.cfg.run.seed)
    writer = ArtifactWriter(req.artifact.url, stage="toy", config_hash=config_hash(settings), params=settings,
                            overwrite=req.overwrite)
    noise = np.random.default_rng(req.cfg.run.seed).integers(0, 255, (4, 4, 3), np.uint8)
    writer.write_shard(0, [{"__key__": "toy", "png": noise}])
    return writer.commit()


# -- place 2: its entry in the table ------------------------------------------------------------------
TOY = StageEntry("toy", "A toy stage: one noise image per round.", per_round=True, first_round=0,
                 expected=toy_expected, build=build_toy)
TABLE = stage_table([*STAGES.values(), TOY])


def test_the_run_order_and_the_report_take_the_new_stage_from_the_table():
    order = [(e.name, k) for e, k in run_order(1, TABLE)]
    assert order == [(e.name, k) for e, k in run_order(1)][:3] + [("toy", 0)] + \
        [(e.name, k) for e, k in run_order(1)][3:] + [("toy", 1)]
    layout = RunLayout("runs", "x")
    assert layout.round(1, "toy") in report(layout, 1, TABLE).inputs
    assert [e.url for e in run_artifacts(load_config(MICRO), layout, 1, TABLE)][-2] == layout.round(1, "toy")


def test_every_entry_expects_its_artifacts_in_its_own_folder():
    cfg, layout = load_config(MICRO), RunLayout("runs", "x")
    for entry in TABLE.values():
        for k in entry.rounds(2) or [0]:
            for e in entry.expected(cfg, layout, k):
                assert e.stage == entry.name
                if entry.name != "ingest":  # one folder per dataset, under data/
                    assert e.url.endswith(entry.output(layout, k))


def test_the_generic_flow_builds_reuses_and_rebuilds_the_new_stage(harness, tmp_path):
    from pipelines.stage_flows import stage_flow
    from pipelines.status import run_status

    toy_flow = stage_flow(TOY)
    assert toy_flow.name == "toy"
    common = {"config": MICRO, "root": str(tmp_path), "run": "toy"}
    assert toy_flow(**common, round=0)["reused"] is False
    assert toy_flow(**common, round=0)["reused"] is True  # the one up-to-date rule
    assert toy_flow(**common, overrides=["run.seed=5"], round=0)["reused"] is False

    cfg, layout = load_config(MICRO), RunLayout(str(tmp_path), "toy")
    status = {a.name: a for a in run_status(cfg, layout, 0, TABLE).artifacts}
    assert status["round-000/toy"].state == "stale"
    assert "config changed: run.seed: 5 -> 0" in status["round-000/toy"].reasons[0]
    assert status["round-000/train"].state == "missing"
