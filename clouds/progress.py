"""How long something still takes, said the same way by every stage's progress lines."""

from __future__ import annotations


def format_duration(seconds: float) -> str:
    """`1h02m03s`, `4m05s`, or `unknown` (no rate measured yet)."""
    if seconds != seconds or seconds == float("inf"):
        return "unknown"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def eta(done: int, total: int, elapsed_s: float) -> str:
    """Time left at the rate so far."""
    return format_duration((total - done) * elapsed_s / done) if done else "unknown"
