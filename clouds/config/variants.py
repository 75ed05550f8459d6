"""Sections whose options depend on a chosen method: one strict class per method, picked by one key.

`refine.method`, `prompts.backend` and `synthesize.backend` each choose a method, and each method takes its
own options. A flat section silently ignored the options of the methods not chosen and still hashed them
(a new SAM checkpoint made a superpixel refinement stale); a tagged union of one class per method makes
such an option an error that names the method taking it, and keeps it out of the stage's config hash.

A union is written out where its section is defined, as pydantic's
`Annotated[Annotated[A, Tag("a")] | ..., Discriminator(MethodTag(key, default))]`, so that stage code can
name it in type hints; `Variants.of` reads that type back for what the loader needs around it: the error
messages (`root._format_error`) and the `--set` overrides that switch the method (`root.parse_config`).
An absent key means the default method, so profiles written before a section had methods keep loading.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, get_args

from pydantic import Discriminator, Tag

from clouds.config.base import Section


@dataclass(frozen=True)
class MethodTag:
    """pydantic's discriminator for one union: the method a mapping names under `key` (`default` when the
    key is absent), or the one a variant instance holds; None (no method) for anything else."""

    key: str
    default: str

    @property
    def __name__(self) -> str:  # pydantic names a callable discriminator in its messages
        return self.key

    def __call__(self, value: Any) -> str | None:
        tag = value.get(self.key, self.default) if isinstance(value, dict) else getattr(value, self.key, None)
        return tag if isinstance(tag, str) else None


@dataclass(frozen=True)
class Variants:
    """A method-dependent section as the loader sees it: its config key, the key that chooses the method,
    one class per method, and the flat keys renamed when the section was split (old name -> new name)."""

    section: str
    discriminator: MethodTag
    classes: Mapping[str, type[Section]]
    renamed: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, section: str, union: Any, renamed: Mapping[str, str] | None = None) -> Variants:
        """Read the union type back; each class's own discriminator field must hold its tag, so that its
        dump (what the stage hashes and records) names the method."""
        members, *meta = get_args(union)
        tag = next(m.discriminator for m in meta if isinstance(m, Discriminator))
        if not isinstance(tag, MethodTag):
            raise TypeError(f"{section}: the union's discriminator must be a MethodTag, got {tag!r}")
        classes: dict[str, type[Section]] = {}
        for member in get_args(members):
            variant, *marks = get_args(member)
            name = next(m.tag for m in marks if isinstance(m, Tag))
            if variant.model_fields[tag.key].default != name:
                raise TypeError(f"{section}: {variant.__name__}.{tag.key} must default to its tag {name!r}")
            classes[name] = variant
        return cls(section, tag, classes, dict(renamed or {}))

    @property
    def key(self) -> str:
        return self.discriminator.key

    def choice(self, tag: str) -> str:
        """How messages name a method: `refine.method: sam`."""
        return f"{self.section}.{self.key}: {tag}"

    def owners(self, option: str) -> list[str]:
        """The methods that take `option`."""
        return [tag for tag, variant in self.classes.items() if option in variant.model_fields]

    def unknown_key(self, option: str, tag: str) -> str:
        """Why `option` is refused under method `tag`: renamed, another method's, or nobody's."""
        new = self.renamed.get(option)
        if new is not None:
            owners = self.owners(new)
            elsewhere = "" if tag in owners else f", which belongs to {self.choice(', '.join(owners))}"
            return f"renamed {self.section}.{new}{elsewhere}"
        owners = self.owners(option)
        belongs = f" (it belongs to {self.choice(', '.join(owners))})" if owners else ""
        return f"unknown key for {self.choice(tag)}{belongs}"

    def missing_key(self, option: str, tag: str) -> str:
        """A required option of method `tag`, with the field's description (what to give)."""
        described = self.classes[tag].model_fields[option].description
        return f"required for {self.choice(tag)}" + (f" ({described})" if described else "")

    def bad_tag(self, node: Any) -> str:
        """The section names no method of the union (or is not a mapping at all)."""
        if not isinstance(node, dict):
            return f"{self.section}: must be a mapping (got {node!r})"
        return f"{self.section}.{self.key}: must be one of {', '.join(self.classes)} (got {node.get(self.key)!r})"

    def switch(self, node: dict[str, Any], tag: Any) -> list[str]:
        """Before `--set <section>.<key>=tag`: drop (and return) the options of the method chosen so far that
        method `tag` does not take, so a profile's method can be switched from the command line."""
        if not isinstance(tag, str) or tag not in self.classes or tag == self.discriminator(node):
            return []  # an unknown method is refused by validation, naming the choices
        dropped = [k for k in node if k not in self.classes[tag].model_fields]
        for k in dropped:
            del node[k]
        return dropped
