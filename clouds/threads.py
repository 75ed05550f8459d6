"""CPU threads of every process the project starts (`run.num_threads`).

torch's default (one intra-op thread per core) spin-waits: on a small machine that other jobs share, two
threads per process were measured many times slower than one (benchmarks/bench_threads.py). The setting is
applied to torch in the calling process and exported as OMP/MKL/OpenBLAS variables so that the processes it
starts (torchrun ranks, Ray workers, DataLoader workers, Prefect's flow-run subprocesses) begin with it.
"""

from __future__ import annotations

import os

import cv2
import torch

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS")


def apply_num_threads(num_threads: int | None) -> None:
    """Use `num_threads` CPU threads here and in child processes; None leaves every library's default."""
    if num_threads is None:
        return
    if num_threads < 1:
        raise ValueError(f"run.num_threads must be >= 1 or null, got {num_threads}")
    if torch.get_num_threads() != num_threads:
        torch.set_num_threads(num_threads)
    cv2.setNumThreads(num_threads)
    for name in THREAD_VARIABLES:
        os.environ[name] = str(num_threads)
