"""Training data: random access into sharded artifacts, augmented per draw, batched by a DataLoader.

Repeat-factor sampling and exact resume both need "the image at draw n", so samples are read by
offset: each shard's tar headers are scanned once (stdlib tarfile, no data read) and a draw is one
seek + read of its image and label members. Every draw carries its own augmentation seed, so the
batches are the same whatever the number of DataLoader workers and wherever a run was resumed.
"""

from __future__ import annotations

import hashlib
import logging
import tarfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from artifacts import ArtifactError, Folder, decode_member, image_member_name, open_artifact
from clouds.config import TrainConfig
from clouds.labels import IGNORE, check_train_ids
from stages.train.augment import generated_views, source_transform, to_tv
from stages.train.distributed import shard_batch, world
from stages.train.sampler import RepeatFactorSampler, SampleRef

log = logging.getLogger(__name__)

LABEL_MEMBER = "seg.png"


@dataclass(frozen=True)
class MemberSpan:
    member: str
    shard: str
    offset: int
    size: int


class LabeledArtifact:
    """(image, train-id label) pairs of one committed artifact, by index, read straight from its shards.

    Only the image and `seg.png` members are ever read: a synthetic artifact's `true.seg.png` (the
    renderer's ground truth, for diagnostics) never reaches training.
    """

    def __init__(self, url: str, label_member: str = LABEL_MEMBER, *, verify: bool = True):
        """`verify` checks each read member's sha256 against the manifest (artifacts.verify_reads)."""
        art = open_artifact(url, verify=verify)
        self.url = art.url
        self.label_member = label_member
        self.verify = verify
        rows = art.manifest.select(["key", "shard", "members", "member_bytes", "member_sha256"]).to_pylist()
        # Only the two members training reads, as raw digests: a few dozen bytes per sample.
        self.digests: list[dict[str, bytes]] = []
        if not rows:
            raise ArtifactError(f"{self.url} holds no samples to train on")
        self.keys: list[str] = []
        wanted: dict[str, dict[str, tuple[str, int]]] = {}
        for row in rows:
            key = row["key"]
            image = image_member_name(row["members"])
            if image is None:
                raise ArtifactError(f"{self.url}, sample {key!r}: no image member (png/jpg); members {row['members']}")
            if label_member not in row["members"]:
                raise ArtifactError(
                    f"{self.url}, sample {key!r}: no {label_member!r} label to train on; members {row['members']}"
                )
            sizes = dict(row["member_bytes"])
            wanted[key] = {"image": (image, sizes[image]), "label": (label_member, sizes[label_member])}
            hashes = dict(row["member_sha256"])
            self.digests.append({"image": bytes.fromhex(hashes[image]), "label": bytes.fromhex(hashes[label_member])})
            self.keys.append(key)
        self.spans = self._index(art.folder, art.shards, wanted)
        self.fs = art.folder.fs
        self._paths = {shard: art.folder.join(shard) for shard in art.shards}

    def _index(
        self, folder: Folder, shards: list[str], wanted: dict[str, dict[str, tuple[str, int]]]
    ) -> list[dict[str, MemberSpan]]:
        found: dict[tuple[str, str], MemberSpan] = {}
        for shard in shards:
            where = folder.url_of(shard)
            try:
                with folder.fs.open(folder.join(shard), "rb") as f, tarfile.open(fileobj=f, mode="r:") as tar:
                    for info in tar:
                        if info.isfile() and "." in info.name:
                            key, member = info.name.split(".", 1)
                            found[(key, member)] = MemberSpan(member, shard, info.offset_data, info.size)
            except (tarfile.TarError, OSError) as err:
                raise ArtifactError(f"shard {where} cannot be indexed: {err}") from err
        spans = []
        for key in self.keys:
            entry = {}
            for role, (member, size) in wanted[key].items():
                span = found.get((key, member))
                if span is None or span.size != size:
                    raise ArtifactError(
                        f"{self.url}, sample {key!r}: member {member!r} is missing from its shard or differs in size "
                        "from the manifest"
                    )
                entry[role] = span
            spans.append(entry)
        return spans

    def __len__(self) -> int:
        return len(self.keys)

    def _read(self, span: MemberSpan) -> bytes:
        with self.fs.open(self._paths[span.shard], "rb") as f:
            f.seek(span.offset)
            data = f.read(span.size)
        if len(data) != span.size:
            raise ArtifactError(f"{self.url}/{span.shard} is truncated: short read at byte {span.offset}")
        return data

    def _read_checked(self, index: int, role: str) -> bytes:
        """A member's bytes, checked against the manifest: a label swapped between samples still decodes."""
        span = self.spans[index][role]
        data = self._read(span)
        if self.verify and hashlib.sha256(data).digest() != self.digests[index][role]:
            raise ArtifactError(
                f"{self.url}/{span.shard}, sample {self.keys[index]!r}: member {span.member!r} fails its sha256 "
                "check (corrupt data)"
            )
        return data

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        key, spans = self.keys[index], self.spans[index]
        where = f"{self.url}, sample {key!r}"
        try:
            image = decode_member(spans["image"].member, self._read_checked(index, "image"))
            label = decode_member(self.label_member, self._read_checked(index, "label"))
        except ArtifactError:
            raise
        except Exception as err:  # PIL raises several types for undecodable bytes
            raise ArtifactError(f"{where}: cannot decode: {err}") from err
        if image.ndim == 2:
            image = np.repeat(image[:, :, None], 3, axis=2)
        if label.ndim != 2:
            raise ArtifactError(f"{where}: label {self.label_member!r} must be single-channel, got shape {label.shape}")
        check_train_ids(label, where)
        return image, label


