"""The artifact contract: atomic, resumable, byte-reproducible shards; readers refuse anything broken."""

from __future__ import annotations

import io
import json
import tarfile

import numpy as np
import pytest

from artifacts import ArtifactError, ArtifactWriter, Folder, commit_folder, open_artifact, verify_folder


def make_sample(i: int) -> dict:
    rng = np.random.default_rng(i)
    return {
        "__key__": f"s{i:04d}",
        "png": rng.integers(0, 256, (8, 12, 3), dtype=np.uint8),
        "seg.png": rng.integers(0, 19, (8, 12), dtype=np.uint8),
        "json": {"domain": "sim" if i % 2 else "real", "index": i},
    }


def lazy(n: int, fail_at: int | None = None):
    for i in range(n):
        def build(i=i):
            if i == fail_at:
                raise RuntimeError("simulated crash")
            return make_sample(i)
        yield f"s{i:04d}", build


def write(url: str, n: int = 10, per_shard: int = 3, **kw):
    w = ArtifactWriter(url, stage="test", config_hash="h", shard_max_samples=per_shard, **kw)
    w.write_stream(lazy(n))
    return w.commit({"n": n})


@pytest.mark.parametrize("root", ["memory://art", "local"])
def test_roundtrip_local_and_memory(root, tmp_path):
    url = str(tmp_path / "art") if root == "local" else root
    art = write(url)
    assert art.num_samples == 10 and len(art.shards) == 4
    samples = list(art.iter_samples(verify=True))
    assert [s["__key__"] for s in samples] == [f"s{i:04d}" for i in range(10)]
    for i, s in enumerate(samples):
        ref = make_sample(i)
        np.testing.assert_array_equal(s["png"], ref["png"])
        np.testing.assert_array_equal(s["seg.png"], ref["seg.png"])
        assert s["json"] == ref["json"]
    m = art.manifest
    assert m.column("domain").to_pylist()[:2] == ["real", "sim"]
    assert m.column("meta_index").to_pylist() == list(range(10))
    assert set(m.column("members").to_pylist()[0]) == {"json", "png", "seg.png"}
    assert art.lineage["stage"] == "test" and art.lineage["stats"] == {"n": 10}


def test_shards_roll_over_by_bytes():
    w = ArtifactWriter("memory://b", stage="test", config_hash="h", shard_max_samples=100, shard_max_bytes=1500)
    w.write_stream(lazy(6))
    art = w.commit()
    assert len(art.shards) > 1
    assert all(b <= 1500 or n == 1 for b, n in _shard_sizes(art))


def _shard_sizes(art):
    m = art.manifest.to_pylist()
    return [(sum(r["bytes"] for r in m if r["shard"] == s), sum(r["shard"] == s for r in m)) for s in art.shards]


def test_resume_after_crash_is_byte_identical(tmp_path):
    ref = write(str(tmp_path / "ref"))
    url = str(tmp_path / "crash")
    w = ArtifactWriter(url, stage="test", config_hash="h", shard_max_samples=3)
    with pytest.raises(RuntimeError, match="simulated crash"):
        w.write_stream(lazy(10, fail_at=7))
    assert not (tmp_path / "crash" / "_COMMITTED.json").exists()
    with pytest.raises(ArtifactError, match="not a committed artifact"):
        open_artifact(url)
    assert sorted(p.name for p in (tmp_path / "crash").glob("shard-*.tar")) == [
        "shard-000000.tar", "shard-000001.tar"
    ]
    built: list[str] = []
    w2 = ArtifactWriter(url, stage="test", config_hash="h", shard_max_samples=3)
    w2.write_stream((k, (lambda k=k, b=b: (built.append(k), b())[1])) for k, b in lazy(10))
    art = w2.commit({"n": 10})
    assert built == [f"s{i:04d}" for i in range(6, 10)], "complete shards must not be rebuilt"
    for shard in ref.shards:
        assert (tmp_path / "ref" / shard).read_bytes() == (tmp_path / "crash" / shard).read_bytes()
    assert art.lineage["content_hash"] == ref.lineage["content_hash"]
    assert art.lineage["manifest_sha256"] == ref.lineage["manifest_sha256"]


