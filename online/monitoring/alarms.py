"""Alarm conditions of the running experiment, their evaluation, and their record in SQL.

The monitor process (online.monitoring.monitor) builds one ``Observation`` about once per second
from the run control status, the builder's monitor snapshot, slow control and the disk, hands it to
``AlarmEvaluator.evaluate`` and gives the active conditions to ``sync_alarms``, which raises and
clears ``Alarm`` rows and writes automatic logbook entries. Shifters acknowledge alarms through the
web API; an acknowledged alarm stays shown until its condition clears.

Conditions (thresholds from the ``[alarms]`` section of the configuration):

============================  ===============================================================
name                          active when
============================  ===============================================================
``silent:horizon``           the builder's data horizon (the time up to which every stream
                              sent data or heartbeats) has not moved for ``silent_stream_s``
                              while a run is going: a stream went silent
``silent:snapshot``           no monitor snapshot from the builder for ``silent_stream_s``
``rate_low:<counter>``        too few counts: over the last ``rate_window_s``, or over the
                              current silence, the Poisson probability of seeing so few at
                              the stream's reference rate is below ``rate_p_value``
``rate_high:<counter>``       too many counts in the last ``rate_window_s`` (same test)
``lost:<stream>``             lost frames or pulses increased within ``rate_window_s``
``hv_low``                    HPGe high voltage below ``hv_min_V``
``ln2_low``                   LN2 level below ``ln2_low_pct``
``disk_low``                  free space in the data directory below ``disk_low_GB``
``process_down:<name>``       a process of the run is not connected to run control
``runcontrol``                run control unreachable or in its error state
============================  ===============================================================

The rate test is statistical, so a low-rate counter (the vetoed HPGe candidates, a fraction
of a count per minute) alarms when its silence becomes significant, not on every quiet
second: with reference rate r (counts per second, measured earlier in the same run over at
least ten rate windows; its lower 1-sigma bound for deficits, the upper one for excesses) a
silence of s seconds has probability exp(-r s) = poisson.pmf(0, r s). A process that never
connected is reported only after a start-up grace period, while the system comes up.
"""

from __future__ import annotations

import logging
import math
from bisect import bisect_right
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
from scipy.stats import poisson
from sqlalchemy import select
from sqlalchemy.orm import Session

from daq.core.config import Alarm as AlarmConfig
from daq.core.records import DATA_STREAM_NAMES
from daq.store.models import Alarm

log = logging.getLogger(__name__)

RATE_COUNTERS = (*DATA_STREAM_NAMES, "candidate")
"""Cumulative counters under the Poisson rate test: pulses per stream, candidate events."""
PROGRESS_MEANING = {
    "horizon": "the data horizon (every stream's data or heartbeats)",
    "snapshot": "the builder's monitor snapshot",
}
"""What each ``Observation.progress`` value shows is alive."""
MIN_REFERENCE_COUNTS = 25
"""Counts a reference period needs before its rate is trusted (relative error <= 20 %)."""
MIN_REFERENCE_WINDOWS = 10
"""A reference period spans at least this many rate windows, so the error of the expected
count stays small against the Poisson spread of the window's count (variance <= 10 %)."""
REFERENCE_SPAN = 60
"""The reference period reaches back at most this many rate windows."""
ALARM_AUTHOR = "alarms"


@dataclass(frozen=True)
class Condition:
    """An active alarm condition: unique name, severity (warning|critical), message."""

    name: str
    severity: str
    message: str


@dataclass
class Observation:
    """What the monitor sees at one moment; times in seconds on one monotonic clock."""

    time_s: float
    state: str
    """Run control state (idle|running|stopping|error) or "unreachable"."""
    run: int | None = None
    error: str = ""
    processes: list[str] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)
    """Cumulative counts of the current run, keys from RATE_COUNTERS."""
    progress: dict[str, float] = field(default_factory=dict)
    """Values that keep moving while the system is alive (keys of PROGRESS_MEANING)."""
    lost: dict[str, int] = field(default_factory=dict)
    """Per stream the cumulative frames and pulses known lost in this run."""
    hv_V: float | None = None
    ln2_pct: float | None = None
    disk_free_GB: float | None = None


