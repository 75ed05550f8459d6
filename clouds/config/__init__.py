"""Typed configuration, loaded from YAML profiles (configs/*.yaml)."""

from clouds.config.data import DataConfig, DatasetSpec
from clouds.config.executor import ExecutorConfig, TaskResources
from clouds.config.model import BackboneConfig, DecoderConfig, HeadConfig, ModelConfig
from clouds.config.root import CloudsConfig, ConfigError, load_config, parse_config
from clouds.config.run import ArtifactConfig, RunConfig
from clouds.config.selftrain import EvaluateConfig, LoopConfig, PseudoLabelConfig, RefineConfig, TrainConfig
from clouds.config.synthetic import PromptsConfig, SynthesizeConfig

__all__ = [
    "ArtifactConfig", "BackboneConfig", "CloudsConfig", "ConfigError", "DataConfig", "DatasetSpec",
    "DecoderConfig", "EvaluateConfig", "ExecutorConfig", "HeadConfig", "LoopConfig", "ModelConfig", "PromptsConfig",
    "PseudoLabelConfig", "RefineConfig", "RunConfig", "SynthesizeConfig", "TaskResources", "TrainConfig",
    "load_config", "parse_config",
]
