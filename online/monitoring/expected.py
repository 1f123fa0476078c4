"""Expected rates of the counters under the rate alarms, and where each comes from.

A counter (pulses of a data stream, candidate events) counts over the DAQ time it covered:
a stream over its complete time less its uncovered (dead or blind) time, the candidates over
the HPGe elapsed time less the exposure's uncovered time. Its expected rate (Hz of that time)
is, in this order (online.monitoring.alarms applies it):

1. ``alarms.expected_hz.<counter>`` when it is not 0 (exact);
2. the newest ``alarms.reference_runs`` runs marked good before the current one: their
   counts over their covered seconds in SQL (``stream_stats`` pulses over the runs' elapsed
   time less the stream's uncovered time; ``exposures`` candidates over elapsed less
   uncovered time), see ``from_good_runs``;
3. the current run itself, over a reference period before the tested window.

A measured rate (2, 3) is trusted only with at least ``MIN_REFERENCE_COUNTS`` counts over at
least ``MIN_REFERENCE_WINDOWS`` rate windows, and is used at its 1-sigma bounds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sqlalchemy import BigInteger, cast, func, select
from sqlalchemy.orm import Session

from daq.core.config import Alarm as AlarmConfig
from daq.core.records import DATA_STREAM_NAMES
from daq.store.models import Exposure, Run, StreamStat

CANDIDATE = "candidate"
RATE_COUNTERS = (*DATA_STREAM_NAMES, CANDIDATE)
"""Cumulative counters under the rate test: pulses per stream, candidate events."""
MIN_REFERENCE_COUNTS = 25
"""Counts a measured rate needs before it is trusted (relative error <= 20 %)."""
MIN_REFERENCE_WINDOWS = 10
"""A measured rate spans at least this many rate windows, so the error of the expected
count stays small against the Poisson spread of the window's count (variance <= 10 %)."""


@dataclass(frozen=True)
class ExpectedRate:
    """An expected rate (Hz of DAQ time) as 1-sigma bounds (equal when exact), and its source."""

    low_hz: float
    high_hz: float
    source: str

    @classmethod
    def exact(cls, rate_hz: float, source: str) -> ExpectedRate:
        """A rate known without error (from the configuration)."""
        return cls(rate_hz, rate_hz, source)

    @classmethod
    def measured(
        cls, counts: int, seconds: float, window_s: float, source: str
    ) -> ExpectedRate | None:
        """counts / seconds with its 1-sigma bounds, None if too few counts or too short."""
        if counts < MIN_REFERENCE_COUNTS or seconds < MIN_REFERENCE_WINDOWS * window_s:
            return None
        spread = math.sqrt(counts)
        return cls((counts - spread) / seconds, (counts + spread) / seconds, source)

    @property
    def rate_hz(self) -> float:
        """The central value (Hz)."""
        return (self.low_hz + self.high_hz) / 2


def configured(config: AlarmConfig) -> dict[str, ExpectedRate]:
    """The expected rates the configuration gives (counters whose key is not 0)."""
    given = config.expected_hz.model_dump()
    return {
        name: ExpectedRate.exact(given[name], "configured")
        for name in RATE_COUNTERS
        if given[name] > 0
    }


def _total(column):
    return cast(func.coalesce(func.sum(column), 0), BigInteger)


def from_good_runs(
    session: Session, before_run: int | None, config: AlarmConfig
) -> dict[str, ExpectedRate]:
    """Expected rates measured in the newest ``config.reference_runs`` good runs numbered
    below ``before_run`` (all runs when None), per counter that has enough of them."""
    if config.reference_runs == 0:
        return {}
    query = select(Run.id, Run.number).where(Run.quality == "good", Run.state == "ended")
    if before_run is not None:
        query = query.where(Run.number < before_run)
    runs = session.execute(query.order_by(Run.number.desc()).limit(config.reference_runs)).all()
    if not runs:
        return {}
    ids = [r.id for r in runs]
    exposure = {
        row.run_id: row
        for row in session.execute(
            select(
                Exposure.run_id,
                _total(Exposure.elapsed_ns).label("elapsed_ns"),
                _total(Exposure.uncovered_ns).label("uncovered_ns"),
                _total(Exposure.events_candidate).label("candidates"),
            )
            .where(Exposure.run_id.in_(ids), Exposure.tag == "")
            .group_by(Exposure.run_id)
        )
    }
    counts = dict.fromkeys(RATE_COUNTERS, 0)
    covered_ns = dict.fromkeys(RATE_COUNTERS, 0)
    for row in exposure.values():
        counts[CANDIDATE] += row.candidates
        covered_ns[CANDIDATE] += row.elapsed_ns - row.uncovered_ns
    stats = session.execute(
        select(
            StreamStat.run_id, StreamStat.stream, StreamStat.pulses, StreamStat.uncovered_ns
        ).where(StreamStat.run_id.in_(ids), StreamStat.tag == "")
    )
    for row in stats:
        if row.stream in counts and row.run_id in exposure:
            counts[row.stream] += row.pulses
            covered_ns[row.stream] += exposure[row.run_id].elapsed_ns - row.uncovered_ns
    numbers = ", ".join(str(r.number) for r in sorted(runs, key=lambda r: r.number))
    rates = {
        name: ExpectedRate.measured(
            counts[name], covered_ns[name] / 1e9, config.rate_window_s, f"good runs {numbers}"
        )
        for name in RATE_COUNTERS
    }
    return {name: rate for name, rate in rates.items() if rate is not None}
