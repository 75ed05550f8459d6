"""The prompts artifact: one sample per prompt ("txt" text, "json" provenance), and reading it back."""

from __future__ import annotations

import logging
from typing import Any

from artifacts import Artifact, ArtifactError, ArtifactWriter, open_artifact
from artifacts.identity import Identity
from clouds.config import PromptsConfig
from stages.prompts.generate import PromptWriter, build_writer, collect_prompts
from stages.prompts.records import PromptRecord

log = logging.getLogger(__name__)

STAGE = "prompts"


def prompts_settings(cfg: PromptsConfig, seed: int) -> dict[str, Any]:
    """What the prompts depend on: hashed and recorded as they are."""
    return {"prompts": cfg.model_dump(mode="json"), "seed": seed}


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
    settings = prompts_settings(cfg, seed)
    identity = Identity.of(STAGE, settings)
    if not overwrite and identity.is_current(output_url):
        log.info("prompts: %s already holds these prompts, reusing it", output_url)
        return open_artifact(output_url)
    records, stats = collect_prompts(cfg, seed, writer or build_writer(cfg, seed, device))
    out = ArtifactWriter(
        output_url,
        stage=STAGE,
        config_hash=identity.config_hash,
        params=settings,
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
            raise ArtifactError(f"{where}: a prompt sample needs 'txt' and 'json' members, has {sorted(sample)}")
        record = PromptRecord.from_json(sample["json"], where)
        if record.id != sample["__key__"] or record.text != sample["txt"]:
            raise ArtifactError(f"{where}: 'json' (id {record.id!r}) disagrees with the sample's key or text")
        records.append(record)
    if not records:
        raise ArtifactError(f"{art.url} holds no prompts")
    return records
