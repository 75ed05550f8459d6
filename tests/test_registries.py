"""Pluggable parts are chosen from read-only tables: every name the config accepts has a builder, and a
name without one is refused naming the key and the choices."""

from __future__ import annotations

import typing

import pytest

from clouds.config import SamRefine
from clouds.config.root import VARIANTS
from clouds.registry import from_config
from models.sam import SAM_BUILDERS, build_sam
from stages.prompts.generate import WRITERS
from stages.refine.stage import REFINERS
from stages.synthesize.backend import BACKENDS


@pytest.mark.parametrize(("table", "section"), [(WRITERS, "prompts"), (BACKENDS, "synthesize"), (REFINERS, "refine")])
def test_every_configurable_method_has_a_builder(table, section):
    assert set(VARIANTS[section].classes) == set(table)


def test_every_sam_refine_model_type_has_a_builder():
    assert set(typing.get_args(SamRefine.model_fields["model_type"].annotation)) == set(SAM_BUILDERS)


def test_an_unknown_name_is_refused_naming_key_and_choices():
    with pytest.raises(ValueError, match=r"synthesize.backend='gan' is not one of diffusers, toycity"):
        from_config(BACKENDS, "synthesize.backend", "gan")
    with pytest.raises(TypeError):
        BACKENDS["gan"] = BACKENDS["toycity"]  # read-only: nothing registers at run time


def test_sam_model_types_are_a_registry_too():
    sam = build_sam("tiny")  # the random-weight test SAM, built through its table entry
    assert not sam.training and sum(p.numel() for p in sam.parameters()) < 1_000_000
    with pytest.raises(ValueError, match=r"refine.model_type='vit_x' is not one of vit_h, vit_l, vit_b, vit_t, tiny, toy"):
        build_sam("vit_x")
    with pytest.raises(TypeError):
        SAM_BUILDERS["vit_x"] = SAM_BUILDERS["tiny"]  # read-only: nothing registers at run time
