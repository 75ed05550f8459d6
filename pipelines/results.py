"""Kept for callers outside the package (benchmarks/): the results reader is `stages.report.rounds`."""

from stages.report.rounds import collect_rounds, gallery_samples, miou_rows, round_result

__all__ = ["collect_rounds", "gallery_samples", "miou_rows", "round_result"]
