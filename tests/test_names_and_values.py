"""Names that become paths cannot escape the run root, deletes stay inside it, and nonsense config values
are refused by the schema with the key named (issue 12, points 3 and 6)."""

from __future__ import annotations

import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

import annotated_types as at
import pytest
import yaml
from pydantic import BaseModel
from typer.testing import CliRunner

from artifacts import ArtifactError, ArtifactWriter
from artifacts.storage import Folder, safe_remove
from clouds.cli import app
from clouds.config import CloudsConfig, ConfigError, load_config, parse_config
from clouds.layout import RunLayout

REPO = Path(__file__).parent.parent
PROFILES = sorted((REPO / "configs").glob("*.yaml")) + [REPO / "tests" / "micro.yaml"]
TOY = {"kind": "toycity", "domain": "sim", "count": 4}
MINIMAL = {"data": {"source": {"name": "source", **TOY}, "targets": [{"name": "target-fog", **TOY}]}}


def _refused(overrides: list[str], tree: dict[str, Any] | None = None) -> str:
    with pytest.raises(ConfigError) as err:
        parse_config(tree or MINIMAL, "cfg.yaml", overrides)
    return str(err.value)


def _with(key: str, value: Any) -> dict[str, Any]:
    """MINIMAL with `key` (dotted, list indices allowed) set to `value`, as a YAML file would hold it."""
    tree = yaml.safe_load(yaml.safe_dump(MINIMAL))
    *parents, leaf = key.split(".")
    node: Any = tree
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    node[int(leaf) if isinstance(node, list) else leaf] = value
    return tree


def _victim(tmp_path: Path) -> Path:
    """A folder outside the run root that no delete of the run may touch."""
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("keep me")
    return victim


# -- point 3: names that become path components ----------------------------------------------------------


@pytest.mark.parametrize("key", ["run.name", "data.source.name", "data.targets.0.name", "data.source.split"])
@pytest.mark.parametrize("name", ["../../../victim", "../x", "/abs", "", "a/b", ".hidden", "-rf", "a..b", "x\n"])
def test_unsafe_names_are_refused_naming_the_key(key, name):
    message = _refused([], _with(key, name))
    assert message.startswith(f"invalid config cfg.yaml: {key}: "), message


