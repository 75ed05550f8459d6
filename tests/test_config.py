"""Config profiles load; bad files fail naming the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from clouds.config import ConfigError, load_config, parse_config

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
    assert cfg.refine.min_area == 5000 and cfg.refine.points_per_component == 5 and cfg.refine.sam_model_type == "vit_t"
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
