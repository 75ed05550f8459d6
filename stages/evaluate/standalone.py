"""`clouds evaluate CHECKPOINT --data ...`: score any committed checkpoint on data named outside a run folder.

`--data` is a YAML profile (its `data.targets` are scored with its `evaluate` settings), a committed artifact
with `seg.png` labels, or a dataset folder in any layout the ingest stage reads (docs/DATASETS.md; `--kind`
says which). Datasets are ingested first into `work` (resumable, reused when already committed), then the
evaluate stage writes the same report as in a run: per-domain and per-class parquet tables, raw confusion
matrices, report.md and iou.png.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from artifacts import is_committed, read_lineage
from artifacts.identity import Identity
from clouds.config import ArtifactConfig, DatasetSpec, EvaluateConfig
from clouds.config.root import ConfigError, load_config
from stages.predict.checkpoints import check_checkpoint
from stages.predict.errors import PredictInputError

log = logging.getLogger(__name__)
_NAME_BAD = re.compile(r"[^A-Za-z0-9_-]+")


@dataclass
class Scoring:
    """What to score: target artifacts by name, each target's averaging rule, and the evaluate settings."""

    targets: dict[str, str]
    averages: dict[str, str]
    settings: EvaluateConfig
    from_profile: bool = False  # the settings are a --data profile's own, not defaults


def _ingested(spec: DatasetSpec, work: str, artifacts_cfg: ArtifactConfig) -> str:
    """The committed artifact of `spec` under `work`, ingested unless an identical one is already there."""
    from stages.ingest.stage import STAGE, ingest, ingest_settings

    url = f"{work.rstrip('/')}/{spec.name}"
    if Identity.of(STAGE, ingest_settings(spec, artifacts_cfg.image_format)).is_current(url):
        log.info("evaluate: reusing ingested %s", url)
        return url
    ingest(spec, url, artifacts_cfg, overwrite=True)
    return url


def _name_of(path: str) -> str:
    return _NAME_BAD.sub("_", Path(path.rstrip("/")).name).strip("_") or "target"


def scoring_for(data: str, work: str, *, kind: str | None = None, split: str = "val",
                condition: str | None = None, settings: EvaluateConfig | None = None) -> Scoring:
    """Resolve `--data` into target artifacts (ingesting datasets into `work`) and the settings to score with.

    A profile brings its own `evaluate` section; otherwise `settings` (default: the reference protocol)."""
    path = Path(data)
    if path.is_file() and path.suffix in (".yaml", ".yml"):
        try:
            cfg = load_config(path)
        except ConfigError as err:
            raise PredictInputError(str(err)) from None
        targets = {t.name: _ingested(t, work, cfg.artifacts) for t in cfg.data.targets}
        return Scoring(targets, {t.name: t.average for t in cfg.data.targets}, settings or cfg.evaluate,
                       from_profile=settings is None)
    settings = settings or EvaluateConfig()
    if "://" in data or is_committed(data):
        if kind is not None:
            raise PredictInputError(f"{data} is a committed artifact; --kind is only for dataset folders")
        params = read_lineage(data).get("params", {})
        rule = (params.get("dataset") or {}).get("average") if isinstance(params, dict) else None
        return Scoring({_name_of(data): data}, {_name_of(data): rule} if rule else {}, settings)
    if not path.is_dir():
        raise PredictInputError(f"--data {data} is neither a YAML profile, a committed artifact nor a dataset folder")
    if kind is None:
        raise PredictInputError(f"--data {data} is a folder: say its layout with --kind "
                                "(cityscapes, bdd10k, mapillary, acdc, gta5, synthia; docs/DATASETS.md)")
    try:
        spec = DatasetSpec(name=_name_of(data), kind=kind, root=str(path), split=split, condition=condition)
    except ValueError as err:  # pydantic: an unknown kind, ACDC without a condition
        raise PredictInputError("; ".join(x.strip() for x in str(err).splitlines()[1:] if x.strip())) from None
    return Scoring({spec.name: _ingested(spec, work, ArtifactConfig())}, {spec.name: spec.average}, settings)


def evaluate_checkpoint(checkpoint_url: str, scoring: Scoring, output_url: str, device: str = "auto") -> dict[str, Any]:
    """The evaluate stage on `scoring`'s targets: a committed report at `output_url` (reused when identical)."""
    from stages.evaluate.stage import evaluate

    check_checkpoint(checkpoint_url)
    return evaluate(checkpoint_url, scoring.targets, scoring.settings, output_url, device=device,
                    averages=scoring.averages)
