"""The whole run's configuration, loaded from one YAML profile in configs/."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError

from clouds.config.base import Section
from clouds.config.data import DataConfig
from clouds.config.executor import ExecutorConfig
from clouds.config.model import ModelConfig
from clouds.config.run import ArtifactConfig, RunConfig
from clouds.config.selftrain import EvaluateConfig, LoopConfig, PseudoLabelConfig, RefineConfig, TrainConfig
from clouds.config.synthetic import PromptsConfig, SynthesizeConfig


class ConfigError(ValueError):
    """A config file that cannot be used; the message names the file and the key."""


class CloudsConfig(Section):
    run: RunConfig = Field(default_factory=RunConfig)
    artifacts: ArtifactConfig = Field(default_factory=ArtifactConfig)
    data: DataConfig
    model: ModelConfig = Field(default_factory=ModelConfig)
    prompts: PromptsConfig = Field(default_factory=PromptsConfig)
    synthesize: SynthesizeConfig = Field(default_factory=SynthesizeConfig)
    pseudo_label: PseudoLabelConfig = Field(default_factory=PseudoLabelConfig)
    refine: RefineConfig = Field(default_factory=RefineConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    loop: LoopConfig = Field(default_factory=LoopConfig)
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig)

    def section_hash(self, *sections: str) -> str:
        """A stable hash of some sections, so a stage is rerun only when what it reads has changed."""
        payload = {name: getattr(self, name).model_dump(mode="json") for name in sorted(sections)}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def _format_errors(err: ValidationError, source: str) -> str:
    lines = [f"invalid config {source}:"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "<root>"
        msg = "unknown key" if e["type"] == "extra_forbidden" else e["msg"]
        lines.append(f"  {key}: {msg}" + (f" (got {e['input']!r})" if e["type"] != "extra_forbidden" and not isinstance(e.get("input"), dict) else ""))
    return "\n".join(lines)


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    node = tree
    *parents, leaf = dotted.split(".")
    for p in parents:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {dotted}: {p} is not a section")
    node[leaf] = value


def parse_config(tree: Any, source: str = "<dict>", overrides: list[str] | None = None) -> CloudsConfig:
    """Validate a config tree; 'overrides' are 'a.b=value' strings whose value is parsed as YAML."""
    if not isinstance(tree, dict):
        raise ConfigError(f"invalid config {source}: the top level must be a mapping, got {type(tree).__name__}")
    tree = json.loads(json.dumps(tree))
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected key.path=value")
        key, raw = item.split("=", 1)
        _set_dotted(tree, key.strip(), yaml.safe_load(raw))
    try:
        return CloudsConfig.model_validate(tree)
    except ValidationError as err:
        raise ConfigError(_format_errors(err, source)) from None


def load_config(path: str | Path, overrides: list[str] | None = None) -> CloudsConfig:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        tree = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {path} is not valid YAML: {err}") from None
    return parse_config(tree, str(path), overrides)