def test_the_victim_dataset_name_is_refused_in_a_file(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("data:\n  source: {name: source, kind: toycity, domain: sim, count: 4}\n"
                    "  targets:\n    - {name: ../../../victim, kind: toycity, domain: fog, count: 4}\n")
    with pytest.raises(ConfigError, match=r"evil\.yaml: data\.targets\.0\.name: .*not a safe name"):
        load_config(path)


@pytest.mark.parametrize("name", ["source", "target-acdc-fog", "val_sim", "v1.2", "2024"])
def test_ordinary_names_pass(name):
    cfg = parse_config(_with("data.targets.0.name", f"{name}x"), overrides=[f"run.name={name!r}"])
    assert cfg.run.name == name and cfg.data.targets[0].name == f"{name}x"


def test_run_layout_refuses_names_from_outside_the_schema(tmp_path):
    """`--run` and layout callers skip the config schema: the layout applies the same rule."""
    with pytest.raises(ValueError, match=r"run name '\.\./x' is not a safe name"):
        RunLayout(str(tmp_path), "../x")
    with pytest.raises(ValueError, match="run name"):
        RunLayout(str(tmp_path), "")
    layout = RunLayout(str(tmp_path), "micro")
    with pytest.raises(ValueError, match=r"dataset name '\.\./\.\./\.\./victim'"):
        layout.data("../../../victim")
    with pytest.raises(ValueError, match="stage name"):
        layout.round(1, "../train")
    assert layout.data("source") == f"{tmp_path}/micro/data/source"


def test_cli_refuses_an_unsafe_run_name_before_starting():
    result = CliRunner().invoke(app, ["run", "ingest", "--config", "tests/micro.yaml", "--run", "../x"])
    assert result.exit_code == 2 and "error:" in result.output and "--run '../x'" in result.output


def test_delete_helper_deletes_inside_and_refuses_outside(tmp_path):
    victim = _victim(tmp_path)
    run = tmp_path / "runs" / "micro"
    (run / "data" / "old").mkdir(parents=True)
    (run / "data" / "old" / "x.tar").write_text("stale")
    (run / "link").symlink_to(victim, target_is_directory=True)
    (run / "file-link").symlink_to(victim / "precious.txt")
    outside = [
        f"{run}/data/../../../victim",  # `..` segments
        f"{run}/../../victim",
        str(victim),  # an absolute path elsewhere
        f"{run}/link",  # a symlink out of the run, and a path through it
        f"{run}/link/precious.txt",
        f"{run}/file-link",
        str(run),  # the run folder itself
        "memory://runs/micro/data",  # another filesystem
    ]
    for url in outside:
        with pytest.raises(ArtifactError, match="refusing to delete"):
            safe_remove(url, within=str(run))
    with pytest.raises(ArtifactError, match="climbs out"):
        Folder.at(str(run)).remove("..", "..", "victim")
    assert (victim / "precious.txt").read_text() == "keep me"
    safe_remove(f"{run}/data/old", within=str(run))
    assert not (run / "data" / "old").exists() and (run / "data").is_dir()
    safe_remove(f"{run}/data/never-existed", within=str(run))  # absent is fine


def test_delete_helper_on_object_storage_folds_dots():
    fs = Folder.at("memory://runs/micro/data/x").fs
    fs.pipe("/runs/micro/data/x/a", b"1")
    fs.pipe("/victim/a", b"2")
    with pytest.raises(ArtifactError, match="refusing to delete"):
        safe_remove("memory://runs/micro/../../victim", within="memory://runs/micro")
    safe_remove("memory://runs/micro/data/x", within="memory://runs/micro")
    assert not fs.exists("/runs/micro/data/x") and fs.exists("/victim/a")


def test_writer_does_not_discard_a_folder_outside_through_a_symlink(tmp_path):
    """The writer deletes unrelated partial work: through a symlinked artifact folder that was the victim."""
    victim = _victim(tmp_path)
    data = tmp_path / "runs" / "micro" / "data"
    data.mkdir(parents=True)
    (data / "source").symlink_to(victim, target_is_directory=True)
    with pytest.raises(ArtifactError, match=r"refusing to delete .*source \(it resolves to .*victim\)"):
        ArtifactWriter(str(data / "source"), stage="ingest", config_hash="h")
    assert (victim / "precious.txt").read_text() == "keep me"


def test_report_does_not_clear_a_folder_outside(tmp_path):
    from stages.report.html import write_report

    victim = _victim(tmp_path)
    with pytest.raises(ArtifactError, match="climbs out"):
        write_report(f"{tmp_path}/runs/micro/../../victim", "t", [], [])
    assert (victim / "precious.txt").exists()


# -- point 6: values that make no sense ------------------------------------------------------------------

BAD_VALUES = [
    ("train.lr", "nan"), ("train.lr", ".inf"), ("train.lr", "-1e-4"), ("train.lr", "0"),
    ("train.crop_size", "[0, 64]"), ("train.crop_size", "[64, -1]"), ("train.scale_range", "[2.0, 1.0]"),
    ("train.warmup_iters", "100000000000000000000000"), ("data.source.count", "100000000000000000000000"),
    ("data.source.count", "1.0e+23"), ("synthesize.num_images", "100000000000000000000000"),
    ("prompts.count", "0"), ("train.batch_size", "-2"), ("train.weight_decay", "-0.1"),
    ("train.grad_clip", ".nan"), ("run.seed", "-1"), ("data.source.seed", "4294967296"),
    ("model.decoder.dropout", "1.5"), ("model.decoder.num_queries", "0"), ("model.backbone.pixel_std", "[0, 1, 1]"),
    ("pseudo_label.confidence_threshold", "2"), ("pseudo_label.batch_size", "0"),
    ("refine.min_area_fraction", "-.inf"), ("refine.points_per_component", "0"), ("evaluate.short_side", "0"),
    ("loop.round_iters", "0"), ("executor.resources", "{train: {num_gpus: -1}}"),
    ("artifacts.shard_max_samples", "100000000000000000000000"),
]


@pytest.mark.parametrize(("key", "value"), BAD_VALUES, ids=[f"{k}={v}" for k, v in BAD_VALUES])
def test_nonsense_values_are_refused_naming_the_key(key, value):
    message = _refused([f"{key}={value}"])
    assert message.startswith("invalid config cfg.yaml: ") and key in message, message
    assert _refused([], _with(key, yaml.safe_load(value))) == message  # the same from a file


@pytest.mark.parametrize(("targets", "clash"), [
    ([{"name": "source", **TOY}], "targets.0.name 'source' is already the name of source"),
    ([{"name": "t", **TOY}, {"name": "t", **TOY, "seed": 2}], "targets.1.name 't' is already the name of targets.0"),
])
def test_duplicate_dataset_names_are_refused(targets, clash):
    tree = {"data": {"source": {"name": "source", **TOY}, "targets": targets}}
    assert clash in _refused([], tree)


@pytest.mark.parametrize("text", ["train:\n  batch_size: 2024-01-01\n", "train:\n  lr: 2024-01-01 10:00:00\n",
                                  "run:\n  name: 2024-01-01\n"])
def test_a_yaml_date_is_one_line_naming_file_and_key(tmp_path, text):
    path = tmp_path / "dated.yaml"
    path.write_text("data:\n  source: {name: s, kind: toycity, domain: sim, count: 4}\n" + text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    key = ".".join(line.strip().split(":")[0] for line in text.splitlines()[:2])
    assert "\n" not in message and "dated.yaml" in message and f"{key}: " in message and "YAML" in message


def test_a_date_in_an_override_and_in_the_cli_is_an_error_line(tmp_path):
    assert "train.batch_size: 2024-01-01 is a YAML date" in _refused(["train.batch_size=2024-01-01"])
    assert "not valid YAML" in _refused(["train.lr=[1"])
    path = tmp_path / "dated.yaml"
    path.write_text("data:\n  source: {name: s, kind: toycity, domain: sim, count: 4}\ntrain: {batch_size: 2024-01-01}\n")
    result = CliRunner().invoke(app, ["run", "ingest", "--config", str(path)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "error:" in result.output and "dated.yaml" in result.output and "train.batch_size" in result.output


@pytest.mark.parametrize("path", PROFILES, ids=[p.stem for p in PROFILES])
def test_shipped_profiles_still_validate(path):
    cfg = load_config(path)
    assert cfg.run.name and cfg.data.source.name


def _constraint_kinds(metadata: list[Any]) -> set[str]:
    kinds = set()
    for m in metadata:
        kinds |= {"lower"} if isinstance(m, at.Ge | at.Gt) else set()
        kinds |= {"upper"} if isinstance(m, at.Le | at.Lt) else set()
    return kinds


def _numeric_fields(annotation: Any, metadata: list[Any], key: str) -> typing.Iterator[tuple[str, set[str]]]:
    """(key, {'lower', 'upper'} present) for every int/float leaf of the config schema."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Annotated:
        extra = [m for a in args[1:] for m in getattr(a, "metadata", [a])]
        yield from _numeric_fields(args[0], [*metadata, *extra], key)
    elif origin in (typing.Union, types.UnionType):
        for a in args:
            if a is not type(None):
                yield from _numeric_fields(a, metadata, key)
    elif origin is tuple:
        for i, a in enumerate(args):
            yield from _numeric_fields(a, [], f"{key}.{i}")
    elif origin is list:
        yield from _numeric_fields(args[0], [], f"{key}.N")
    elif origin is dict:
        yield from _numeric_fields(args[1], [], f"{key}.K")
    elif origin is Literal or annotation is bool:
        return
    elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
        for name, field in annotation.model_fields.items():
            yield from _numeric_fields(field.annotation, list(field.metadata), f"{key}.{name}" if key else name)
    elif annotation in (int, float):
        yield key, _constraint_kinds(metadata)


def test_every_numeric_setting_has_bounds():
    """Policy for new fields too: every number in the config has a lower and an upper bound."""
    unbounded = [f"{key} (missing {sorted({'lower', 'upper'} - kinds)})"
                 for key, kinds in _numeric_fields(CloudsConfig, [], "") if kinds != {"lower", "upper"}]
    assert not unbounded, f"config numbers without a sane range (add Field(ge=..., le=...)): {unbounded}"
