"""Typed configuration, loaded from YAML profiles (configs/*.yaml)."""

from clouds.config.data import DataConfig, DatasetSpec
from clouds.config.executor import ExecutorConfig, TaskResources
from clouds.config.model import BackboneConfig, DecoderConfig, HeadConfig, ModelConfig
from clouds.config.root import CloudsConfig, ConfigError, load_config, parse_config
from clouds.config.run import ArtifactConfig, RunConfig
from clouds.config.selftrain import (
    EvaluateConfig,
    LoopConfig,
    NoRefine,
    PseudoLabelConfig,
    RefineConfig,
    SamRefine,
    SuperpixelRefine,
    TrainConfig,
)
from clouds.config.synthetic import (
    DiffusersSynthesize,
    PromptsConfig,
    SynthesizeConfig,
    TemplatePrompts,
    ToycitySynthesize,
    TransformersPrompts,
    VllmPrompts,
)

__all__ = [
    "ArtifactConfig", "BackboneConfig", "CloudsConfig", "ConfigError", "DataConfig", "DatasetSpec",
    "DecoderConfig", "DiffusersSynthesize", "EvaluateConfig", "ExecutorConfig", "HeadConfig", "LoopConfig",
    "ModelConfig", "NoRefine", "PromptsConfig", "PseudoLabelConfig", "RefineConfig", "RunConfig", "SamRefine",
    "SuperpixelRefine", "SynthesizeConfig", "TaskResources", "TemplatePrompts", "ToycitySynthesize", "TrainConfig",
    "TransformersPrompts", "VllmPrompts", "load_config", "parse_config",
]