class PoissonRateTest:
    """Poisson test of one cumulative counter against its own earlier rate in the run.

    ``update(t, n)`` records the count n at time t (s); ``check(t)`` compares the counts of
    the last ``window_s`` and of the current silence (time since the count last grew) with
    the rate of the reference period before them, and returns ``("low"|"high", text)`` when
    the probability of what was seen is below ``p_value``, else None.
    """

    def __init__(self, window_s: float, p_value: float) -> None:
        self.window_s = window_s
        self.p_value = p_value
        self.samples: deque[tuple[float, int]] = deque()
        self.last_change_s: float | None = None

    def reset(self) -> None:
        """Forget the history (a new run starts counting from zero)."""
        self.samples.clear()
        self.last_change_s = None

    def update(self, time_s: float, count: int) -> None:
        """Record the cumulative count at time_s; a count that went down starts afresh."""
        if self.samples and count < self.samples[-1][1]:
            self.reset()
        if not self.samples or count > self.samples[-1][1]:
            self.last_change_s = time_s
        self.samples.append((time_s, count))
        horizon = time_s - REFERENCE_SPAN * self.window_s
        while len(self.samples) > 2 and self.samples[1][0] <= horizon:
            self.samples.popleft()

    def _count_at(self, time_s: float) -> tuple[float, int]:
        """The last sample at or before time_s (the first sample if none is)."""
        index = bisect_right(self.samples, (time_s, math.inf)) - 1
        return self.samples[max(index, 0)]

    def _reference_rates(self, until_s: float) -> tuple[float, float] | None:
        """Reference rate minus and plus its 1-sigma error (counts/s), from the first kept
        sample to until_s, if the period is long and full enough."""
        t0, n0 = self.samples[0]
        t1, n1 = self._count_at(until_s)
        counts, span = n1 - n0, t1 - t0
        if span < MIN_REFERENCE_WINDOWS * self.window_s or counts < MIN_REFERENCE_COUNTS:
            return None
        spread = np.sqrt(counts)
        return (counts - spread) / span, (counts + spread) / span

    def check(self, time_s: float) -> tuple[str, str] | None:
        """("low"|"high", explanation) if the recent counts are improbable, else None.

        The reference rate is itself measured, so a deficit is tested against its lower
        1-sigma bound and an excess against its upper one: a short or quiet reference
        period cannot make ordinary fluctuations look significant.
        """
        if len(self.samples) < 2:
            return None
        now_count = self.samples[-1][1]
        window_start = time_s - self.window_s
        rates = self._reference_rates(window_start)
        if rates is not None:
            t_w, n_w = self._count_at(window_start)
            seen, span = now_count - n_w, time_s - t_w
            low, high = rates[0] * span, rates[1] * span
            p_low = poisson.cdf(seen, low)
            if p_low < self.p_value:
                return "low", _explain(seen, span, f">= {low:.1f}", p_low, self.p_value)
            p_high = poisson.sf(seen - 1, high)
            if p_high < self.p_value:
                return "high", _explain(seen, span, f"<= {high:.1f}", p_high, self.p_value)
        if self.last_change_s is None:
            return None
        rates = self._reference_rates(self.last_change_s)
        silence = time_s - self.last_change_s
        if rates is not None and silence > 0:
            low = rates[0] * silence
            p_silent = poisson.pmf(0, low)
            if p_silent < self.p_value:
                return "low", _explain(0, silence, f">= {low:.1f}", p_silent, self.p_value)
        return None


def _explain(seen: int, span_s: float, expected: str, p: float, threshold: float) -> str:
    return (
        f"{seen} counts in {span_s:.0f} s, expected {expected} "
        f"(Poisson p = {p:.1e} < {threshold:.0e})"
    )


