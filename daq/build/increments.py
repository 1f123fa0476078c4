"""What the builder hands to storage: histogram, exposure and bookkeeping increments.

The event builder (daq.build.eventbuilder) produces one ``BuildUpdate`` each time its safe horizon
advances; the spectrum filler (daq.store.filler) sums updates and commits them to SQL in one
transaction. Every quantity is an integer count or integer nanoseconds, so updates add up
exactly and a replay reproduces a live run bit for bit.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, fields

import numpy as np

from daq.build.coverage import Gap
from daq.core.records import CATEGORY_NAMES, EVENT_DTYPE, Category

REACTOR_STATES = ("off", "on")
"""Index 0 = reactor OFF, 1 = reactor ON (first axis of ``BuildUpdate.hist``)."""


class _Counters:
    """Integer counters that add up field by field (the increments below)."""

    __slots__ = ()

    def add(self, other: _Counters) -> None:
        """Accumulate another increment of the same kind in place."""
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


@dataclass(slots=True)
class ExposureDelta(_Counters):
    """Exposure increment of one reactor state (ns and counts).

    ``elapsed_ns``: HPGe time from its start to its stop; ``uncovered_ns``: the part of it in
    HPGe dead time or veto blind time (daq.build.coverage); ``dead_ns``: the front-end's own
    dead time reported in ``dead_span_ns`` of covered HPGe time (its frames' dead time).
    Counts of events and random triggers are of covered time only; events in uncovered time
    are ``events_uncovered`` (random triggers included).
    """

    elapsed_ns: int = 0
    uncovered_ns: int = 0
    dead_ns: int = 0
    dead_span_ns: int = 0
    rt_events: int = 0
    rt_ac: int = 0
    rt_crv: int = 0
    rt_any: int = 0
    events_all: int = 0
    events_ac: int = 0
    events_crv: int = 0
    events_candidate: int = 0
    events_uncovered: int = 0

    @property
    def covered_ns(self) -> int:
        """Elapsed time that every stream covered (ns)."""
        return self.elapsed_ns - self.uncovered_ns

    @property
    def live_ns(self) -> int:
        """Live time (ns): covered time times the front-end's live fraction, 1 - dead_ns /
        dead_span_ns. The fraction is measured where the HPGe stream was covered, so dead
        time inside uncovered time is not subtracted twice. Not additive: computed from
        totals."""
        covered = self.covered_ns
        if self.dead_span_ns <= 0:
            return covered
        return covered - covered * min(self.dead_ns, self.dead_span_ns) // self.dead_span_ns


@dataclass(slots=True)
class StreamDelta(_Counters):
    """Bookkeeping increment of one stream: what arrived and what is known lost."""

    pulses: int = 0
    dropped: int = 0
    lost_frames: int = 0
    missing_batches: int = 0
    rejected_messages: int = 0
    dead_ns: int = 0
    uncovered_ns: int = 0

    @property
    def lost(self) -> int:
        """Pulses and frames known lost (a lost frame's pulse count is unknown: counted once)."""
        return self.dropped + self.lost_frames + self.missing_batches


_EVENT_FIELDS = {
    Category.ALL: "events_all",
    Category.AC: "events_ac",
    Category.CRV: "events_crv",
    Category.CANDIDATE: "events_candidate",
    Category.RT: "rt_events",
    Category.UNCOVERED: "events_uncovered",
}


def event_counts(exposures: Iterable) -> dict[str, int]:
    """Events per category, keyed by the category names of the spectra (all, ac, crv,
    candidate, rt), summed over exposure increments (ExposureDelta, or the SQL rows)."""
    exposures = list(exposures)
    return {
        CATEGORY_NAMES[c]: sum(getattr(e, name) for e in exposures)
        for c, name in _EVENT_FIELDS.items()
    }


def rt_tag_counts(exposures: Iterable) -> dict[str, int]:
    """Random triggers tagged by the AC veto, the CRV, and either ("any")."""
    exposures = list(exposures)
    return {k: sum(getattr(e, f"rt_{k}") for e in exposures) for k in ("ac", "crv", "any")}


def dominant_state(elapsed_ns: dict[str, int]) -> str:
    """A run's reactor state: the one that holds most of its elapsed time ("off" on a tie)."""
    return "on" if elapsed_ns.get("on", 0) > elapsed_ns.get("off", 0) else "off"


@dataclass(slots=True)
class ReactorChange:
    """The reactor state changed at ``t_ns`` on the DAQ clock."""

    t_ns: int
    on: bool
    power_MW: float


def empty_hist(n_bins: int) -> np.ndarray:
    """Zeroed histogram increments, shape (reactor state, category, energy bin)."""
    return np.zeros((len(REACTOR_STATES), len(Category), n_bins), dtype=np.int64)


@dataclass
class BuildUpdate:
    """Everything the builder learned since the previous update."""

    hist: np.ndarray
    exposure: dict[str, ExposureDelta] = field(
        default_factory=lambda: {s: ExposureDelta() for s in REACTOR_STATES}
    )
    streams: dict[str, StreamDelta] = field(default_factory=dict)
    reactor_changes: list[ReactorChange] = field(default_factory=list)
    gaps: list[Gap] = field(default_factory=list)
    events: np.ndarray = field(default_factory=lambda: np.zeros(0, EVENT_DTYPE))

    @classmethod
    def empty(cls, n_bins: int) -> BuildUpdate:
        """An update that changes nothing."""
        return cls(hist=empty_hist(n_bins))

    def merge(self, other: BuildUpdate) -> None:
        """Accumulate a later update into this one (events are not kept: they go to disk)."""
        self.hist += other.hist
        for state, delta in other.exposure.items():
            self.exposure[state].add(delta)
        for name, delta in other.streams.items():
            self.streams.setdefault(name, StreamDelta()).add(delta)
        self.reactor_changes.extend(other.reactor_changes)
        self.gaps.extend(other.gaps)

    @property
    def is_empty(self) -> bool:
        """True when committing it would change nothing."""
        return (
            not self.hist.any()
            and all(d == ExposureDelta() for d in self.exposure.values())
            and all(d == StreamDelta() for d in self.streams.values())
            and not self.reactor_changes
            and not self.gaps
        )
