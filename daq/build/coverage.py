"""Coverage: which stretches of time a run's streams lost, and their union in HPGe time.

Every loss on a stream's path is an explicit *gap* of that stream, [start_ns, end_ns) on the
DAQ clock with its reason (daq.core.records.Loss), bounded by the last good and the next good
watermark: nothing inside is known to be complete. An HPGe gap is dead time; a veto gap is
blind time, and it blinds every HPGe time whose veto window reaches into it
(daq.build.windows.Window.reached_from). The union of both, ``Uncovered``, is removed from the
exposure, and an HPGe event inside it fills only the UNCOVERED spectrum: a loss lowers the
exposure and never biases a rate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from daq.core.records import Loss


@dataclass(frozen=True, slots=True)
class Gap:
    """A stretch [start_ns, end_ns) of one stream's time that it did not cover, and why."""

    stream: str
    reason: Loss
    start_ns: int
    end_ns: int

    @property
    def length_ns(self) -> int:
        """Its duration (ns)."""
        return self.end_ns - self.start_ns


def merged(starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The union of intervals [starts, ends) (ns) as sorted, disjoint, non-touching ones."""
    keep = ends > starts
    starts, ends = starts[keep], ends[keep]
    if not len(starts):
        return starts, ends
    order = np.argsort(starts, kind="stable")
    starts, reach = starts[order], np.maximum.accumulate(ends[order])
    first = np.r_[True, starts[1:] > reach[:-1]]
    last = np.r_[first[1:], True]
    return starts[first], reach[last]


class Uncovered:
    """A growing union of intervals (ns) of HPGe time: dead time and blinded time."""

    def __init__(self) -> None:
        self._starts = np.zeros(0, np.int64)
        self._ends = np.zeros(0, np.int64)
        self._new: list[tuple[int, int]] = []

    def add(self, start_ns: int, end_ns: int) -> None:
        """Add [start_ns, end_ns) (nothing if empty)."""
        if end_ns > start_ns:
            self._new.append((start_ns, end_ns))

    def _union(self) -> tuple[np.ndarray, np.ndarray]:
        if self._new:
            new = np.array(self._new, dtype=np.int64)
            self._new = []
            self._starts, self._ends = merged(
                np.r_[self._starts, new[:, 0]], np.r_[self._ends, new[:, 1]]
            )
        return self._starts, self._ends

    def measure_ns(self, lo_ns: int, hi_ns: int) -> int:
        """How much of [lo_ns, hi_ns) is uncovered (ns)."""
        starts, ends = self._union()
        overlap = np.minimum(ends, hi_ns) - np.maximum(starts, lo_ns)
        return int(overlap[overlap > 0].sum())

    def contains(self, t_ns: np.ndarray) -> np.ndarray:
        """Is each time (ns, sorted or not) uncovered?"""
        starts, ends = self._union()
        i = np.searchsorted(starts, t_ns, side="right") - 1
        inside = np.zeros(len(t_ns), dtype=bool)
        ok = i >= 0
        inside[ok] = t_ns[ok] < ends[i[ok]]
        return inside

    def forget_before(self, t_ns: int) -> None:
        """Drop the intervals that end at or before t_ns (no later query reaches them)."""
        starts, ends = self._union()
        keep = ends > t_ns
        self._starts, self._ends = starts[keep], ends[keep]
