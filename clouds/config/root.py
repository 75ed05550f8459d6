"""The whole run's configuration, loaded from one YAML profile in configs/."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError

from clouds.config.base import Section
from clouds.config.data import DataConfig
from clouds.config.executor import ExecutorConfig
from clouds.config.model import ModelConfig
from clouds.config.pretrain import PretrainConfig, PretrainSamConfig
from clouds.config.run import ArtifactConfig, RunConfig
from clouds.config.selftrain import (
    REFINE_VARIANTS,
    EvaluateConfig,
    LoopConfig,
    PseudoLabelConfig,
    RefineConfig,
    SamRefine,
    TrainConfig,
)
from clouds.config.synthetic import (
    PROMPTS_VARIANTS,
    SYNTHESIZE_VARIANTS,
    PromptsConfig,
    SynthesizeConfig,
    TemplatePrompts,
    ToycitySynthesize,
)
from clouds.config.variants import Variants
from clouds.errors import CloudsError

log = logging.getLogger(__name__)


class ConfigError(CloudsError, ValueError):
    """A config file that cannot be used; the message names the file and the key."""


class CloudsConfig(Section):
    run: RunConfig = Field(default_factory=RunConfig)
    artifacts: ArtifactConfig = Field(default_factory=ArtifactConfig)
    data: DataConfig
    model: ModelConfig = Field(default_factory=ModelConfig)
    prompts: PromptsConfig = Field(default_factory=TemplatePrompts)
    synthesize: SynthesizeConfig = Field(default_factory=ToycitySynthesize)
    pseudo_label: PseudoLabelConfig = Field(default_factory=PseudoLabelConfig)
    refine: RefineConfig = Field(default_factory=SamRefine)
    train: TrainConfig = Field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    loop: LoopConfig = Field(default_factory=LoopConfig)
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig)
    pretrain: PretrainConfig = Field(default_factory=PretrainConfig)
    pretrain_sam: PretrainSamConfig = Field(default_factory=PretrainSamConfig)


VARIANTS: dict[str, Variants] = {v.section: v for v in (PROMPTS_VARIANTS, SYNTHESIZE_VARIANTS, REFINE_VARIANTS)}
"""The sections whose options depend on their method (clouds/config/variants.py), by config key."""


def _format_error(e: Any) -> str:
    """One pydantic error as `key: message (got value)`; the key is the dotted path in the YAML file.

    pydantic puts the method of a method-dependent section into the path (`refine.sam.min_area`); it is
    taken out again, since the file says `refine.min_area`, and says instead which method refused a key."""
    loc = [str(p) for p in e["loc"]]
    variants = VARIANTS.get(loc[0]) if loc else None
    tag = loc.pop(1) if variants is not None and len(loc) > 1 and loc[1] in variants.classes else None
    key = ".".join(loc) or "<root>"
    if variants is not None and e["type"] in ("union_tag_invalid", "union_tag_not_found"):
        return variants.bad_tag(e["input"])
    if e["type"] == "extra_forbidden":
        if variants is not None and tag is not None and len(loc) == 2:
            return f"{key}: {variants.unknown_key(loc[1], tag)}"
        return f"{key}: unknown key"
    if e["type"] == "missing" and variants is not None and tag is not None and len(loc) == 2:
        return f"{key}: {variants.missing_key(loc[1], tag)}"
    msg = str(e["msg"]).removeprefix("Value error, ")
    if msg.startswith(f"{key}."):  # a section's own check that names the key itself
        return msg
    shown = "" if isinstance(e.get("input"), dict) else f" (got {e['input']!r})"
    return f"{key}: {msg}{shown}"


def _format_errors(err: ValidationError, source: str) -> str:
    """One line when one thing is wrong (what the CLI's `error:` line shows), else one line per key."""
    errors = [_format_error(e) for e in err.errors()]
    if len(errors) == 1:
        return f"invalid config {source}: {errors[0]}"
    return "\n".join([f"invalid config {source}:", *(f"  {line}" for line in errors)])


_PLAIN = (str, int, float, bool, type(None))
_YAML_KINDS = {"date": "a YAML date", "datetime": "a YAML timestamp", "bytes": "YAML binary data",
               "set": "a YAML set"}


def _check_plain(value: Any, key: str, source: str) -> None:
    """Refuse values YAML can produce but no config field takes (dates, timestamps, binary, sets).

    `2024-01-01` unquoted is a date to YAML; without this check it ended in a TypeError traceback from
    json.dumps instead of an error naming the file and the key.
    """
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, _PLAIN):
                raise ConfigError(f"invalid config {source}: {key or '<root>'}: key {k!r} is "
                                  f"{_YAML_KINDS.get(type(k).__name__, type(k).__name__)}, not a name")
            _check_plain(v, f"{key}.{k}" if key else str(k), source)
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _check_plain(item, f"{key}.{i}", source)
    elif not isinstance(value, _PLAIN):
        kind = _YAML_KINDS.get(type(value).__name__, f"a {type(value).__name__}")
        raise ConfigError(f"invalid config {source}: {key or '<root>'}: {value} is {kind}, which no setting "
                          "takes; quote it if you mean text")


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    """Set `a.b.c` in the tree; a numeric part indexes a list (`data.targets.0.root=/data/bdd`)."""
    node: Any = tree
    *parents, leaf = dotted.split(".")
    for i, part in enumerate([*parents, leaf]):
        where = ".".join([*parents, leaf][: i + 1])
        last = i == len(parents)
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ConfigError(f"override {dotted}: {where} is not an entry of a list of {len(node)} "
                                  f"(entries are numbered 0..{len(node) - 1})")
            if last:
                node[int(part)] = value
            else:
                node = node[int(part)]
        elif isinstance(node, dict):
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, {})
        else:
            raise ConfigError(f"override {dotted}: {where.rsplit('.', 1)[0]} is not a section")


def _switch_method(tree: dict[str, Any], dotted: str, value: Any) -> None:
    """`--set refine.method=none` on a profile whose refine section holds SAM options: the options the new
    method does not take are dropped (they would be errors now), so one profile serves every method."""
    section, _, leaf = dotted.partition(".")
    variants, node = VARIANTS.get(section), tree.get(section)
    if variants is None or leaf != variants.key or not isinstance(node, dict):
        return
    dropped = variants.switch(node, value)
    if dropped:
        log.info("--set %s=%s: dropped %s, which %s does not take", dotted, value,
                 ", ".join(f"{section}.{k}" for k in dropped), variants.choice(value))


def parse_config(tree: Any, source: str = "<dict>", overrides: list[str] | None = None) -> CloudsConfig:
    """Validate a config tree; 'overrides' are 'a.b=value' strings whose value is parsed as YAML."""
    if not isinstance(tree, dict):
        raise ConfigError(f"invalid config {source}: the top level must be a mapping, got {type(tree).__name__}")
    _check_plain(tree, "", source)
    tree = json.loads(json.dumps(tree))
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected key.path=value")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as err:
            raise ConfigError(f"override {item!r}: the value is not valid YAML: {' '.join(str(err).split())}") from None
        _check_plain(value, key.strip(), f"{source} (--set {item})")
        _switch_method(tree, key.strip(), value)
        _set_dotted(tree, key.strip(), value)
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
