"""What the prompt writers produce (candidates) and what the stage keeps (records)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from artifacts.errors import ArtifactError

KEY_FORMAT = "prompt-{:06d}"


@dataclass(frozen=True)
class Candidate:
    """One raw answer from a writer, before cleaning; `seed` is the seed of the request that made it."""

    text: str
    seed: int
    truncated: bool = False


@dataclass(frozen=True)
class PromptRecord:
    """An accepted prompt, with enough provenance to tell how it was made."""

    id: str
    text: str
    backend: str
    model: str | None
    seed: int
    attempt: int
    request_seed: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any], where: str) -> PromptRecord:
        missing = sorted(set(cls.__dataclass_fields__) - set(data))
        if missing:
            raise ArtifactError(f"{where}: prompt metadata lacks {missing}")
        return cls(**{k: data[k] for k in cls.__dataclass_fields__})
