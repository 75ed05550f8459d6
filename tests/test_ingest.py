"""Stage `ingest`: label maps exactly as SPEC.md, every dataset layout, loud bad input, resume."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from fixtures_datasets import (
    make_acdc,
    make_bdd10k,
    make_cityscapes,
    make_gta5,
    make_mapillary,
    make_synthia,
    write_png16,
)
from PIL import Image

from artifacts import COMMIT_MARKER, ArtifactError, image_member, open_artifact
from clouds.config import ArtifactConfig, DatasetSpec
from stages.ingest import DatasetError, ingest
from stages.ingest.labelmaps import CITYSCAPES_LUT, GTA5_LUT, MAPILLARY_LUT, SYNTHIA_LUT, apply_lut
from stages.ingest.readers import read_synthia_label
from stages.ingest.sources.gta5 import GTA5Source

SMALL = ArtifactConfig(shard_max_samples=2)

# The maps transcribed from SPEC.md a second time, independently of stages/ingest/labelmaps.py.
SPEC_CITYSCAPES = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11,
                   25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}
SPEC_SYNTHIA = {3: 0, 4: 1, 2: 2, 21: 3, 5: 4, 7: 5, 15: 6, 9: 7, 6: 8, 16: 9, 1: 10, 10: 11, 17: 12, 8: 13,
                18: 14, 19: 15, 20: 16, 12: 17, 11: 18}
SPEC_MAPILLARY = {13: 0, 24: 0, 41: 0, 2: 1, 15: 1, 17: 2, 6: 3, 3: 4, 45: 5, 47: 5, 48: 6, 50: 7, 30: 8,
                  29: 9, 27: 10, 19: 11, 20: 12, 21: 12, 22: 12, 55: 13, 61: 14, 54: 15, 58: 16, 57: 17, 52: 18}


@pytest.mark.parametrize(
    "lut, spec_map",
    [(GTA5_LUT, SPEC_CITYSCAPES), (CITYSCAPES_LUT, SPEC_CITYSCAPES), (SYNTHIA_LUT, SPEC_SYNTHIA),
     (MAPILLARY_LUT, SPEC_MAPILLARY)],
    ids=["gta5", "cityscapes", "synthia", "mapillary"],
)
def test_label_maps_match_spec_value_by_value(lut, spec_map):
    assert lut.dtype == np.uint8 and lut.shape == (256,)
    for raw in range(256):
        assert lut[raw] == spec_map.get(raw, 255), f"raw id {raw}"
    assert sorted(set(spec_map.values())) == list(range(19))
    with pytest.raises(ValueError):
        lut[0] = 1  # the tables are shared, so they are read-only


def test_apply_lut_sends_ids_beyond_a_byte_to_ignore():
    raw = np.array([[3, 259], [1000, 65535]], dtype=np.uint16)
    assert apply_lut(raw, SYNTHIA_LUT).tolist() == [[0, 255], [255, 255]]


def test_synthia_reader_keeps_all_16_bits_of_the_first_channel(tmp_path):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 65536, (7, 9, 3), dtype=np.uint16)
    path = write_png16(tmp_path / "l.png", labels)
    assert np.array_equal(read_synthia_label(path), labels[..., 0])


BUILDERS = {
    "gta5": lambda root: make_gta5(root, 5),
    "synthia": lambda root: make_synthia(root, 3),
    "cityscapes": lambda root: make_cityscapes(root, "val", 4),
    "cityscapes-trainids": lambda root: make_cityscapes(root, "val", 3, train_ids=True),
    "bdd10k": lambda root: make_bdd10k(root, 3),
    "mapillary": lambda root: make_mapillary(root, 3),
    "acdc": lambda root: make_acdc(root, "night", 3),
}


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_each_dataset_ingests_to_exact_train_ids(tmp_path, name):
    fx = BUILDERS[name](tmp_path / "data")
    art = ingest(fx.spec(), str(tmp_path / "out"), SMALL)
    assert art.num_samples == len(fx.labels) and len(art.shards) == (len(fx.labels) + 1) // 2
    samples = list(art.iter_samples(verify=True))
    assert [s["__key__"] for s in samples] == list(fx.labels)
    domain = "acdc/night" if fx.kind == "acdc" else fx.kind
    for s in samples:
        key = s["__key__"]
        assert np.array_equal(s["seg.png"], fx.labels[key]), f"{name} {key}: labels differ"
        assert np.array_equal(image_member(s), fx.images[key]), f"{name} {key}: images differ"
        meta = s["json"]
        assert meta["dataset"] == fx.kind and meta["domain"] == domain
        assert meta["source_file"] == fx.image_files[key].relative_to(fx.root).as_posix()
        assert meta["label_file"] == fx.label_files[key].relative_to(fx.root).as_posix()
        assert meta["class_pixels"] == np.bincount(fx.labels[key].ravel(), minlength=256)[:19].tolist()
    # Every train id and ignore show up: mapped and unmapped raw ids were all exercised.
    assert set(np.unique(np.stack([s["seg.png"] for s in samples]))) == {*range(19), 255}
    assert set(art.manifest.column("domain").to_pylist()) == {domain}
    stats = art.lineage["stats"]
    total = np.sum([np.bincount(v.ravel(), minlength=256) for v in fx.labels.values()], axis=0)
    assert stats["class_pixels"] == total[:19].tolist() and stats["ignore_pixels"] == total[255]
    assert stats["samples"] == len(fx.labels) and stats["excluded"] == 0


def test_gta5_pairs_of_mismatched_size_are_excluded_and_counted(tmp_path, caplog):
    fx = make_gta5(tmp_path, 5, mismatched=(2, 4))
    with caplog.at_level(logging.WARNING):
        art = ingest(fx.spec(), str(tmp_path / "out"), SMALL)
    assert art.keys == ["00001", "00003", "00005"] == list(fx.labels)
    stats = art.lineage["stats"]
    assert stats["excluded"] == 2 and stats["samples"] == 3
    assert [e["file"] for e in stats["excluded_files"]] == ["images/00002.png", "images/00004.png"]
    assert "images/00002.png" in caplog.text and "images/00004.png" in caplog.text


def test_count_caps_a_real_dataset_and_jpg_storage(tmp_path):
    fx = make_acdc(tmp_path, "fog", 4)
    art = ingest(fx.spec(count=2), "memory://ingest/acdc", ArtifactConfig(image_format="jpg"))
    assert art.keys == list(fx.labels)[:2]
    sample = next(art.iter_samples())
    assert "jpg" in sample and "png" not in sample
    assert np.array_equal(sample["seg.png"], fx.labels[sample["__key__"]])


def _no_commit(url: Path) -> None:
    assert not (url / COMMIT_MARKER).exists()
    with pytest.raises(ArtifactError):
        open_artifact(str(url))


def test_missing_dataset_folder_is_named(tmp_path):
    spec = DatasetSpec(name="x", kind="gta5", root=str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="nowhere"):
        ingest(spec, str(tmp_path / "out"), SMALL)
    _no_commit(tmp_path / "out")


def test_empty_dataset_is_named(tmp_path):
    (tmp_path / "synthia" / "RGB").mkdir(parents=True)
    spec = DatasetSpec(name="x", kind="synthia", root=str(tmp_path / "synthia"))
    with pytest.raises(DatasetError, match=r"synthia/RGB"):
        ingest(spec, str(tmp_path / "out"), SMALL)
    _no_commit(tmp_path / "out")


def test_image_without_label_is_named(tmp_path):
    fx = make_mapillary(tmp_path, 3)
    key = list(fx.labels)[1]
    fx.label_files[key].unlink()
    with pytest.raises(DatasetError, match=f"{key}.jpg.*{key}.png does not exist"):
        ingest(fx.spec(), str(tmp_path / "out"), SMALL)
    _no_commit(tmp_path / "out")


def test_size_mismatch_outside_gta5_is_an_error_naming_both_files(tmp_path):
    fx = make_acdc(tmp_path, "rain", 3)
    key = list(fx.labels)[2]
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(fx.label_files[key])
    with pytest.raises(DatasetError, match=f"{key}_rgb_anon.png is 32x48 but its label .*{key}_gt_labelTrainIds.png is 10x10"):
        ingest(fx.spec(), str(tmp_path / "out"), SMALL)
    _no_commit(tmp_path / "out")


@pytest.mark.parametrize("make", [lambda root: make_bdd10k(root, 3), lambda root: make_acdc(root, "snow", 3),
                                  lambda root: make_cityscapes(root, "val", 3, train_ids=True)],
                         ids=["bdd10k", "acdc", "cityscapes-trainids"])
def test_train_id_label_out_of_range_is_named(tmp_path, make):
    fx = make(tmp_path)
    key = list(fx.labels)[-1]
    bad = fx.labels[key].copy()
    bad[0, 0], bad[0, 1] = 19, 40
    Image.fromarray(bad).save(fx.label_files[key])
    with pytest.raises(DatasetError, match=rf"{fx.label_files[key].name}: label values \[19, 40\]"):
        ingest(fx.spec(), str(tmp_path / "out"), SMALL)
    _no_commit(tmp_path / "out")


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_image_is_named(tmp_path, damage):
    fx = make_gta5(tmp_path, 4)
    path = fx.image_files["00003"]
    data = path.read_bytes()
    path.write_bytes(b"not an image at all" if damage == "garbage" else data[: len(data) // 2])
    with pytest.raises(DatasetError, match=r"images/00003.png"):
        ingest(fx.spec(), str(tmp_path / "out"), SMALL)
    _no_commit(tmp_path / "out")


def test_colour_rendered_label_is_refused(tmp_path):
    fx = make_mapillary(tmp_path, 2)
    path = next(iter(fx.label_files.values()))
    Image.open(path).convert("RGB").save(path)
    with pytest.raises(DatasetError, match=rf"{path.name}: label image has mode 'RGB'"):
        ingest(fx.spec(), str(tmp_path / "out"), SMALL)


def test_resume_after_a_crash_equals_an_uninterrupted_run(tmp_path, monkeypatch):
    fx = make_gta5(tmp_path / "data", 5)
    clean = ingest(fx.spec(), str(tmp_path / "clean"), SMALL)

    loaded: list[str] = []
    original = GTA5Source.load

    def crashing(self, pair):
        if pair.key == "00004":
            raise RuntimeError("worker killed")
        loaded.append(pair.key)
        return original(self, pair)

    monkeypatch.setattr(GTA5Source, "load", crashing)
    with pytest.raises(RuntimeError, match="worker killed"):
        ingest(fx.spec(), str(tmp_path / "resumed"), SMALL)
    _no_commit(tmp_path / "resumed")
    assert (tmp_path / "resumed" / "shard-000000.tar").exists()  # the first full shard survived

    monkeypatch.setattr(GTA5Source, "load", lambda self, pair: loaded.append(pair.key) or original(self, pair))
    loaded.clear()
    resumed = ingest(fx.spec(), str(tmp_path / "resumed"), SMALL)
    assert loaded == ["00003", "00004", "00005"]  # shard 0 was kept, not rebuilt
    assert resumed.manifest.to_pylist() == clean.manifest.to_pylist()
    assert resumed.lineage["stats"] == clean.lineage["stats"]
    assert resumed.lineage["content_hash"] == clean.lineage["content_hash"]


def test_toycity_ingest_count_domain_and_determinism(tmp_path):
    spec = DatasetSpec(name="toy", kind="toycity", domain="fog", count=5, seed=3, height=32, width=64)
    first = ingest(spec, str(tmp_path / "a"), SMALL)
    again = ingest(spec, "memory://ingest/toy-again", SMALL)
    assert first.num_samples == 5 and first.keys == [f"fog-{i:06d}" for i in range(5)]
    assert set(first.manifest.column("domain").to_pylist()) == {"fog"}
    assert first.manifest.to_pylist() == again.manifest.to_pylist()
    assert first.lineage["content_hash"] == again.lineage["content_hash"]
    for i, s in enumerate(first.iter_samples()):
        assert s["json"]["dataset"] == "toycity" and s["json"]["domain"] == "fog"
        assert s["json"]["index"] == i and isinstance(s["json"]["scene"], dict)
        assert image_member(s).shape == (32, 64, 3) and s["seg.png"].shape == (32, 64)
        assert set(np.unique(s["seg.png"])) <= {*range(19), 255}
    other_seed = ingest(spec.model_copy(update={"seed": 4}), str(tmp_path / "b"), SMALL)
    assert other_seed.lineage["content_hash"] != first.lineage["content_hash"]
