"""The progress bar every long loop of gmlib shows (tqdm: widgets in notebooks, text elsewhere)."""

from __future__ import annotations

from typing import Any


def progress_bar(total: int, description: str, *, enabled: bool = True, initial: int = 0, leave: bool = False) -> Any:
    """A tqdm bar; when not ``enabled`` a disabled one, whose methods do nothing (so callers never
    test for it). ``leave`` keeps the finished bar on screen (a whole run's); inner loops' vanish."""
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=description, disable=not enabled, leave=leave)
