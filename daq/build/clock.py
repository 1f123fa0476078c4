"""The DAQ clock as a live builder knows it: how far ahead a genuine watermark can be.

Every front-end stamps its data with one common clock (integer ns), which runs at a known
rate against the builder's wall clock: 1 on real hardware, ``sim.speed`` on simulated
hardware. A begin-of-run batch carries its device's start time, and it arrives after that
time, so each one that arrives anchors a lower bound of the DAQ clock at its arrival:
``clock(now) >= start_ns + (now - arrival) * rate``. No genuine watermark can be ahead of
the true clock, so one ahead of the best bound by more than ``lead_s`` wall seconds of
clock time is forged or broken (daq.processes.builder refuses it, and records the refusal in
the raw file so a replay, which has no wall clock to compare with, refuses it too).

The first anchor is trusted; a later begin-of-run moves the bound only forward, and only if
it is itself within the bound: a forged one can neither hold genuine data back nor open the
way for a forged future.
"""

from __future__ import annotations


class DaqClock:
    """Lower bound of the DAQ clock (ns) from begin-of-run anchors, times in wall seconds."""

    def __init__(self, rate: float, lead_s: float) -> None:
        self.rate = rate
        self.lead_s = lead_s
        self._offset_ns: float | None = None
        """The bound at wall time now is offset + now * rate * 1e9."""

    def anchor(self, start_ns: int, now_s: float) -> None:
        """A begin-of-run with device start time ``start_ns`` arrived at wall time ``now_s``."""
        if self._offset_ns is not None and self.ahead(start_ns, now_s):
            return
        offset = start_ns - now_s * self.rate * 1e9
        if self._offset_ns is None or offset > self._offset_ns:
            self._offset_ns = offset

    def limit_ns(self, now_s: float) -> float | None:
        """The latest genuine watermark at wall time ``now_s`` (ns); None before an anchor."""
        if self._offset_ns is None:
            return None
        return self._offset_ns + (now_s + self.lead_s) * self.rate * 1e9

    def ahead(self, watermark_ns: int, now_s: float) -> bool:
        """Is a watermark ahead of the clock by more than the allowed lead?"""
        limit = self.limit_ns(now_s)
        return limit is not None and watermark_ns > limit
