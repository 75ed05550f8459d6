"""What every flow starts from: the config file (plus overrides), the run's root and name, and --force."""

from __future__ import annotations

from dataclasses import dataclass

from clouds.config import CloudsConfig, load_config
from clouds.layout import RunLayout
from clouds.threads import apply_num_threads

DEFAULT_CONFIG = "configs/tiny.yaml"


@dataclass(frozen=True)
class RunContext:
    cfg: CloudsConfig
    layout: RunLayout
    force: bool = False

    def __post_init__(self) -> None:
        # Every flow, shard task and Ray worker builds its context first: the thread setting starts here.
        apply_num_threads(self.cfg.run.num_threads)

    @classmethod
    def load(
        cls,
        config: str = DEFAULT_CONFIG,
        overrides: list[str] | None = None,
        root: str | None = None,
        run: str | None = None,
        force: bool = False,
    ) -> RunContext:
        cfg = load_config(config, overrides)
        layout = RunLayout(root or cfg.run.root, run or cfg.run.name)
        return cls(cfg, layout, force)
