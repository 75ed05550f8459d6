"""Kept for callers outside the package (benchmarks/): the run layout is ground now, in `clouds.layout`."""

from clouds.layout import RunLayout, absolute_root

__all__ = ["RunLayout", "absolute_root"]
