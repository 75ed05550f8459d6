"""Integrity on the read path (issue 12): member checksums are checked by every stage read unless
`artifacts.verify_reads` opts out, and the commit marker must agree with the manifest and the shards."""

from __future__ import annotations

import json
import os
import re
import tarfile
from pathlib import Path

import fsspec
import numpy as np
import pytest
from typer.testing import CliRunner

from artifacts import ArtifactError, ArtifactWriter, open_artifact
from clouds.cli import app
from clouds.config import ConfigError, load_config

MICRO = str(Path(__file__).parent / "micro.yaml")
runner = CliRunner()

SWAPPED = r"shard-000000\.tar, sample 's0000': member 'seg\.png' fails its sha256 check"


def make_sample(i: int) -> dict:
    """Constant labels encode to PNGs of one size, so two can be swapped without moving a tar header."""
    rng = np.random.default_rng(i)
    return {
        "__key__": f"s{i:04d}",
        "png": rng.integers(0, 256, (8, 12, 3), dtype=np.uint8),
        "seg.png": np.full((8, 12), i % 18 + 1, dtype=np.uint8),
        "json": {"domain": "sim", "index": i},
    }


def write(url: str, n: int = 10, per_shard: int = 4, stage: str = "test") -> str:
    w = ArtifactWriter(url, stage=stage, config_hash="h", shard_max_samples=per_shard)
    w.write_stream((f"s{i:04d}", lambda i=i: make_sample(i)) for i in range(n))
    w.commit({"n": n})
    return url


def spans(data: bytes) -> dict[str, tuple[int, int]]:
    import io

    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        return {m.name: (m.offset_data, m.size) for m in tf.getmembers()}


def swap_members(data: bytes, a: str, b: str) -> bytes:
    """Exchange two members' bytes in place: the tar stays valid and both still decode."""
    (oa, na), (ob, nb) = spans(data)[a], spans(data)[b]
    assert na == nb, "the test needs two members of equal size"
    out = bytearray(data)
    out[oa : oa + na], out[ob : ob + nb] = data[ob : ob + nb], data[oa : oa + na]
    return bytes(out)


def edit_json(data: bytes, name: str) -> bytes:
    """Change one digit of a json member: still valid JSON of the same length."""
    offset, size = spans(data)[name]
    text = data[offset : offset + size]
    assert b'"index":' in text
    pos = offset + text.index(b'"index":') + len(b'"index":')
    out = bytearray(data)
    out[pos] = ord("7") if out[pos] != ord("7") else ord("8")
    return bytes(out)


def damage(path: Path, edit) -> None:
    path.write_bytes(edit(path.read_bytes()))


def edit_marker(folder: Path, change) -> None:
    marker = folder / "_COMMITTED.json"
    lineage = json.loads(marker.read_text())
    change(lineage)
    marker.write_text(json.dumps(lineage))


def error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("error:")]


# -- 1. member checksums on stage reads -------------------------------------------------------------
def _read_default(url: str, **opt_out: bool) -> None:
    list(open_artifact(url, **opt_out).iter_samples())


def _read_evaluate(url: str, **opt_out: bool) -> None:
    from stages.evaluate.stage import _samples

    list(_samples(url, **opt_out))


def _read_train(url: str, **opt_out: bool) -> None:
    from stages.train.data import LabeledArtifact

    art = LabeledArtifact(url, **opt_out)
    for i in range(len(art)):
        art.load(i)


READERS = {"iter_samples": _read_default, "evaluate": _read_evaluate, "train": _read_train}


@pytest.mark.parametrize("reader", sorted(READERS))
def test_swapped_label_fails_stage_reads_naming_shard_sample_member(tmp_path, reader):
    url = write(str(tmp_path / "a"))
    damage(tmp_path / "a" / "shard-000000.tar", lambda d: swap_members(d, "s0000.seg.png", "s0001.seg.png"))
    with pytest.raises(ArtifactError, match=SWAPPED):
        READERS[reader](url)


@pytest.mark.parametrize("reader", sorted(READERS))
def test_opting_out_skips_the_member_check(tmp_path, reader):
    url = write(str(tmp_path / "a"))
    damage(tmp_path / "a" / "shard-000000.tar", lambda d: swap_members(d, "s0000.seg.png", "s0001.seg.png"))
    READERS[reader](url, verify=False)  # trusted storage: the swap goes through, as documented