class TrainDataset(Dataset):
    """Augmented draws: source artifacts get the full recipe, generated ones the flip + jitter views."""

    def __init__(self, artifacts: Sequence[LabeledArtifact], generated: Sequence[bool], cfg: TrainConfig):
        if len(artifacts) != len(generated):
            raise ValueError("need one 'generated' flag per artifact")
        self.artifacts, self.generated = list(artifacts), list(generated)
        self.color_jitter = cfg.color_jitter
        self.source_tf = source_transform(cfg.crop_size, cfg.base_size, cfg.scale_range, cfg.color_jitter)

    def __len__(self) -> int:
        return sum(len(a) for a in self.artifacts)

    def __getitem__(self, ref: SampleRef) -> tuple[torch.Tensor, torch.Tensor]:
        art = self.artifacts[ref.dataset]
        image, label = art.load(ref.index)
        img, mask = to_tv(image, label, f"{art.url}, sample {art.keys[ref.index]!r}")
        # A private RNG stream per draw: same result in any worker, on any rerun, without touching the
        # trainer's global RNG (which the model's point sampling uses).
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(ref.seed)
            if self.generated[ref.dataset]:
                _, img, mask = generated_views(img, mask, self.color_jitter)
            else:
                img, mask = self.source_tf(img, mask)
        return img.as_subclass(torch.Tensor), mask.as_subclass(torch.Tensor)


def collate(batch: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack, padding to the largest size in the batch (image 0, label ignore): float images, long labels."""
    h = max(img.shape[-2] for img, _ in batch)
    w = max(img.shape[-1] for img, _ in batch)
    images = torch.zeros(len(batch), 3, h, w, dtype=torch.float32)
    labels = torch.full((len(batch), h, w), IGNORE, dtype=torch.long)
    for i, (img, lab) in enumerate(batch):
        images[i, :, : img.shape[-2], : img.shape[-1]] = img
        labels[i, : lab.shape[-2], : lab.shape[-1]] = lab
    return images, labels


class _Batches:
    """An endless batch_sampler starting at a sampler position (DataLoader needs an iterable object).

    Under data-parallel training each rank keeps its slice of every global batch (distributed.shard_batch).
    """

    def __init__(self, sampler: RepeatFactorSampler, position: int, batch_size: int):
        self.sampler, self.position, self.batch_size = sampler, position, batch_size
        self.rank, self.world_size = world()

    def __iter__(self) -> Iterator[list[SampleRef]]:
        for batch in self.sampler.batches_from(self.position, self.batch_size):
            yield shard_batch(batch, self.rank, self.world_size)


class TrainData:
    """The source artifact plus any generated ones, mixed by repeat factor."""

    def __init__(
        self, cfg: TrainConfig, source_url: str, synthetic_urls: Sequence[str], seed: int, *, verify: bool = True
    ):
        self.cfg = cfg
        self.artifacts = [LabeledArtifact(u, verify=verify) for u in [source_url, *synthetic_urls]]
        generated = [False] + [True] * len(synthetic_urls)
        self.dataset = TrainDataset(self.artifacts, generated, cfg)
        sizes = [len(a) for a in self.artifacts]
        self.sampler = RepeatFactorSampler(sizes, [1.0 if not g else cfg.repeat_factor for g in generated], seed)
        if synthetic_urls:
            log.info("mixing %d source and %d generated images; expected generated share %.1f%%",
                     sizes[0], sum(sizes[1:]), 100 * (1 - self.sampler.expected_share(0)))

    @property
    def sizes(self) -> list[int]:
        return self.sampler.sizes

    def batches(self, position: int, device: torch.device | str = "cpu") -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(images [B,3,H,W] float 0..255, labels [B,H,W] long) from a sampler position on, forever."""
        workers = self.cfg.num_workers
        loader = DataLoader(
            self.dataset,
            batch_sampler=_Batches(self.sampler, position, self.cfg.batch_size),
            collate_fn=collate,
            num_workers=workers,
            pin_memory=torch.device(device).type == "cuda",
            persistent_workers=False,
            prefetch_factor=2 if workers else None,
            # Its own generator: creating a loader must not draw from the global RNG the model uses.
            generator=torch.Generator().manual_seed(0),
        )
        return iter(loader)
