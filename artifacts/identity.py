"""What an artifact is made from, and the one rule that says a committed artifact is still that.

A stage's output is identified by the stage's name, a hash of the settings it reads (its config sections
plus stage values: seed, round span, dataset), and the content hashes of its input artifacts. The code
version is recorded in the commit marker but not compared: a code change that should rebuild outputs
shows as a changed setting, while comparing it would rebuild every artifact after any commit.

Every place that decides reuse asks `Identity.is_current`: the flows, `clouds status`, the torchrun
launcher (through `train()`), the standalone `evaluate()` and `write_prompts()`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from artifacts.errors import ArtifactError
from artifacts.lineage import input_record, is_committed, read_lineage


def config_hash(settings: Any) -> str:
    """16 hex digits of the sha256 of the settings as canonical JSON (sorted keys).

    The one hash of a stage's settings; its value for a given payload never changes, so artifacts
    committed by earlier versions are recognised as long as the stage hashes the same payload."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Identity:
    """A stage output as it would be built now: `stage`, `config_hash` of its settings, input URLs."""

    stage: str
    config_hash: str
    inputs: Sequence[str] = field(default_factory=list)

    @classmethod
    def of(cls, stage: str, settings: Any, inputs: Sequence[str] = ()) -> Identity:
        return cls(stage, config_hash(settings), list(inputs))

    def is_current(self, url: str) -> bool:
        """True when `url` is committed by this stage with this config hash from these exact input
        contents (the same URLs, each still committed with the content hash the marker recorded)."""
        if not is_committed(url):
            return False
        lineage = read_lineage(url)
        if lineage.get("stage") != self.stage or lineage.get("config_hash") != self.config_hash:
            return False
        recorded = {i.get("url"): i.get("content_hash") for i in lineage.get("inputs", [])}
        if set(recorded) != set(self.inputs):
            return False
        for url_in, content in recorded.items():
            if not is_committed(url_in) or input_record(url_in)["content_hash"] != content:
                return False
        return True

    def check_reusable(self, url: str, what: str) -> bool:
        """For stage functions called outside a flow: True when `url` holds this output already (reuse it),
        False when there is nothing there; a committed output of other settings or inputs is refused, since
        replacing it is the caller's decision (`--force`, `overwrite=True`)."""
        if not is_committed(url):
            return False
        if self.is_current(url):
            return True
        raise ArtifactError(f"{url} is already a committed {what} of another configuration or other inputs; "
                            "choose another output URL or delete it")
