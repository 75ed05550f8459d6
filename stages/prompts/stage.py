"""The prompts artifact: one sample per prompt ("txt" text, "json" provenance), and reading it back."""

from __future__ import annotations

import hashlib
import json
import logging

from artifacts import Artifact, ArtifactWriter, is_committed, open_artifact
from clouds.config import PromptsConfig
from stages.prompts.generate import PromptWriter, build_writer, collect_prompts
from stages.prompts.records import PromptRecord

log = logging.getLogger(__name__)

STAGE = "prompts"


def prompts_config_hash(cfg: PromptsConfig, seed: int) -> str:
    payload = {"prompts": cfg.model_dump(mode="json"), "seed": seed}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def write_prompts(
    output_url: str,
    cfg: PromptsConfig,
    seed: int,
    *,
    writer: PromptWriter | None = None,
    device: str = "auto",
    shard_max_samples: int = 256,
    overwrite: bool = False,
) -> Artifact:
    """Generate `cfg.count` prompts and commit them.

    An artifact already committed with the same config is returned as it is; one committed with another
    config is replaced only with `overwrite=True`.
    """
    config_hash = prompts_config_hash(cfg, seed)
    if is_committed(output_url) and not overwrite:
        existing = open_artifact(output_url)
        if existing.lineage.get("config_hash") == config_hash:
            log.info("prompts: %s already holds these prompts, reusing it", output_url)
            return existing
    records, stats = collect_prompts(cfg, seed, writer or build_writer(cfg, seed, device))
    out = ArtifactWriter(
        output_url,
        stage=STAGE,
        config_hash=config_hash,
        params={"prompts": cfg.model_dump(mode="json"), "seed": seed},
        shard_max_samples=shard_max_samples,
        overwrite=overwrite,
    )
    out.write_stream((r.id, lambda r=r: {"__key__": r.id, "txt": r.text, "json": r.to_json()}) for r in records)
    return out.commit(stats=stats)


def read_prompts(source: str | Artifact) -> list[PromptRecord]:
    """The prompts of a committed prompts artifact, in order, checked for what synthesis relies on."""
    art = source if isinstance(source, Artifact) else open_artifact(source)
    records = []
    for sample in art.iter_samples():
        where = f"{art.url}, sample {sample['__key__']!r}"
        if "json" not in sample or "txt" not in sample:
            raise ValueError(f"{where}: a prompt sample needs 'txt' and 'json' members, has {sorted(sample)}")
        record = PromptRecord.from_json(sample["json"], where)
        if record.id != sample["__key__"] or record.text != sample["txt"]:
            raise ValueError(f"{where}: 'json' (id {record.id!r}) disagrees with the sample's key or text")
        records.append(record)
    if not records:
        raise ValueError(f"{art.url} holds no prompts")
    return records
