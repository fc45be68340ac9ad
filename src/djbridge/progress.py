"""Progress bars for long work, one decision in one place.

Both tools show a tqdm bar while they list, delete or copy. Whether a bar is
drawn is decided here: never when the caller turned it off, and by default only
when standard error is a terminal, so logs and CI output stay clean. The bar
counts items; :meth:`Progress.add_bytes` adds a running byte total and rate to
its postfix, which is what a copy wants to show. Copy threads may call it as each
chunk passes: the count is locked, and the bar is redrawn at most twice a second,
so a multi-GB object shows its bytes moving long before its row commits.

    from djbridge.progress import Progress
    with Progress("deleting", total=len(keys), unit="obj", enabled=None) as bar:
        for batch in batches:
            ...
            bar.update(len(batch))
"""

from __future__ import annotations

import sys
import threading
import time
from types import TracebackType

from tqdm import tqdm


def want_bar(enabled: bool | None) -> bool:
    """Return whether to draw: ``True``/``False`` as given, ``None`` when stderr is a tty."""
    if enabled is not None:
        return enabled
    return sys.stderr.isatty()


def human_bytes(count: float) -> str:
    """Format a byte count as ``12.3 MB``."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(count) < 1000 or unit == "TB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    return f"{count:.1f} TB"


class Progress:
    """A tqdm bar that may be disabled, with an optional byte counter."""

    def __init__(
        self, desc: str, *, total: int | None = None, unit: str = "it", enabled: bool | None = None
    ) -> None:
        self.bar = tqdm(
            desc=desc, total=total, unit=unit, disable=not want_bar(enabled), file=sys.stderr
        )
        self.bytes = 0
        self._started = self._drawn = time.monotonic()
        self._lock = threading.Lock()

    def update(self, count: int = 1) -> None:
        """Advance by ``count`` items."""
        self.bar.update(count)

    def add_bytes(self, count: int) -> None:
        """Add ``count`` bytes to the running total shown beside the bar (thread-safe)."""
        with self._lock:
            self.bytes += count
            now = time.monotonic()
            redraw, rate = now - self._drawn >= 0.5, self.bytes / max(now - self._started, 1e-3)
            if redraw:
                self._drawn = now
            text = f"{human_bytes(self.bytes)}, {human_bytes(rate)}/s"
            self.bar.set_postfix_str(text, refresh=redraw)

    def set_total(self, total: int) -> None:
        """Set the total once it is known."""
        self.bar.total = total
        self.bar.refresh()

    def close(self) -> None:
        """Close the bar (safe to call twice)."""
        self.bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