class AlarmEvaluator:
    """Turns successive observations into the set of active alarm conditions."""

    def __init__(
        self, config: AlarmConfig, participants: tuple[str, ...], startup_grace_s: float = 30.0
    ) -> None:
        self.config = config
        self.participants = participants
        self.startup_grace_s = startup_grace_s
        self.started_s: float | None = None
        self.seen_processes: set[str] = set()
        self.rate_tests = {
            name: PoissonRateTest(config.rate_window_s, config.rate_p_value)
            for name in RATE_COUNTERS
        }
        self.run: int | None = None
        self.progress_seen: dict[str, tuple[int, float]] = {}
        self.lost_seen: dict[str, tuple[int, float]] = {}

    def _new_run(self, run: int | None) -> None:
        self.run = run
        for test in self.rate_tests.values():
            test.reset()
        self.progress_seen.clear()
        self.lost_seen.clear()

    def evaluate(self, obs: Observation) -> list[Condition]:
        """The conditions active at this observation (sorted by name)."""
        if self.started_s is None:
            self.started_s = obs.time_s
        active = self._system(obs) + self._environment(obs)
        if obs.state == "running":
            if obs.run != self.run:
                self._new_run(obs.run)
            active += self._streams(obs)
        elif self.run is not None:
            self._new_run(None)
        return sorted(active, key=lambda c: c.name)

    def _system(self, obs: Observation) -> list[Condition]:
        if obs.state == "unreachable":
            return [Condition("runcontrol", "critical", "run control does not answer")]
        if obs.state == "error":
            return [Condition("runcontrol", "critical", f"run control error: {obs.error}")]
        self.seen_processes.update(obs.processes)
        in_grace = obs.time_s - self.started_s < self.startup_grace_s
        return [
            Condition("process_down:" + name, "critical", f"process {name} is not connected")
            for name in self.participants
            if name not in obs.processes and (name in self.seen_processes or not in_grace)
        ]

    def _environment(self, obs: Observation) -> list[Condition]:
        cfg, active = self.config, []
        if obs.hv_V is not None and obs.hv_V < cfg.hv_min_V:
            active.append(
                Condition("hv_low", "critical", f"HPGe HV {obs.hv_V:.0f} V < {cfg.hv_min_V:g} V")
            )
        if obs.ln2_pct is not None and obs.ln2_pct < cfg.ln2_low_pct:
            active.append(
                Condition(
                    "ln2_low", "warning", f"LN2 level {obs.ln2_pct:.1f} % < {cfg.ln2_low_pct:g} %"
                )
            )
        if obs.disk_free_GB is not None and obs.disk_free_GB < cfg.disk_low_GB:
            active.append(
                Condition(
                    "disk_low",
                    "warning",
                    f"free disk space {obs.disk_free_GB:.2f} GB < {cfg.disk_low_GB:g} GB",
                )
            )
        return active

    def _streams(self, obs: Observation) -> list[Condition]:
        cfg, active, now = self.config, [], obs.time_s
        for name, value in obs.progress.items():
            last = self.progress_seen.get(name)
            if last is None or value != last[0]:
                self.progress_seen[name] = last = (value, now)
            if now - last[1] >= cfg.silent_stream_s:
                active.append(
                    Condition(
                        "silent:" + name,
                        "critical",
                        f"{PROGRESS_MEANING.get(name, name)} has not moved for "
                        f"{now - last[1]:.0f} s (limit {cfg.silent_stream_s:g} s)",
                    )
                )
        for stream in DATA_STREAM_NAMES:
            if stream not in obs.lost:
                continue
            total = obs.lost[stream]
            last = self.lost_seen.get(stream)
            if last is None:
                self.lost_seen[stream] = last = (total, -float("inf") if total == 0 else now)
            elif total > last[0]:
                self.lost_seen[stream] = last = (total, now)
            if now - last[1] < cfg.rate_window_s:
                active.append(
                    Condition(
                        "lost:" + stream,
                        "warning",
                        f"{stream}: lost frames/pulses rising, {total} in this run",
                    )
                )
        for name, test in self.rate_tests.items():
            if name not in obs.counters:
                continue
            test.update(now, obs.counters[name])
            verdict = test.check(now)
            if verdict is not None:
                kind, text = verdict
                active.append(Condition(f"rate_{kind}:{name}", "warning", f"{name} {kind}: {text}"))
        return active


def condition_table(config: AlarmConfig) -> list[tuple[str, str, str]]:
    """(name, what it means, threshold) of every condition, for the shifter's page."""
    return [
        (
            "silent:horizon / silent:snapshot",
            "a stream stopped sending (even heartbeats) / the builder went quiet",
            f"{config.silent_stream_s:g} s",
        ),
        (
            "rate_low / rate_high:<counter>",
            f"Poisson test over {config.rate_window_s:g} s and over a silence",
            f"p < {config.rate_p_value:g}",
        ),
        ("lost:<stream>", "lost frames or pulses increasing", f"within {config.rate_window_s:g} s"),
        ("hv_low", "HPGe high voltage low", f"< {config.hv_min_V:g} V"),
        ("ln2_low", "LN2 level low", f"< {config.ln2_low_pct:g} %"),
        ("disk_low", "free disk space in the data directory low", f"< {config.disk_low_GB:g} GB"),
        ("process_down:<name>", "a DAQ process is not connected", "-"),
        ("runcontrol", "run control unreachable or in error", "-"),
    ]


def sync_alarms(
    session: Session, active: list[Condition], run_number: int | None = None
) -> tuple[list[Alarm], list[Alarm]]:
    """Raise alarms for new conditions, clear those gone; returns (raised, cleared).

    An open alarm (not cleared) is identified by its condition name; each change gets an
    automatic logbook entry.
    """
    from daq.store.runs import add_logbook

    now = datetime.now(UTC)
    open_alarms = {
        a.name: a for a in session.scalars(select(Alarm).where(Alarm.cleared_utc.is_(None)))
    }
    wanted = {c.name: c for c in active}
    raised, cleared = [], []
    for name, cond in wanted.items():
        if name in open_alarms:
            open_alarms[name].message = cond.message
            continue
        alarm = Alarm(name=name, severity=cond.severity, message=cond.message, raised_utc=now)
        session.add(alarm)
        raised.append(alarm)
        add_logbook(
            session, ALARM_AUTHOR, f"alarm raised: {cond.message}", run_number, automatic=True
        )
    for name, alarm in open_alarms.items():
        if name not in wanted:
            alarm.cleared_utc = now
            cleared.append(alarm)
            add_logbook(
                session, ALARM_AUTHOR, f"alarm cleared: {alarm.message}", run_number, automatic=True
            )
    session.flush()
    for alarm in raised:
        log.warning("alarm %s raised: %s", alarm.name, alarm.message)
    for alarm in cleared:
        log.info("alarm %s cleared", alarm.name)
    return raised, cleared
