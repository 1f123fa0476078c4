"""Rate-limited logging: a flood of one complaint costs a line per interval, not a line each.

A process that rejects input it cannot trust (undecodable messages, a peer that misbehaves)
must say so without letting that peer fill the disk: ``RateLimitedLog`` writes the first
occurrence of a reason in full at once, then at most one summary line per reason per
interval (``N more <reason> in the last X s``), and ``flush`` writes the summaries still
pending (at the close of a run). Its memory is bounded: at most ``max_reasons`` distinct
reasons are tracked, every further one is pooled under OTHER (one more entry).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

OTHER = "other"
"""The reason that pools every reason beyond ``max_reasons``."""


@dataclass(slots=True)
class _Window:
    """What was suppressed of one reason since its last line (monotonic s, occurrences)."""

    since: float
    suppressed: int = 0


class RateLimitedLog:
    """Log lines of a logger, at most one per reason per ``interval_s`` after the first.

    ``clock`` gives seconds (monotonic; tests pass a fake). Summaries are written when the
    reason occurs again after its interval and by ``flush``: a reason that stops occurring
    keeps its count until then.
    """

    def __init__(
        self,
        logger: logging.Logger,
        interval_s: float,
        *,
        level: int = logging.WARNING,
        max_reasons: int = 16,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be positive, got {interval_s}")
        if max_reasons < 1:
            raise ValueError(f"max_reasons must be at least 1, got {max_reasons}")
        self.logger = logger
        self.interval_s = interval_s
        self.level = level
        self.max_reasons = max_reasons
        self.clock = clock
        self._windows: dict[str, _Window] = {}

    def log(self, reason: str, message: str, *args: object) -> None:
        """One occurrence of ``reason``: ``message % args`` in full if it is the first (or the
        reason was quiet for an interval), else counted for the reason's next summary."""
        now = self.clock()
        if reason not in self._windows and len(self._windows) >= self.max_reasons:
            reason = OTHER
        window = self._windows.get(reason)
        if window is None or (window.suppressed == 0 and now - window.since >= self.interval_s):
            self._windows[reason] = _Window(now)
            self.logger.log(self.level, message, *args)
            return
        window.suppressed += 1
        if now - window.since >= self.interval_s:
            self._summarise(reason, window, now)

    def flush(self) -> None:
        """Write every pending summary and forget the reasons (the next occurrence of each is
        written in full again)."""
        now = self.clock()
        for reason, window in self._windows.items():
            if window.suppressed:
                self._summarise(reason, window, now)
        self._windows.clear()

    @property
    def pending(self) -> dict[str, int]:
        """Occurrences per reason not yet written in any line."""
        return {r: w.suppressed for r, w in self._windows.items() if w.suppressed}

    def _summarise(self, reason: str, window: _Window, now: float) -> None:
        self.logger.log(
            self.level,
            "%d more %s in the last %.1f s",
            window.suppressed,
            reason,
            now - window.since,
        )
        window.since, window.suppressed = now, 0