def test_changed_config_discards_partial_work(tmp_path):
    url = str(tmp_path / "a")
    w = ArtifactWriter(url, stage="test", config_hash="old", shard_max_samples=3)
    with pytest.raises(RuntimeError):
        w.write_stream(lazy(10, fail_at=5))
    w2 = ArtifactWriter(url, stage="test", config_hash="new", shard_max_samples=3)
    assert w2.complete_shards() == []


def test_planned_shards_skip_complete_ones():
    w = ArtifactWriter("memory://p", stage="test", config_hash="h")
    w.write_shard(1, (make_sample(i) for i in (2, 3)))
    with pytest.raises(ArtifactError, match=r"shards \[0\] are missing"):
        w.commit()
    assert w.is_shard_complete(1) and not w.is_shard_complete(0)
    w.write_shard(0, (make_sample(i) for i in (0, 1)))
    art = w.commit(expected_shards=2)
    assert art.keys == ["s0000", "s0001", "s0002", "s0003"]


def test_committed_artifact_is_not_overwritten_silently():
    write("memory://c")
    with pytest.raises(ArtifactError, match="already a committed artifact"):
        ArtifactWriter("memory://c", stage="test", config_hash="h")
    ArtifactWriter("memory://c", stage="test", config_hash="h", overwrite=True)
    with pytest.raises(ArtifactError, match="not a committed artifact"):
        open_artifact("memory://c")


def test_missing_artifact_and_uncommitted_folder():
    with pytest.raises(ArtifactError, match="does not exist"):
        open_artifact("memory://nothing-here")
    Folder.at("memory://half").makedirs()
    Folder.at("memory://half").write_atomic("shard-000000.tar", b"junk")
    with pytest.raises(ArtifactError, match="not a committed artifact"):
        open_artifact("memory://half")


def test_truncated_shard_is_reported_by_name(tmp_path):
    art = write(str(tmp_path / "t"))
    path = tmp_path / "t" / art.shards[1]
    path.write_bytes(path.read_bytes()[:700])
    with pytest.raises(ArtifactError, match=r"shard-000001\.tar"):
        list(art.iter_samples())


def test_corrupt_member_fails_verification(tmp_path):
    art = write(str(tmp_path / "v"))
    path = tmp_path / "v" / art.shards[0]
    data = bytearray(path.read_bytes())
    with tarfile.open(fileobj=io.BytesIO(bytes(data))) as tf:
        member = next(m for m in tf.getmembers() if m.name.endswith(".json"))
    data[member.offset_data] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=r"fails its sha256 check"):
        list(open_artifact(str(tmp_path / "v")).iter_samples(verify=True))


def _rewrite_shard(path, edit):
    """Rebuild a shard tar with `edit(name, data) -> list[(name, data)]` applied to each member."""
    with tarfile.open(path) as tf:
        items = [(m.name, tf.extractfile(m).read()) for m in tf.getmembers()]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as out:
        for name, data in items:
            for new_name, new_data in edit(name, data):
                info = tarfile.TarInfo(new_name)
                info.size = len(new_data)
                out.addfile(info, io.BytesIO(new_data))
    path.write_bytes(buf.getvalue())


def test_missing_member_is_reported(tmp_path):
    art = write(str(tmp_path / "m"))
    _rewrite_shard(tmp_path / "m" / art.shards[0], lambda n, d: [] if n == "s0001.seg.png" else [(n, d)])
    with pytest.raises(ArtifactError, match=r"s0001.*seg\.png"):
        list(open_artifact(str(tmp_path / "m")).iter_samples())


