"""Where each stage's artifact lives under the run root: one place, so flows, CLI and docs agree.

Ground, like the config: stages (the torchrun launcher, the results reader) and pipelines both read it."""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass

from clouds.config.base import check_safe_name


@dataclass(frozen=True)
class RunLayout:
    """`{root}/{run}/{stage}` for once-per-run stages, `{root}/{run}/round-{k:03d}/{stage}` per round.

    Round 0 is the source-only warm-up; rounds 1..N are pseudo-label -> refine -> train -> evaluate.
    """

    root: str
    run: str

    def __post_init__(self) -> None:
        """`--run` comes from the CLI, past the config schema: the same name rule applies here, since the
        stages delete inside `{root}/{run}` and a run named `..` would make that the root's parent."""
        check_safe_name(self.run, "run name")

    @property
    def base(self) -> str:
        return posixpath.join(self.root.rstrip("/"), self.run)

    def data(self, name: str) -> str:
        return posixpath.join(self.base, "data", check_safe_name(name, "dataset name"))

    def once(self, stage: str) -> str:
        return posixpath.join(self.base, check_safe_name(stage, "stage name"))

    def round(self, k: int, stage: str) -> str:
        if k < 0:
            raise ValueError(f"round must be >= 0, got {k}")
        return posixpath.join(self.base, f"round-{k:03d}", check_safe_name(stage, "stage name"))

    @property
    def report(self) -> str:
        return posixpath.join(self.base, "report")


def absolute_root(root: str) -> str:
    """`root` as processes started elsewhere (Ray workers, in another directory) must spell it: a relative
    local path made absolute; URLs and absolute paths unchanged."""
    if "://" in root or os.path.isabs(root):
        return root
    return os.path.abspath(root)