@pytest.mark.parametrize("reader", ["iter_samples", "evaluate"])
def test_edited_json_member_fails_even_when_not_read(tmp_path, reader):
    """Evaluate asks for image and label only; the json beside them is checked all the same."""
    url = write(str(tmp_path / "a"))
    damage(tmp_path / "a" / "shard-000001.tar", lambda d: edit_json(d, "s0005.json"))
    with pytest.raises(ArtifactError, match=r"shard-000001\.tar, sample 's0005': member 'json' fails its sha256"):
        READERS[reader](url)


def test_verify_reads_is_a_typed_config_key_plumbed_to_the_stages(tmp_path):
    """`artifacts.verify_reads: false` reaches a stage built by the pipeline (refine, as a Ray worker builds it)."""
    from clouds.layout import RunLayout
    from pipelines.context import RunContext
    from stages.table import STAGES

    assert load_config(MICRO).artifacts.verify_reads is True
    with pytest.raises(ConfigError, match=r"artifacts\.verify_reads"):
        load_config(MICRO, ["artifacts.verify_reads=sometimes"])
    layout = RunLayout(str(tmp_path), "micro")
    source = layout.round(1, "pseudo-label")
    write(source, n=4, per_shard=4, stage="pseudo-label")
    damage(Path(source) / "shard-000000.tar", lambda d: swap_members(d, "s0000.seg.png", "s0001.seg.png"))

    def refine_shard(overrides: list[str]) -> None:
        ctx = RunContext(load_config(MICRO, ["refine.method=none", *overrides]), layout)
        STAGES["refine"].job(ctx.cfg, ctx.layout, 1, True, False).run_shard(0)

    with pytest.raises(ArtifactError, match=SWAPPED):
        refine_shard([])
    refine_shard(["artifacts.verify_reads=false"])


# -- 2. the commit marker against manifest and shards ----------------------------------------------
def test_marker_with_a_shard_removed_fails_naming_the_shard(tmp_path):
    url = write(str(tmp_path / "a"))
    assert len(open_artifact(url)) == 10
    edit_marker(tmp_path / "a", lambda m: m["shards"].remove("shard-000001.tar"))
    with pytest.raises(ArtifactError, match=r"_COMMITTED\.json: field 'shards' lacks 'shard-000001\.tar'"):
        open_artifact(url)


def test_edited_num_samples_fails(tmp_path):
    url = write(str(tmp_path / "a"))
    edit_marker(tmp_path / "a", lambda m: m.update(num_samples=9))
    with pytest.raises(ArtifactError, match=r"_COMMITTED\.json: field 'num_samples' is 9 but the manifest .* gives 10"):
        open_artifact(url)


def test_edited_content_hash_fails(tmp_path):
    url = write(str(tmp_path / "a"))
    edit_marker(tmp_path / "a", lambda m: m.update(content_hash="0" * 64))
    with pytest.raises(ArtifactError, match=r"_COMMITTED\.json: field 'content_hash' .* does not match"):
        open_artifact(url)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m.update(num_shards=2), r"field 'num_shards' is 2"),
        (lambda m: m.update(bytes=1), r"field 'bytes' is 1"),
        (lambda m: m.update(num_samples="10"), r"field 'num_samples' must be a count"),
        (lambda m: m.update(shards="shard-000000.tar"), r"field 'shards' must be a non-empty list"),
        (lambda m: m["shards"].append("../../etc/passwd"), r"field 'shards' holds '\.\./\.\./etc/passwd'"),
        (lambda m: m["shards"].append("shard-000000.tar"), r"field 'shards' lists \['shard-000000\.tar'\] more"),
        (lambda m: m["shards"].reverse(), r"field 'shards' orders the shards differently"),
        (lambda m: m.update(shards=[*m["shards"], "shard-000009.tar"]), r"lists 'shard-000009\.tar', which has no"),
    ],
)
def test_other_marker_edits_fail_naming_the_field(tmp_path, change, message):
    url = write(str(tmp_path / "a"))
    edit_marker(tmp_path / "a", change)
    with pytest.raises(ArtifactError, match=r"_COMMITTED\.json.*" + message):
        open_artifact(url)


