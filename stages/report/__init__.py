"""The run report: target mIoU per round, pseudo-label quality, and a gallery, as one HTML page."""

from stages.report.html import RoundResult, write_report

__all__ = ["RoundResult", "write_report"]
