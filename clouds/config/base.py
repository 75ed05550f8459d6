"""The strict base every config section derives from, and the constrained types its fields share.

Unknown keys are errors, not silently ignored; no float anywhere in the config may be NaN or infinite
(`allow_inf_nan=False`): a NaN learning rate or threshold would only surface as a ruined run hours later.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict

from clouds.errors import InputError

SAFE_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
"""Names that become one path component under the run root (run, dataset and output names): a letter or
digit first (so never `.`, `..`, a hidden file or an option), then letters, digits, `_`, `.` and `-`;
no `/`, `\\` or `..` anywhere, so a joined name can neither climb out of its folder nor nest into others."""
SAFE_NAME_MAX = 100

_SAFE_NAME = re.compile(SAFE_NAME_PATTERN)

# Upper bounds that no real run comes near, but that stop a typo (1e23 images) from being accepted and
# failing much later, or allocating forever.
MAX_COUNT = 10_000_000
"""Images, prompts, samples: an order of magnitude over the largest real dataset (Mapillary, GTA5)."""
MAX_ITERS = 100_000_000
"""Training iterations (the reference trains 40k)."""
MAX_SIDE = 16_384
"""Image side and crop side in pixels."""
MAX_BATCH = 65_536
"""Images, prompts or queries handled at once."""
MAX_SEED = 2**32 - 1
"""numpy seeds must be in [0, 2**32)."""
MAX_DIM = 65_536
"""Channel, hidden and feed-forward widths; numbers of queries, heads and layers stay far below."""
MAX_LAYERS = 1_000
"""Transformer layers, attention heads."""
MAX_WEIGHT = 1e6
"""Loss weights, scales and other unbounded positive factors."""


def unsafe_name_reason(value: object) -> str | None:
    """Why `value` cannot be joined under a run folder as one path component, or None if it can."""
    if not isinstance(value, str) or not value:
        return "must be a non-empty name"
    if len(value) > SAFE_NAME_MAX:
        return f"is longer than {SAFE_NAME_MAX} characters"
    if not _SAFE_NAME.fullmatch(value) or ".." in value:
        return (f"is not a safe name: it becomes a folder under the run, so it must match {SAFE_NAME_PATTERN} "
                "without '..' (no '/', no leading '.' or '-')")
    return None


def check_safe_name(value: str, what: str = "name") -> str:
    """Return `value` if it is a safe single path component, else raise ValueError naming `what`.

    Shared by the config schema and `clouds.layout.RunLayout` (which also sees `--run` from the CLI), so
    that one rule decides what may be joined under a run folder.
    """
    reason = unsafe_name_reason(value)
    if reason is not None:
        raise InputError(f"{what} {value!r} {reason}")
    return value


def _safe_name(value: str) -> str:
    """The schema's validator: the error formatter adds the key and the value, so only the reason is said."""
    reason = unsafe_name_reason(value)
    if reason is not None:
        raise ValueError(reason)
    return value


SafeName = Annotated[str, AfterValidator(_safe_name)]
"""A run, dataset or output name: one path component that cannot escape the run root."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


__all__ = [
    "MAX_BATCH", "MAX_COUNT", "MAX_DIM", "MAX_ITERS", "MAX_LAYERS", "MAX_SEED", "MAX_SIDE", "MAX_WEIGHT",
    "SAFE_NAME_PATTERN", "SafeName", "Section", "check_safe_name", "unsafe_name_reason",
]
