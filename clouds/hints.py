"""One line that names the fix for an error a user can fix: the command that builds a missing input, the
config key to change. The CLI prints it under its `error:` line; a failure it knows nothing about gets no
hint rather than a guess."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from clouds.config import CloudsConfig

_ROUND_URL = re.compile(r"round-(\d{3})/(pseudo-label|refine|train|evaluate)/?$")
_ONCE_URL = re.compile(r"/(prompts|synthesize)/?$")
_DATA_URL = re.compile(r"/data/([A-Za-z0-9][A-Za-z0-9_.-]*)/?$")
_MISSING_ARTIFACT = re.compile(r"(\S+) is not a committed artifact")
_MISSING_FOLDER = re.compile(r"folder (\S+) does not exist")


@dataclass(frozen=True)
class Invocation:
    """How the user called `clouds run`, to spell commands they can paste back."""

    config: str
    root: str | None = None
    run: str | None = None
    overrides: tuple[str, ...] = ()

    def command(self, mode: str, round_: int | None = None, rounds: int | None = None, force: bool = False) -> str:
        words = ["clouds", "run", mode, "--config", self.config]
        if round_ is not None:
            words += ["--round", str(round_)]
        if rounds is not None:
            words += ["--rounds", str(rounds)]
        if self.root:
            words += ["--root", self.root]
        if self.run:
            words += ["--run", self.run]
        for item in self.overrides:
            words += ["--set", item]
        if force:
            words.append("--force")
        return shlex.join(words)


def builder_of(url: str, how: Invocation) -> str | None:
    """The command that builds the artifact at `url` (and whatever it needs), from the run layout."""
    url = url.rstrip("/")
    if m := _ROUND_URL.search(url):
        return how.command("full-round", round_=int(m.group(1)))
    if m := _ONCE_URL.search(url):
        return how.command(m.group(1))
    if _DATA_URL.search(url):
        return how.command("ingest")
    return None


def _dataset_key(cfg: CloudsConfig, folder: str) -> str | None:
    """`data.source.root` or `data.targets.N.root` of the dataset whose folder (or a folder in it) is missing."""
    specs = [("data.source", cfg.data.source), *((f"data.targets.{i}", t) for i, t in enumerate(cfg.data.targets))]
    for key, spec in specs:
        if spec.root and folder.rstrip("/").startswith(spec.root.rstrip("/")):
            return f"{key}.root"
    return None


def hint_for(message: str, cfg: CloudsConfig | None, how: Invocation) -> str | None:
    """The fix for the error `message`, or None when there is nothing better to say than the message."""
    if m := _MISSING_ARTIFACT.search(message):
        if command := builder_of(m.group(1), how):
            return f"build it first: {command}"
    if (m := _MISSING_FOLDER.search(message)) and cfg is not None:
        if key := _dataset_key(cfg, m.group(1)):
            return f"point {key} at the dataset (docs/DATASETS.md has the layout): --set {key}=/path/to/it"
    if "no CUDA device is available" in message:
        return "run on the CPU with --set run.device=cpu, or use run.device=auto"
    if "Timed out while attempting to connect to ephemeral Prefect API server" in message:
        return ("the machine was too busy to start Prefect's temporary server: raise "
                "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS, or start `clouds server` once and export "
                "PREFECT_API_URL")
    return None
