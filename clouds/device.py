"""Choosing the torch device from the config's `run.device`."""

from __future__ import annotations

import torch


def resolve_device(spec: str = "auto") -> torch.device:
    """'auto' takes the GPU when there is one; an explicit CUDA device without CUDA is a clear error."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(spec)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"run.device is {spec!r} but no CUDA device is available; use 'auto' or 'cpu'")
    return device
