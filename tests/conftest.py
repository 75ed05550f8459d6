"""Shared test set-up: no network, no GUI, and a fresh in-memory filesystem per test."""

from __future__ import annotations

import os

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

import fsspec  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _clean_memory_fs():
    """memory:// is process-global in fsspec; give every test an empty one."""
    fs = fsspec.filesystem("memory")
    fs.store.clear()
    fs.pseudo_dirs.clear()
    fs.pseudo_dirs.append("")
    yield
    fs.store.clear()


@pytest.fixture(scope="module")
def harness():
    """A temporary Prefect server on 127.0.0.1 for the flows of one test module."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="module")
def one_intra_op_thread():
    """Tiny models are slower with 2 threads on a shared 2-core box (spin-waiting); restored afterwards."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
