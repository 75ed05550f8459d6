"""Artifact shards vs plain tar files, side by side in one run: write and read throughput, and the
peak memory of reading 4 vs 32 shards (it should stay flat: one shard is streamed at a time).

Reads are timed without member checks (`verify=False`, the artifacts.verify_reads opt-out) and with
them (the default for stage reads: each member's sha256 against the manifest); the target is
read+verify >= 0.8x the raw tar read. `open` is the cross-check of marker, manifest and shard files
that every open does.

    python benchmarks/bench_artifacts.py --samples 512 --repeats 5
"""

from __future__ import annotations

import argparse
import io
import tarfile
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np

from artifacts import ArtifactWriter, open_artifact
from artifacts.codecs import decode_member, encode_member


def make_samples(n: int, h: int, w: int) -> list[dict]:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    out = []
    for i in range(n):
        image = np.roll(base, i * 7, axis=1)
        out.append({"__key__": f"s{i:06d}", "png": image, "seg.png": (image[..., 0] % 19).astype(np.uint8),
                    "json": {"domain": "sim", "index": i}})
    return out


def encoded(samples: list[dict]) -> list[tuple[str, dict[str, bytes]]]:
    return [(s["__key__"], {m: encode_member(m, v) for m, v in s.items() if m != "__key__"}) for s in samples]


def write_raw_tar(folder: Path, items: list[tuple[str, dict[str, bytes]]], per_shard: int) -> None:
    """The baseline: the same bytes into plain tar files with the standard library, no manifest."""
    for start in range(0, len(items), per_shard):
        with tarfile.open(folder / f"raw-{start // per_shard:06d}.tar", "w") as tf:
            for key, members in items[start : start + per_shard]:
                for m, data in sorted(members.items()):
                    info = tarfile.TarInfo(f"{key}.{m}")
                    info.size = len(data)
                    tf.addfile(info, io.BytesIO(data))


def read_raw_tar(folder: Path) -> int:
    n = 0
    for path in sorted(folder.glob("raw-*.tar")):
        with tarfile.open(path) as tf:
            for info in tf:
                data = tf.extractfile(info).read()
                decode_member(info.name.split(".", 1)[1], data)
                n += 1
    return n


def write_artifact(url: str, items: list[tuple[str, dict[str, bytes]]], per_shard: int) -> None:
    w = ArtifactWriter(url, stage="bench", config_hash="b", shard_max_samples=per_shard)
    for start in range(0, len(items), per_shard):
        w.write_shard(start // per_shard, ({"__key__": k, **m} for k, m in items[start : start + per_shard]))
    w.commit()


def read_artifact(url: str, verify: bool) -> int:
    return sum(1 for _ in open_artifact(url, verify=verify).iter_samples())


def best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def best_interleaved(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Best time of each function, taking turns round after round: on a shared machine a burst of load
    then slows every contender alike instead of whichever happened to run during it."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    return {name: min(ts) for name, ts in times.items()}


def peak_read_mb(url: str) -> float:
    tracemalloc.start()
    read_artifact(url, verify=True)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=512)
    ap.add_argument("--height", type=int, default=128)
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--per-shard", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    items = encoded(make_samples(args.samples, args.height, args.width))
    mb = sum(len(b) for _, m in items for b in m.values()) / 2**20
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        counter = iter(range(10**6))

        def fresh(prefix: str) -> Path:
            p = tmp / f"{prefix}{next(counter)}"
            p.mkdir()
            return p

        t_raw_w = best(lambda: write_raw_tar(fresh("raw"), items, args.per_shard), args.repeats)
        t_art_w = best(lambda: write_artifact(str(fresh("art") / "a"), items, args.per_shard), args.repeats)
        raw_dir, art_url = fresh("rawr"), str(fresh("artr") / "a")
        write_raw_tar(raw_dir, items, args.per_shard)
        write_artifact(art_url, items, args.per_shard)
        reads = best_interleaved({
            "raw": lambda: read_raw_tar(raw_dir),
            "artifact": lambda: read_artifact(art_url, verify=False),
            "verify": lambda: read_artifact(art_url, verify=True),
        }, args.repeats)
        t_raw_r, t_art_r, t_art_v = reads["raw"], reads["artifact"], reads["verify"]
        t_open = best(lambda: open_artifact(art_url), args.repeats)

        small = make_samples(32 * 8, args.height, args.width)
        url4, url32 = str(fresh("m4") / "a"), str(fresh("m32") / "a")
        write_artifact(url4, encoded(small[: 4 * 8]), 8)
        write_artifact(url32, encoded(small), 8)
        peak4, peak32 = peak_read_mb(url4), peak_read_mb(url32)

    print(f"{args.samples} samples of {args.height}x{args.width} ({mb:.1f} MiB encoded), {args.per_shard}/shard, best of {args.repeats}")
    print(f"{'':24s}{'raw tar':>12s}{'artifact':>12s}{'ratio (raw/artifact speed)':>30s}")
    print(f"{'write (samples/s)':24s}{args.samples / t_raw_w:12.0f}{args.samples / t_art_w:12.0f}{t_raw_w / t_art_w:30.2f}")
    print(f"{'read+decode (samples/s)':24s}{args.samples / t_raw_r:12.0f}{args.samples / t_art_r:12.0f}{t_raw_r / t_art_r:30.2f}")
    print(f"{'read+verify (samples/s)':24s}{'':12s}{args.samples / t_art_v:12.0f}{t_raw_r / t_art_v:30.2f}")
    print(f"open (marker/manifest/shard cross-check): {1000 * t_open:.1f} ms; "
          f"member verification costs {100 * (t_art_v / t_art_r - 1):.1f}% of the unverified read")
    print(f"peak traced memory reading 4 shards: {peak4:.2f} MiB, 32 shards: {peak32:.2f} MiB, ratio {peak32 / peak4:.3f}")


if __name__ == "__main__":
    main()
