"""The model card written next to an export: what the network is, what it was trained on, how it scored.

Everything comes from committed artifacts: model.json and extra.json of the checkpoint, the train stage's
commit marker (inputs, mode, iterations, config hash), and, when the checkpoint sits in a run folder
(`.../round-NNN/train`), the committed evaluations of every round of that run.
"""

from __future__ import annotations

import hashlib
import math
import re
from typing import Any

from artifacts import Folder, read_lineage
from clouds.config.model import ModelConfig
from models.checkpoint import MODEL_JSON

_ROUND_TRAIN = re.compile(r"^(?P<base>.+)/round-(?P<k>\d{3})/train/?$")


def _pct(value: float | None) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.2f}"


def _run_rounds(checkpoint_url: str) -> tuple[int | None, list[Any]]:
    """(round of this checkpoint, RoundResults of its run), or (None, []) outside a run folder."""
    from clouds.layout import RunLayout
    from stages.report.rounds import collect_rounds

    m = _ROUND_TRAIN.match(checkpoint_url.rstrip("/"))
    if not m:
        return None, []
    parent, _, name = m.group("base").rpartition("/")
    try:
        layout = RunLayout(parent or ".", name)
        rounds = sorted(int(n[6:]) for n in Folder.at(layout.base).listdir() if re.fullmatch(r"round-\d{3}", n))
        return int(m.group("k")), collect_rounds(layout, max(rounds)) if rounds else []
    except (ValueError, OSError):
        return int(m.group("k")), []


def model_card(checkpoint_url: str, export_name: str, fmt: str, weights: str, params: int,
               usage: str) -> str:
    """Markdown: architecture, training data, rounds, mIoU table, config hashes and how to load the file."""
    folder = Folder.at(checkpoint_url)
    model_json = folder.read_bytes(MODEL_JSON)
    cfg = ModelConfig.model_validate_json(model_json)
    lineage = read_lineage(checkpoint_url)
    stats = lineage.get("stats", {})
    b, d, h = cfg.backbone, cfg.decoder, cfg.head
    k, rounds = _run_rounds(checkpoint_url)
    lines = [
        f"# Model card: {export_name}",
        "",
        f"CLOUDS segmenter (arXiv 2312.09788) exported as **{fmt}** ({weights} weights) from `{checkpoint_url}`.",
        "It predicts the 19 Cityscapes train-id classes (255 is never predicted).",
        "",
        "## Architecture",
        "",
        f"- backbone: {b.library} `{b.name}` (pretrained: `{b.pretrained}`, frozen: {b.freeze})"
        + (f", {b.neck} pyramid neck" if b.library == "timm" else "")
        + (f", {b.peft.kind} tuning" if b.peft.kind != "none" else ""),
        f"- decoder: Mask2Former, {d.num_queries} queries, hidden {d.hidden_dim}, {d.encoder_layers} pixel-decoder "
        f"layers, {d.decoder_layers} transformer-decoder layers, {d.num_attention_heads} heads",
        f"- head: {h.kind}" + (f", CLIP geometric ensemble (alpha {h.ensemble_alpha})" if h.ensemble else ""),
        f"- parameters: {params:,}",
        "- input: RGB, 0-255 float; normalisation and padding to a multiple of 32 happen inside the model",
        "",
        "## Training",
        "",
        f"- stage: {lineage.get('stage')}, mode: {stats.get('mode', 'unknown')}, step {stats.get('step', '?')} "
        f"(iterations this stage: {stats.get('iters', '?')})",
        f"- round: {k if k is not None else 'unknown (checkpoint outside a run folder)'}",
        "- training data (committed inputs of the train stage):",
    ]
    inputs = lineage.get("inputs", [])
    lines += [f"  - `{i.get('url')}` ({i.get('stage')}, content {str(i.get('content_hash'))[:12]})" for i in inputs]
    if not inputs:
        lines.append("  - not recorded")
    if stats.get("sizes"):
        lines.append(f"- samples per input: {stats['sizes']}")
    lines += ["", "## mIoU (%) per round", ""]
    if rounds:
        domains = sorted({name for r in rounds for name in r.miou})
        lines.append("| round | " + " | ".join(domains) + " | mean |")
        lines.append("|---" * (len(domains) + 2) + "|")
        for r in rounds:
            values = [v for v in r.miou.values() if v is not None and not math.isnan(v)]
            mean = sum(values) / len(values) if values else None
            mark = " (this model)" if r.round == k else ""
            lines.append(f"| {r.round}{mark} | " + " | ".join(_pct(r.miou.get(n)) for n in domains) + f" | {_pct(mean)} |")
        lines += ["", "Evaluation protocol: whole image, single scale, short side resized (docs/PROTOCOL.md); "
                  "each target averaged by its own rule (union / gt-present)."]
    else:
        lines.append("No committed evaluation found next to this checkpoint.")
    lines += [
        "",
        "## Identity",
        "",
        f"- train config hash: `{lineage.get('config_hash')}`",
        f"- model.json sha256: `{hashlib.sha256(model_json).hexdigest()}`",
        f"- checkpoint content hash: `{lineage.get('content_hash')}`",
        f"- code version: `{lineage.get('code_version')}`",
        "",
        "## Loading",
        "",
        usage,
        "",
    ]
    return "\n".join(lines)