def test_path_traversal_member_is_refused(tmp_path):
    art = write(str(tmp_path / "pt"))
    _rewrite_shard(
        tmp_path / "pt" / art.shards[0],
        lambda n, d: [(n, d), ("../../evil.txt", b"x")] if n == "s0000.json" else [(n, d)],
    )
    with pytest.raises(ArtifactError, match="escapes the artifact folder"):
        list(open_artifact(str(tmp_path / "pt")).iter_samples())


def test_manifest_checksum_disagreement(tmp_path):
    art = write(str(tmp_path / "mc"))
    marker = tmp_path / "mc" / "_COMMITTED.json"
    lineage = json.loads(marker.read_text())
    lineage["manifest_sha256"] = "0" * 64
    marker.write_text(json.dumps(lineage))
    with pytest.raises(ArtifactError, match="does not match the checksum"):
        _ = open_artifact(str(tmp_path / "mc")).manifest
    assert art.num_samples == 10


def test_bad_keys_and_members_are_refused():
    w = ArtifactWriter("memory://k", stage="test", config_hash="h")
    with pytest.raises(ArtifactError, match="key 'a.b' is invalid"):
        w.write_shard(0, [{"__key__": "a.b", "txt": "x"}])
    with pytest.raises(ArtifactError, match="images must be uint8"):
        w.write_shard(0, [{"__key__": "a", "png": np.zeros((4, 4), np.float32)}])
    assert not w.is_shard_complete(0)
    w.write_shard(0, [{"__key__": "a", "txt": "x"}, {"__key__": "a", "txt": "y"}])
    with pytest.raises(ArtifactError, match="appears twice"):
        w.commit()


def test_inputs_must_be_committed_and_are_recorded():
    src = write("memory://src")
    with pytest.raises(ArtifactError, match="not a committed artifact|does not exist"):
        ArtifactWriter("memory://dst", stage="t", config_hash="h", inputs=["memory://nope"])
    w = ArtifactWriter("memory://dst", stage="t", config_hash="h", inputs=[src])
    w.write_shard(0, [make_sample(0)])
    art = w.commit()
    assert art.lineage["inputs"] == [
        {"url": "memory://src", "stage": "test", "content_hash": src.lineage["content_hash"]}
    ]


def test_folder_artifacts_commit_and_verify(tmp_path):
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "weights.bin").write_bytes(b"1234")
    lineage = commit_folder(str(folder), stage="train", config_hash="h", stats={"iters": 3})
    assert lineage["files"].keys() == {"weights.bin"}
    verify_folder(str(folder))
    (folder / "weights.bin").write_bytes(b"9999")
    with pytest.raises(ArtifactError, match="weights.bin fails its sha256"):
        verify_folder(str(folder))
    with pytest.raises(ArtifactError, match="not a sharded one"):
        open_artifact(str(folder))


def test_unreachable_storage_url():
    with pytest.raises(ArtifactError, match="cannot open storage URL"):
        open_artifact("nosuchproto://bucket/x")


def test_shard_stats_survive_a_resume():
    w = ArtifactWriter("memory://st", stage="test", config_hash="h")
    stats: dict = {}

    def samples():
        for i in range(3):
            stats["count"] = stats.get("count", 0) + 1
            yield make_sample(i)

    w.write_shard(0, samples(), stats)
    again = ArtifactWriter("memory://st", stage="test", config_hash="h")
    assert again.shard_stats() == {0: {"count": 3}}


def test_image_passed_as_bytes_gets_its_size_in_the_manifest():
    from artifacts.codecs import encode_member

    w = ArtifactWriter("memory://bytes", stage="test", config_hash="h")
    w.write_shard(0, [{"__key__": "a", "png": encode_member("png", np.zeros((5, 7, 3), np.uint8))}])
    art = w.commit()
    assert art.manifest.column("height").to_pylist() == [5] and art.manifest.column("width").to_pylist() == [7]
    with pytest.raises(ArtifactError, match="not a readable image"):
        w2 = ArtifactWriter("memory://bytes2", stage="test", config_hash="h")
        w2.write_shard(0, [{"__key__": "a", "png": b"not an image"}])
