"""Idempotence: a stage whose committed output already matches its inputs and config is not rerun."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from artifacts import is_committed, read_lineage
from artifacts.lineage import input_record
from clouds.config import CloudsConfig


def stage_hash(cfg: CloudsConfig, sections: list[str], **extra: Any) -> str:
    """Hash of the config sections a stage reads plus stage-specific values (seed, round, dataset)."""
    payload = {
        "sections": {name: getattr(cfg, name).model_dump(mode="json") for name in sorted(sections)},
        "extra": extra,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def is_up_to_date(url: str, stage: str, config_hash: str, inputs: list[str]) -> bool:
    """True when `url` is committed by `stage` with this config hash from these exact input contents."""
    if not is_committed(url):
        return False
    lineage = read_lineage(url)
    if lineage.get("stage") != stage or lineage.get("config_hash") != config_hash:
        return False
    recorded = {i.get("url"): i.get("content_hash") for i in lineage.get("inputs", [])}
    if set(recorded) != set(inputs):
        return False
    for url_in, content in recorded.items():
        if not is_committed(url_in) or input_record(url_in)["content_hash"] != content:
            return False
    return True
