"""Data-parallel training across processes launched by torchrun (one per GPU, or CPU processes on gloo).

Every rank holds the whole student, draws the same global batch from the same sampler position and
trains on its slice `[rank::world]`; the gradients are then averaged with one all-reduce, so every
rank takes the same optimizer step and the sampler position, schedule and checkpoints stay those of
a single process. Gradient all-reduce rather than DistributedDataParallel: only the decoder trains
(the CLIP tower is frozen), Mask2Former's point sampling leaves parameters without a gradient on some
steps (DDP would need `find_unused_parameters`), and the EMA teacher and checkpoint code keep working on
the plain module instead of a wrapper. Without an initialised process group everything here is a no-op.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")


def active() -> bool:
    return dist.is_available() and dist.is_initialized()


def world() -> tuple[int, int]:
    """(rank, world size); (0, 1) when no process group is initialised."""
    if not active():
        return 0, 1
    return dist.get_rank(), dist.get_world_size()


def is_main() -> bool:
    """Only rank 0 writes checkpoints and commits artifacts."""
    return world()[0] == 0


def barrier() -> None:
    if active() and dist.get_world_size() > 1:
        dist.barrier()


def gather_objects(obj: T) -> list[T]:
    """Every rank's `obj` in rank order, on every rank; `[obj]` in one process."""
    _, world_size = world()
    if world_size == 1:
        return [obj]
    out: list[T] = [None] * world_size  # type: ignore[list-item]
    dist.all_gather_object(out, obj)
    return out


def shard_batch(items: Sequence[T], rank: int | None = None, world_size: int | None = None) -> list[T]:
    """This rank's part of a global batch: every `world`-th item from `rank` on."""
    if rank is None or world_size is None:
        rank, world_size = world()
    if len(items) % world_size:
        raise ValueError(
            f"train.batch_size={len(items)} must be a multiple of the number of processes ({world_size}) "
            "so that every rank trains on the same number of samples"
        )
    return list(items[rank::world_size])


def average_gradients(params: Iterable[torch.nn.Parameter]) -> None:
    """Replace each gradient by its mean over ranks (one flat all-reduce).

    A parameter that got no gradient on this rank counts as zero, so every rank contributes the same
    tensors in the same order whatever its batch touched.
    """
    _, world_size = world()
    if world_size == 1:
        return
    params = list(params)
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    grads = [p.grad for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= world_size
    offset = 0
    for g in grads:
        n = g.numel()
        g.copy_(flat[offset : offset + n].view_as(g))
        offset += n


def init_from_env() -> tuple[int, int, int]:
    """Join the process group torchrun describes (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_*).

    nccl when CUDA is available (each rank on its LOCAL_RANK GPU), gloo on CPU. Returns (rank, world,
    local rank); a plain `python -m` launch is a world of one and initialises nothing.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if world_size == 1:
        return 0, 1, local_rank
    if "RANK" not in os.environ or "MASTER_ADDR" not in os.environ:
        raise RuntimeError("WORLD_SIZE > 1 but RANK/MASTER_ADDR are unset: launch with torchrun")
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend="nccl" if cuda else "gloo")
    return dist.get_rank(), dist.get_world_size(), local_rank


def shutdown() -> None:
    if active():
        dist.destroy_process_group()
