"""One way to turn a config's method name into the part that implements it: a read-only table of builders.

Each pluggable part (prompt writers, image backends, refiners) keeps its table beside the parts, built once
from a literal, so adding a method is one entry there and its options class in the config's union
(clouds/config/variants.py); the lookup's error names the config key and the choices.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import TypeVar

B = TypeVar("B", bound=Callable[..., object])


def registry(builders: Mapping[str, B]) -> Mapping[str, B]:
    """The table, read-only: no caller can add to it at run time."""
    return MappingProxyType(dict(builders))


def from_config(builders: Mapping[str, B], key: str, name: str) -> B:
    """The builder `name` names, or a ValueError naming the config `key` and every choice."""
    try:
        return builders[name]
    except KeyError:
        raise ValueError(f"{key}={name!r} is not one of {', '.join(builders)}") from None
