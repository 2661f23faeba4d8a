"""A progress bar on stderr (rate and ETA) with messages printed around it, not through it."""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["Progress"]


class Progress:
    """A tqdm bar on stderr; ``say`` prints to stdout and ``error`` to stderr without tearing
    it. Silent when tqdm is missing, when ``enabled`` is off, or for one item with
    ``quiet_single``.

    Used as ``with Progress(n) as progress:`` or closed with :meth:`close`.
    """

    def __init__(
        self, total: int, initial: int = 0, *, enabled: bool = True, quiet_single: bool = False
    ) -> None:
        self._bar: Any = None
        if not enabled or (quiet_single and total <= 1):
            return
        try:
            from tqdm import tqdm
        except ImportError:  # the bar is a nicety; run without it
            return
        self._bar = tqdm(
            total=total, initial=initial, unit="image", file=sys.stderr, dynamic_ncols=True,
            leave=not quiet_single,
        )

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def update(self, count: int, failed: int = 0) -> None:
        """Count ``count`` more items; show the failures so far."""
        if self._bar is not None:
            if failed:
                self._bar.set_postfix(failed=failed, refresh=False)
            self._bar.update(count)

    def say(self, text: str) -> None:
        """Print a line to stdout."""
        self._print(text, sys.stdout)

    def error(self, text: str) -> None:
        """Print a line to stderr."""
        self._print(text, sys.stderr)

    def _print(self, text: str, stream: Any) -> None:
        if self._bar is not None:
            self._bar.write(text, file=stream)
        else:
            print(text, file=stream, flush=True)

    def close(self) -> None:
        """Close the bar, drawn once more so its final count shows (tqdm redraws at most every
        0.1 s, so a fast run could end on an older count)."""
        if self._bar is not None:
            self._bar.refresh()
            self._bar.close()
            self._bar = None
