"""Live pulse rates per stream, as the shifter's status line shows them."""

from __future__ import annotations

from collections import deque

from daq.core.units import INF_NS

RATE_WINDOW_NS = 10 * 10**9
"""Rates are a stream's pulses per second of its own DAQ time over the last this many ns it
has completed: a sub-Hz stream shows its rate (not 0 or 1 Hz), a builder catching up a
backlog or one stream running ahead of another does not distort it, and a simulated clock
running F times faster still shows the physical rates."""


class RateMeter:
    """Pulse rates (Hz of DAQ time) per stream from successive (complete time, count) totals."""

    def __init__(self, window_ns: int = RATE_WINDOW_NS) -> None:
        self.window_ns = window_ns
        self._seen: dict[str, deque[tuple[int, int]]] = {}

    def update(self, complete_ns: dict[str, int], pulses: dict[str, int]) -> dict[str, float]:
        """The rates now, given each stream's complete time (ns) and pulse count so far."""
        return {
            name: self._rate(
                self._seen.setdefault(name, deque()), complete_ns.get(name, -INF_NS), n
            )
            for name, n in pulses.items()
        }

    def clear(self) -> None:
        """Forget the history (a new run starts its clocks afresh)."""
        self._seen.clear()

    def _rate(self, seen: deque[tuple[int, int]], t_ns: int, n: int) -> float:
        if t_ns <= -INF_NS:  # nothing complete yet
            return 0.0
        while len(seen) > 1 and seen[1][0] <= t_ns - self.window_ns:
            seen.popleft()
        then_ns, then_n = seen[0] if seen else (t_ns, n)
        seen.append((t_ns, n))
        return (n - then_n) / ((t_ns - then_ns) / 1e9) if t_ns > then_ns else 0.0
