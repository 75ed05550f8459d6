"""The run report: target mIoU per round, pseudo-label quality, and a gallery, as one HTML page."""

from stages.report.html import RoundResult, write_report
from stages.report.observations import observations

__all__ = ["RoundResult", "observations", "write_report"]