def test_shard_files_must_match_the_marker(tmp_path):
    url = write(str(tmp_path / "a"))
    extra = tmp_path / "a" / "shard-000007.tar"
    extra.write_bytes((tmp_path / "a" / "shard-000000.tar").read_bytes())
    with pytest.raises(ArtifactError, match=r"shard-000007\.tar is a shard file that .*_COMMITTED\.json field"):
        open_artifact(url)
    extra.unlink()
    (tmp_path / "a" / "shard-000002.tar").unlink()
    with pytest.raises(ArtifactError, match=r"shard .*shard-000002\.tar listed in .* is missing"):
        open_artifact(url)


def _marker_list(folder: Path) -> None:
    (folder / "_COMMITTED.json").write_text("[]")


def _shard_folder(folder: Path) -> None:
    (folder / "shard-000001.tar").unlink()
    (folder / "shard-000001.tar").mkdir()


def _symlink_loop(folder: Path) -> None:
    (folder / "shard-000001.tar").unlink()
    os.symlink("shard-000001.tar", folder / "shard-000001.tar")


def _shard_removed(folder: Path) -> None:
    edit_marker(folder, lambda m: m["shards"].remove("shard-000001.tar"))


@pytest.mark.parametrize(
    ("damage_folder", "message"),
    [
        (_marker_list, r"_COMMITTED\.json is corrupt: expected a JSON object, got list"),
        (_shard_folder, r"shard-000001\.tar listed in .* is a folder, not a shard file"),
        (_symlink_loop, r"shard-000001\.tar listed in .* cannot be read: .*symbolic links"),
        (_shard_removed, r"field 'shards' lacks 'shard-000001\.tar'"),
    ],
)
def test_inspect_prints_one_error_line_for_a_broken_commit(tmp_path, damage_folder, message):
    url = write(str(tmp_path / "a"))
    damage_folder(tmp_path / "a")
    result = runner.invoke(app, ["inspect", url])
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit) and "Traceback" not in result.output
    lines = error_lines(result.output)
    assert len(lines) == 1, result.output
    assert re.search(message, lines[0]), lines[0]
    as_json = runner.invoke(app, ["inspect", url, "--json"])
    assert as_json.exit_code == 1 and json.loads(as_json.stdout)["error"]


def _three_bad_members(folder: Path) -> None:
    damage(folder / "shard-000000.tar", lambda d: swap_members(d, "s0000.seg.png", "s0001.seg.png"))
    damage(folder / "shard-000001.tar", lambda d: edit_json(d, "s0005.json"))


BAD = [
    "shard-000000.tar, sample 's0000': member 'seg.png' fails its sha256 check",
    "shard-000000.tar, sample 's0001': member 'seg.png' fails its sha256 check",
    "shard-000001.tar, sample 's0005': member 'json' fails its sha256 check",
]


@pytest.mark.parametrize("pixels", ["--pixels", "--no-pixels"])
def test_inspect_reports_every_bad_member_and_no_verify_skips_the_check(tmp_path, pixels):
    url = write(str(tmp_path / "a"))
    _three_bad_members(tmp_path / "a")
    result = runner.invoke(app, ["inspect", url, pixels])  # local storage: verified by default
    assert result.exit_code == 2, result.output
    lines = error_lines(result.output)
    assert len(lines) == 3 and all(any(b in line for line in lines) for b in BAD), result.output
    as_json = runner.invoke(app, ["inspect", url, pixels, "--json"])
    info = json.loads(as_json.stdout)
    assert as_json.exit_code == 1 and info["verified"] is True and len(info["problems"]) == 3
    skipped = runner.invoke(app, ["inspect", url, pixels, "--no-verify"])
    assert skipped.exit_code == 0, skipped.output
    assert not error_lines(skipped.output) and "--no-verify" in skipped.stdout


def test_inspect_verifies_remote_storage_only_when_asked(tmp_path):
    url = write("memory://remote/a")
    fs = fsspec.filesystem("memory")
    data = fs.cat("/remote/a/shard-000000.tar")
    fs.pipe("/remote/a/shard-000000.tar", swap_members(data, "s0000.seg.png", "s0001.seg.png"))
    assert runner.invoke(app, ["inspect", url]).exit_code == 0
    asked = runner.invoke(app, ["inspect", url, "--verify"])
    assert asked.exit_code == 2 and len(error_lines(asked.output)) == 2, asked.output


def test_clean_artifact_verifies(tmp_path):
    url = write(str(tmp_path / "a"))
    result = runner.invoke(app, ["inspect", url, "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["verified"] is True and info["problems"] == [] and info["samples"] == 10
