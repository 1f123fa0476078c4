"""The order rules of one stream's batches, in one place: what moves a stream forward.

A stream is complete below its watermark. Applied in sequence order, a batch moves its
stream forward only when its pulses are time-ordered (checked as the batch arrives), its
watermark is not behind the stream's, and its first pulse is neither below the time up to
which the stream was already complete nor before the stream's last pulse. The event builder
keeps a ``StreamOrder`` per stream; the replay's planner keeps one per stream too, so that
it joins batches into larger messages only where the builder would have taken them one by
one (daq.replay.plan): a replay's result does not depend on how it was chunked.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from daq.core.units import INF_NS
from daq.kernels.arrays import chunk_in_order, is_sorted


def pulses_in_order(t: np.ndarray) -> bool:
    """Are a batch's pulse times (ns) non-decreasing? (the check on arrival)"""
    return len(t) < 2 or bool(is_sorted(t))


@dataclass(slots=True)
class StreamOrder:
    """How far one stream is complete (its watermark, ns) and its last pulse (ns)."""

    complete_ns: int = -INF_NS
    last_t_ns: int = -INF_NS

    def refusal(self, t: np.ndarray, watermark_ns: int) -> str:
        """Why a batch with time-ordered pulses ``t`` would not move the stream forward;
        "" when it would."""
        if watermark_ns < self.complete_ns:
            return "watermark behind the stream's"
        if len(t) and t[0] < max(self.complete_ns, self.last_t_ns):
            return "a pulse where the stream was already complete"
        return ""

    def accepts(self, t: np.ndarray, watermark_ns: int) -> bool:
        """The whole rule for one batch: ordered pulses, and not refused."""
        return pulses_in_order(t) and not self.refusal(t, watermark_ns)

    def accepts_chunk(self, t: np.ndarray, counts: np.ndarray, wm: np.ndarray) -> bool:
        """Would every batch of a chunk be accepted, one after the other? ``t``: the chunk's
        pulse times; ``counts``: pulses of each batch; ``wm``: each batch's watermark
        (non-decreasing)."""
        return bool(chunk_in_order(t, counts, wm, self.complete_ns, self.last_t_ns))

    def advance(self, t: np.ndarray, watermark_ns: int) -> None:
        """Follow an accepted batch."""
        self.complete_ns = watermark_ns
        if len(t):
            self.last_t_ns = int(t[-1])
