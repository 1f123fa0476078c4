"""Alarm conditions of the running experiment and their evaluation.

The monitor process (online.monitoring.monitor) builds one ``Observation`` about once per second
from the run control status, the builder's monitor snapshot, slow control, the disk and its own
database writes, hands it to ``AlarmEvaluator.evaluate`` and gives the active conditions to
online.monitoring.record (raised and cleared ``Alarm`` rows in SQL, kept in memory through a
database outage) and to online.monitoring.notify (critical ones by e-mail and webhook). Shifters
acknowledge alarms through the web API; an acknowledged alarm stays shown until its condition
clears.

Conditions (thresholds from the ``[alarms]`` section of the configuration):

============================  ========  ========================================================
name                          severity  active when
============================  ========  ========================================================
``silent:<stream>``           critical  the stream's complete time (its data or heartbeats)
                                        has not moved for ``silent_stream_s`` (wall s) in a run
``silent:horizon``            critical  the builder's data horizon (every stream's complete
                                        time) has not moved for ``silent_stream_s``
``silent:snapshot``           critical  no monitor snapshot from the builder for
                                        ``silent_stream_s``
``rate_low:<stream>``         critical  the HPGe, AC or CRV stream counts far too few pulses
                                        (rate test below): a dead veto makes the candidates
                                        wrong, a dead HPGe takes no data
``rate_low:candidate``        warning   too few candidate events (rate test below)
``rate_high:<counter>``       warning   too many pulses or candidates (rate test below)
``lost:<stream>``             warning   lost frames or pulses increased within
                                        ``rate_window_s``
``hv_low``                    critical  HPGe high voltage below ``hv_min_V``
``ln2_low``                   warning   LN2 level below ``ln2_low_pct``
``disk_low``                  warning   free space in the data directory below ``disk_low_GB``
``disk_critical``             critical  free space below ``disk_critical_GB`` (the builder
                                        stops the run at this floor)
``process_down:<name>``       critical  a process of the run is not connected to run control
``runcontrol``                critical  run control unreachable or in its error state
``database``                  critical  the monitor cannot write to the database
============================  ========  ========================================================

Rate test. Each counter (pulses per data stream, candidate events) is tested against its
expected rate r (online.monitoring.expected: the configuration, else recent good runs, else the
run itself), on the DAQ time it covered, taken from the same builder snapshot as its count: a
snapshot seen twice, a late one or a simulator behind the wall clock changes nothing. With the
tolerance f = ``rate_tolerance`` (r at its 1-sigma bounds when measured), n counts in the last
T = ``rate_window_s`` of that time (less at the run's start) and a silence of s (time since the
last count, which may be longer than a window):

- p_low = min(P(N <= n | mu = r (1 - f) T), exp(-r (1 - f) s)),
- p_high = P(N >= n | mu = r (1 + f) T).

An alarm is raised when its p < ``rate_p_value`` and cleared only once the counter is clearly
back: p >= ``rate_clear_p_value`` with half the tolerance, f / 2 (hysteresis in probability and
in rate: it does not flap around the threshold). The tolerance keeps a counter with millions
of counts quiet on a real drift of a few percent, while a low-rate counter (the candidates, a
fraction of a count per minute) alarms when its silence becomes significant, not on every quiet
second. With an expected rate from the configuration or from earlier runs the test is armed from
the run's first snapshot; measured in the run itself it needs a reference period of ten windows
first. A process that never connected is reported only after a start-up grace period, while the
system comes up.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from scipy.stats import poisson

from daq.core.config import Alarm as AlarmConfig
from daq.core.records import DATA_STREAM_NAMES
from online.monitoring.expected import RATE_COUNTERS, ExpectedRate, configured

PROGRESS_MEANING = {
    "horizon": "the data horizon (every stream's data or heartbeats)",
    "snapshot": "the builder's monitor snapshot",
    **{s: f"the {s} stream's complete time (its data or heartbeats)" for s in DATA_STREAM_NAMES},
}
"""What each ``Observation.progress`` value shows is alive."""
REFERENCE_SPAN = 60
"""A reference period measured in the run reaches back at most this many rate windows."""
LOW_RATE_CRITICAL = frozenset(DATA_STREAM_NAMES)
"""Counters whose rate_low alarm is critical: without them the physics is wrong."""


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
    counter_s: dict[str, float] = field(default_factory=dict)
    """DAQ seconds each counter has covered (from any origin: only differences count)."""
    progress: dict[str, float] = field(default_factory=dict)
    """Values that keep moving while the system is alive (keys of PROGRESS_MEANING)."""
    lost: dict[str, int] = field(default_factory=dict)
    """Per stream the cumulative frames and pulses known lost in this run."""
    hv_V: float | None = None
    ln2_pct: float | None = None
    disk_free_GB: float | None = None
    database_error: str = ""
    """Why the monitor cannot write to the database ("" while it can)."""


class PoissonRateTest:
    """Rate test of one cumulative counter (see the module docstring), with hysteresis.

    ``update(t, n)`` records the count n at t (s of DAQ time the counter covered); ``check()``
    returns ``("low"|"high", text)`` while an alarm is active, else None. ``expected`` is the
    expected rate, or None to measure it in the run.
    """

    def __init__(self, config: AlarmConfig, expected: ExpectedRate | None = None) -> None:
        self.window_s = config.rate_window_s
        self.p_value = config.rate_p_value
        self.clear_p_value = config.rate_clear_p_value
        self.tolerance = config.rate_tolerance
        self.expected = expected
        self.samples: deque[tuple[float, int]] = deque()
        self.last_change_s: float | None = None
        self.active: str | None = None

    def reset(self, expected: ExpectedRate | None = None) -> None:
        """Forget the history (a new run starts counting from zero) and set the expected rate."""
        self.expected = expected
        self.samples.clear()
        self.last_change_s = None
        self.active = None

    def update(self, time_s: float, count: int) -> None:
        """Record the cumulative count at time_s; a sample that brings no new time is ignored,
        a time or count that went back starts afresh."""
        if self.samples:
            last_s, last_n = self.samples[-1]
            if time_s < last_s or count < last_n:
                self.reset(self.expected)
            elif time_s == last_s:
                return
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

    def _reference(self, until_s: float) -> ExpectedRate | None:
        """The expected rate; measured from the first kept sample to until_s when not given."""
        if self.expected is not None:
            return self.expected
        t0, n0 = self.samples[0]
        t1, n1 = self._count_at(until_s)
        return ExpectedRate.measured(n1 - n0, t1 - t0, self.window_s, "this run")

    def _describe(
        self, seen: int, span_s: float, bound: str, rate: ExpectedRate, tolerance: float, p: float
    ) -> str:
        sign = "-" if bound.startswith(">") else "+"
        return (
            f"{seen} counts in {span_s:.3g} s, expected {bound} at {rate.rate_hz:.4g} Hz"
            f" {sign}{tolerance:.0%} ({rate.source}; Poisson p = {p:.1e})"
        )

    def _low(self, tolerance: float) -> tuple[float, str]:
        """(p, explanation) of the deficit against the rate less the tolerance: over the last
        window, and over the silence."""
        now_s, now_n = self.samples[-1]
        result = (1.0, "")
        window_s, window_n = self._count_at(now_s - self.window_s)
        rate = self._reference(window_s)
        if rate is not None and now_s > window_s:
            mu = rate.low_hz * (1 - tolerance) * (now_s - window_s)
            seen = now_n - window_n
            p = float(poisson.cdf(seen, mu))
            text = self._describe(seen, now_s - window_s, f">= {mu:.1f}", rate, tolerance, p)
            result = (p, text)
        silence = now_s - self.last_change_s
        rate = self._reference(self.last_change_s)
        if rate is not None and silence > 0:
            mu = rate.low_hz * (1 - tolerance) * silence
            p = math.exp(-mu)
            if p < result[0]:
                result = (p, self._describe(0, silence, f">= {mu:.1f}", rate, tolerance, p))
        return result

    def _high(self, tolerance: float) -> tuple[float, str]:
        """(p, explanation) of the excess over the last window against the rate plus the
        tolerance."""
        now_s, now_n = self.samples[-1]
        window_s, window_n = self._count_at(now_s - self.window_s)
        rate = self._reference(window_s)
        if rate is None or now_s <= window_s:
            return 1.0, ""
        mu = rate.high_hz * (1 + tolerance) * (now_s - window_s)
        seen = now_n - window_n
        p = float(poisson.sf(seen - 1, mu))
        return p, self._describe(seen, now_s - window_s, f"<= {mu:.1f}", rate, tolerance, p)

    def check(self) -> tuple[str, str] | None:
        """("low"|"high", explanation) while an alarm is active: raised at p < p_value
        against the expected rate -+ the tolerance, cleared once p >= clear_p_value against
        the rate -+ half the tolerance."""
        if len(self.samples) < 2:
            return None
        tests = {"low": self._low, "high": self._high}
        if self.active is not None:
            if tests[self.active](self.tolerance / 2)[0] < self.clear_p_value:
                return self.active, tests[self.active](self.tolerance)[1]
            self.active = None
        for kind, test in tests.items():
            p, text = test(self.tolerance)
            if p < self.p_value:
                self.active = kind
                return kind, text
        return None


class AlarmEvaluator:
    """Turns successive observations into the set of active alarm conditions.

    ``history(run)`` gives the expected rates measured in earlier runs (online.monitoring.
    expected.from_good_runs) when a run starts; the configuration's rates take precedence.
    """

    def __init__(
        self,
        config: AlarmConfig,
        participants: tuple[str, ...],
        startup_grace_s: float = 30.0,
        history: Callable[[int | None], dict[str, ExpectedRate]] | None = None,
    ) -> None:
        self.config = config
        self.participants = participants
        self.startup_grace_s = startup_grace_s
        self.history = history
        self.started_s: float | None = None
        self.seen_processes: set[str] = set()
        self.rate_tests = {name: PoissonRateTest(config) for name in RATE_COUNTERS}
        self.run: int | None = None
        self.progress_seen: dict[str, tuple[float, float]] = {}
        self.lost_seen: dict[str, tuple[int, float]] = {}

    def _new_run(self, run: int | None) -> None:
        self.run = run
        expected = {}
        if run is not None:
            expected = {**(self.history(run) if self.history else {}), **configured(self.config)}
        for name, test in self.rate_tests.items():
            test.reset(expected.get(name))
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
        active = []
        if obs.database_error:
            active.append(Condition("database", "critical", obs.database_error))
        if obs.state == "unreachable":
            return [*active, Condition("runcontrol", "critical", "run control does not answer")]
        if obs.state == "error":
            return [*active, Condition("runcontrol", "critical", f"run control error: {obs.error}")]
        self.seen_processes.update(obs.processes)
        in_grace = obs.time_s - self.started_s < self.startup_grace_s
        return active + [
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
        free = obs.disk_free_GB
        for name, severity, limit in (
            ("disk_low", "warning", cfg.disk_low_GB),
            ("disk_critical", "critical", cfg.disk_critical_GB),
        ):
            if free is not None and free < limit:
                text = f"free disk space {free:.2f} GB < {limit:g} GB"
                active.append(Condition(name, severity, text))
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
            if name in obs.counters and name in obs.counter_s:
                test.update(obs.counter_s[name], obs.counters[name])
            verdict = test.check()
            if verdict is not None:
                kind, text = verdict
                critical = kind == "low" and name in LOW_RATE_CRITICAL
                severity = "critical" if critical else "warning"
                active.append(Condition(f"rate_{kind}:{name}", severity, f"{name} {kind}: {text}"))
        return active


def condition_table(config: AlarmConfig) -> list[tuple[str, str, str]]:
    """(name, what it means, threshold) of every condition, for the shifter's page."""
    expected = ", ".join(f"{name} {rate.rate_hz:g} Hz" for name, rate in configured(config).items())
    return [
        (
            "silent:<stream> / silent:horizon / silent:snapshot",
            "critical: a stream stopped sending (even heartbeats) / the builder went quiet",
            f"{config.silent_stream_s:g} s",
        ),
        (
            "rate_low:<stream> / rate_low:candidate",
            "critical / warning: HPGe, AC or CRV pulses or candidates far below the expected"
            f" rate ({expected or 'none configured'}; else good runs, else this run), over"
            f" {config.rate_window_s:g} s of DAQ time and over a silence",
            f"p < {config.rate_p_value:g} at -{config.rate_tolerance:.0%}; clears at"
            f" p >= {config.rate_clear_p_value:g} at -{config.rate_tolerance / 2:.0%}",
        ),
        (
            "rate_high:<counter>",
            f"warning: pulses or candidates far above the expected rate over"
            f" {config.rate_window_s:g} s",
            f"p < {config.rate_p_value:g} at +{config.rate_tolerance:.0%}; clears at"
            f" p >= {config.rate_clear_p_value:g} at +{config.rate_tolerance / 2:.0%}",
        ),
        (
            "lost:<stream>",
            "warning: lost frames or pulses increasing",
            f"within {config.rate_window_s:g} s",
        ),
        ("hv_low", "critical: HPGe high voltage low", f"< {config.hv_min_V:g} V"),
        ("ln2_low", "warning: LN2 level low", f"< {config.ln2_low_pct:g} %"),
        (
            "disk_low",
            "warning: free disk space in the data directory low",
            f"< {config.disk_low_GB:g} GB",
        ),
        (
            "disk_critical",
            "critical: free disk space at the floor where the run stops",
            f"< {config.disk_critical_GB:g} GB",
        ),
        ("process_down:<name>", "critical: a DAQ process is not connected", "-"),
        ("runcontrol", "critical: run control unreachable or in error", "-"),
        ("database", "critical: alarms cannot be written (kept until it is back)", "-"),
    ]
