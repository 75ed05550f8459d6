"""Config profiles load; bad files fail naming the file and the key."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from pydantic import ValidationError

from clouds.config import (
    ConfigError,
    DiffusersSynthesize,
    NoRefine,
    SamRefine,
    SuperpixelRefine,
    TemplatePrompts,
    ToycitySynthesize,
    VllmPrompts,
    load_config,
    parse_config,
)

CONFIGS = sorted((Path(__file__).parent.parent / "configs").glob("*.yaml"))
MINIMAL = {"data": {"source": {"name": "source", "kind": "toycity", "domain": "sim", "count": 4}}}


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_every_profile_loads(path):
    cfg = load_config(path)
    assert cfg.data.source.name


def test_profiles_exist():
    assert {p.stem for p in CONFIGS} >= {"tiny", "gta5", "synthia", "cityscapes-acdc"}


def test_reference_values_of_spec():
    cfg = load_config(Path(__file__).parent.parent / "configs" / "gta5.yaml")
    assert cfg.model.backbone.name == "convnext_large_d_320"
    assert cfg.model.backbone.pretrained == "laion2b_s29b_b131k_ft_soup"
    assert cfg.model.decoder.num_queries == 100 and cfg.model.decoder.hidden_dim == 256
    assert cfg.train.lr == 1e-5 and cfg.train.schedule == "constant" and cfg.train.grad_clip == 0.01
    assert cfg.train.warmup_iters == 40000 and cfg.train.joint_iters == 40000 and cfg.train.repeat_factor == 2.0
    assert (cfg.train.ema_alpha, cfg.train.ema_period) == (0.999, 100)
    assert cfg.synthesize.num_images == 5000 and cfg.synthesize.steps == 50 and cfg.synthesize.guidance_scale == 7.5
    assert cfg.refine.min_area == 5000 and cfg.refine.points_per_component == 5 and cfg.refine.model_type == "vit_t"
    assert cfg.evaluate.short_side == 1024
    syn = load_config(Path(__file__).parent.parent / "configs" / "synthia.yaml")
    assert syn.train.schedule == "poly" and syn.train.repeat_factor == 0.7 and syn.train.warmup_iters == 30000
    cs = load_config(Path(__file__).parent.parent / "configs" / "cityscapes-acdc.yaml")
    assert cs.train.lr == 1e-4 and cs.train.repeat_factor == 0.2 and cs.train.joint_iters == 10000
    assert {t.condition for t in cs.data.targets} == {"fog", "night", "rain", "snow"}


def test_unknown_key_names_file_and_key(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("data:\n  source: {name: s, kind: toycity, domain: sim, count: 4}\ntrain:\n  learning_rate: 3\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml(.|\n)*train\.learning_rate: unknown key"):
        load_config(path)


def test_wrong_type_names_key(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("data:\n  source: {name: s, kind: toycity, domain: sim, count: 4}\ntrain:\n  batch_size: many\n")
    with pytest.raises(ConfigError, match=r"train\.batch_size"):
        load_config(path)


def test_bad_yaml_and_missing_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("data: [unclosed\n")
    with pytest.raises(ConfigError, match=r"broken\.yaml is not valid YAML"):
        load_config(path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")


def test_dataset_needs_root_or_toycity_fields():
    with pytest.raises(ConfigError, match="needs 'root'"):
        parse_config({"data": {"source": {"name": "s", "kind": "gta5"}}})
    with pytest.raises(ConfigError, match="needs 'domain' and 'count'"):
        parse_config({"data": {"source": {"name": "s", "kind": "toycity"}}})


def test_overrides_change_only_their_section():
    a = parse_config(MINIMAL)
    b = parse_config(MINIMAL, overrides=["train.lr=0.5", "refine.method=superpixel"])
    assert b.train.lr == 0.5 and b.refine.method == "superpixel"
    assert a.train.model_dump() != b.train.model_dump()
    assert a.model.model_dump() == b.model.model_dump()
    with pytest.raises(ConfigError, match="expected key.path=value"):
        parse_config(MINIMAL, overrides=["train.lr"])


def test_overrides_address_list_entries():
    cfg = load_config("configs/gta5.yaml", ["data.targets.1.root=/mnt/bdd", "data.targets.2.average=union"])
    assert cfg.data.targets[1].root == "/mnt/bdd" and cfg.data.targets[2].average == "union"
    assert cfg.data.targets[0].root == "/data/cityscapes"
    with pytest.raises(ConfigError, match=r"data.targets.7 is not an entry of a list of 3 \(entries are numbered 0..2\)"):
        load_config("configs/gta5.yaml", ["data.targets.7.root=/x"])
    with pytest.raises(ConfigError, match="train.lr is not a section"):
        load_config("configs/gta5.yaml", ["train.lr.x=1"])


# -- method-dependent sections: refine.method, prompts.backend, synthesize.backend -------------------------
def _refine(section: dict, overrides: list[str] | None = None):
    return parse_config({**MINIMAL, "refine": section}, "p.yaml", overrides).refine


def test_an_absent_method_means_the_default_one():
    cfg = parse_config(MINIMAL)
    assert isinstance(cfg.refine, SamRefine) and isinstance(cfg.prompts, TemplatePrompts)
    assert isinstance(cfg.synthesize, ToycitySynthesize)
    assert _refine({"min_area": 10}).min_area == 10
    assert isinstance(_refine({"method": "none"}), NoRefine)
    gta5 = load_config("configs/gta5.yaml")
    assert isinstance(gta5.prompts, VllmPrompts) and isinstance(gta5.synthesize, DiffusersSynthesize)
    assert gta5.refine.checkpoint == "weights/mobile_sam.pt"


def test_an_option_of_another_method_names_the_method_taking_it():
    with pytest.raises(ConfigError, match=r"^invalid config p\.yaml: refine\.segments: unknown key for "
                       r"refine\.method: sam \(it belongs to refine\.method: superpixel\)$"):
        _refine({"segments": 60})
    with pytest.raises(ConfigError, match=r"synthesize\.steps: unknown key for synthesize\.backend: toycity "
                       r"\(it belongs to synthesize\.backend: diffusers\)"):
        parse_config({**MINIMAL, "synthesize": {"steps": 4}})
    with pytest.raises(ConfigError, match=r"prompts\.temperature: unknown key for prompts\.backend: template "
                       r"\(it belongs to prompts\.backend: transformers, vllm\)"):
        parse_config({**MINIMAL, "prompts": {"temperature": 0.5}})
    with pytest.raises(ConfigError, match=r"refine\.min_area: unknown key for refine\.method: superpixel \(it"):
        _refine({"method": "superpixel", "min_area": 10})
    with pytest.raises(ConfigError, match=r"refine\.methd: unknown key for refine\.method: sam$"):
        _refine({"methd": "sam"})


def test_a_renamed_option_names_its_new_name():
    with pytest.raises(ConfigError, match=r"^invalid config p\.yaml: refine\.sam_checkpoint: renamed refine\.checkpoint$"):
        _refine({"sam_checkpoint": "w.pt"})
    with pytest.raises(ConfigError, match=r"refine\.superpixel_segments: renamed refine\.segments, which belongs to "
                       r"refine\.method: superpixel$"):
        _refine({"superpixel_segments": 60})


def test_a_bad_value_inside_a_method_names_the_key_without_the_method(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("data:\n  source: {name: s, kind: toycity, domain: sim, count: 4}\n"
                    "refine: {method: sam, points_per_component: 0}\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: refine\.points_per_component: Input should be greater than "
                       r"or equal to 1 \(got 0\)$"):
        load_config(path)
    with pytest.raises(ConfigError, match=r"refine\.method: must be one of sam, superpixel, none \(got 'slic'\)"):
        _refine({"method": "slic"})
    with pytest.raises(ConfigError, match=r"prompts\.min_words: Input should be greater"):
        parse_config({**MINIMAL, "prompts": {"backend": "vllm", "model": "m", "min_words": 0}})


def test_an_llm_writer_needs_a_model():
    with pytest.raises(ConfigError, match=r"prompts\.model: required for prompts\.backend: vllm "
                       r"\(a HF repo id or a local folder\)"):
        parse_config({**MINIMAL, "prompts": {"backend": "vllm"}})
    with pytest.raises(ValidationError):
        VllmPrompts()


def test_superpixel_options_of_the_other_algorithm_are_refused():
    with pytest.raises(ConfigError, match=r"^invalid config p\.yaml: refine\.scale applies to refine\.algorithm: "
                       r"felzenszwalb, not slic$"):
        _refine({"method": "superpixel", "scale": 50})
    with pytest.raises(ConfigError, match=r"refine\.segments applies to refine\.algorithm: slic"):
        _refine({"method": "superpixel", "algorithm": "felzenszwalb", "segments": 50})
    assert SuperpixelRefine(algorithm="felzenszwalb", scale=50).scale == 50
    assert SuperpixelRefine(segments=60).model_dump() == {  # the hash covers the chosen algorithm's options only
        "method": "superpixel", "algorithm": "slic", "segments": 60, "compactness": 10.0}


def test_set_switching_the_method_drops_the_options_it_does_not_take(caplog):
    profile = {"method": "superpixel", "segments": 150}
    with caplog.at_level(logging.INFO, logger="clouds.config.root"):
        assert isinstance(_refine(profile, ["refine.method=none"]), NoRefine)
    assert "dropped refine.segments, which refine.method: none does not take" in caplog.text
    sam = load_config("configs/gta5.yaml", ["refine.method=superpixel", "refine.segments=40"]).refine
    assert isinstance(sam, SuperpixelRefine) and sam.segments == 40
    assert _refine(profile, ["refine.method=superpixel", "refine.compactness=2"]).segments == 150  # same method
    toy = load_config("configs/gta5.yaml", ["synthesize.backend=toycity"]).synthesize
    assert isinstance(toy, ToycitySynthesize) and toy.num_images == 5000
    assert isinstance(parse_config(MINIMAL, overrides=["refine.method=none"]).refine, NoRefine)
    with pytest.raises(ConfigError, match=r"refine\.method: must be one of"):  # an unknown method drops nothing
        _refine(profile, ["refine.method=slic"])
    with pytest.raises(ConfigError, match=r"refine\.method: must be one of .* \(got \['sam'\]\)"):
        _refine(profile, ["refine.method=[sam]"])


def test_the_dump_round_trips_through_json():
    cfg = load_config("configs/gta5.yaml", ["refine.method=superpixel"])
    assert type(cfg).model_validate_json(cfg.model_dump_json()) == cfg
