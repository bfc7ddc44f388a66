"""Sizes as docker prints them."""

from __future__ import annotations


def human_size(n: int) -> str:
    """docker's sizes (go-units HumanSize): 1000-based, three significant digits."""
    size = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000:
            return f"{size:.3g}{unit}"
        size /= 1000
    return f"{size:.3g}TB"
