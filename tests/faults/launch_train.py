"""torchrun's entry point for fault tests: `stages.train.launch` with CLOUDS_FAULT installed as in
run_stage.py (e.g. `snapshot:1`: rank 0 SIGKILLs itself right after the first progress snapshot, and
torchrun then ends the other ranks, as a preempted node would)."""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from run_stage import install_fault  # noqa: E402

from stages.train.launch import main  # noqa: E402

if __name__ == "__main__":
    if os.environ.get("CLOUDS_FAULT"):
        install_fault(os.environ["CLOUDS_FAULT"])
    main()
