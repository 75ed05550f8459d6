"""Pluggable parts are chosen from read-only tables: every name the config accepts has a builder, and a
name without one is refused naming the key and the choices."""

from __future__ import annotations

import typing

import pytest

from clouds.config import PromptsConfig, SynthesizeConfig
from clouds.config.selftrain import RefineConfig
from clouds.registry import from_config
from stages.prompts.generate import WRITERS
from stages.refine.stage import REFINERS
from stages.synthesize.backend import BACKENDS


@pytest.mark.parametrize(("table", "section", "field"), [
    (WRITERS, PromptsConfig, "backend"), (BACKENDS, SynthesizeConfig, "backend"), (REFINERS, RefineConfig, "method"),
])
def test_every_configurable_name_has_a_builder(table, section, field):
    assert set(typing.get_args(section.model_fields[field].annotation)) == set(table)


def test_an_unknown_name_is_refused_naming_key_and_choices():
    with pytest.raises(ValueError, match=r"synthesize.backend='gan' is not one of diffusers, toycity"):
        from_config(BACKENDS, "synthesize.backend", "gan")
    with pytest.raises(TypeError):
        BACKENDS["gan"] = BACKENDS["toycity"]  # read-only: nothing registers at run time
