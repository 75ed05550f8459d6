"""`run.num_threads`: applied to torch here and inherited by the processes the project starts."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from clouds.config import load_config
from clouds.layout import RunLayout
from clouds.threads import THREAD_VARIABLES, apply_num_threads
from pipelines.context import RunContext


@pytest.fixture
def restore_threads(monkeypatch):
    for name in THREAD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_every_flow_context_applies_run_num_threads(restore_threads):
    torch.set_num_threads(2)
    cfg = load_config("tests/micro.yaml", ["run.num_threads=1"])
    RunContext(cfg, RunLayout("memory://threads", "t"))
    assert torch.get_num_threads() == 1
    assert all(os.environ[name] == "1" for name in THREAD_VARIABLES)
    child = subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"],
                           capture_output=True, text=True, check=True)
    assert child.stdout.strip() == "1"  # a torchrun rank or Ray worker starts with the setting


def test_null_keeps_the_libraries_defaults(restore_threads):
    torch.set_num_threads(2)
    apply_num_threads(None)
    assert torch.get_num_threads() == 2 and not any(name in os.environ for name in THREAD_VARIABLES)


def test_default_is_one_thread_and_nonsense_is_refused():
    assert load_config("configs/tiny.yaml").run.num_threads == 1
    with pytest.raises(ValueError, match="num_threads"):
        load_config("configs/tiny.yaml", ["run.num_threads=0"])
