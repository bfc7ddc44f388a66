"""Sizes and durations as docker prints them (go-units)."""

from __future__ import annotations


def human_size(n: int) -> str:
    """docker's sizes (go-units HumanSize): 1000-based, three significant digits."""
    size = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000:
            return f"{size:.3g}{unit}"
        size /= 1000
    return f"{size:.3g}TB"


def human_duration(seconds: float) -> str:
    """docker's durations (go-units HumanDuration): ``About a minute``, ``2 weeks``."""
    s, minutes, hours = int(seconds), int(seconds // 60), int(seconds / 3600 + 0.5)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(seconds // 3600) // 24 // 365} years"
