"""Ground truth of whole-system runs: take one busy run of ``nudaq up --sim`` as a process,
read what it stored (run summary, SQL, raw files) and what the simulator truly made
(hardware_sim.truth), and compare the two.

The comparison computes its own tags and uncovered time from the truth and the stored gaps,
independently of daq.build (the code under test): an HPGe pulse of the truth is *truly
vetoed* when a veto pulse of the truth (every one the simulator made, whether the DAQ got it
or not) lies in its window, and *uncovered* when it lies in an HPGe gap or its window reaches
into a veto gap (coverage_gaps of the run).
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil
from sqlalchemy import create_engine, text

from daq.core.config import Config
from daq.core.records import (
    FLAG_RT,
    TAG_AC,
    TAG_CRV,
    TAG_RT,
    TAG_UNCOVERED,
    Stream,
)
from daq.formats.rawfile import RawReader
from daq.formats.wire import KIND_BOR
from hardware_sim.generator import Origin
from hardware_sim.truth import FAULTS_FILE, TRUTH_FILE, read_fault_counts, read_truth
from tests.processes import NUDAQ, stop_up

FLAT_CPD = 2.0e4
"""Veto-free continuum (counts per kg keV day) of a busy run: with the default Compton and
cosmic factors about 245 veto-free, 740 AC-coincident and 245 CRV-coincident HPGe events per
second, so a 40-s run holds thousands of each."""
RT_RATE_HZ = 5.0
COMPTON_COSMIC = (Origin.COMPTON, Origin.COSMIC)
"""Origins of the HPGe events that come with a veto partner."""
STARTUP_TIMEOUT_S = 120.0
"""Wall time allowed for the system to come up (s)."""
SYSTEM_UP = "nudaq: system up"
"""What nudaq up prints once every process is up (daq.commands.up)."""
LAG_WARNING = "generation lags the clock"
"""What the simulator logs while it falls behind its clock (hardware_sim.crate)."""
SETTLE_S = 2.0
SETTLE_TIMEOUT_S = 30.0
"""Quiet time of the simulator's lag warnings before a run begins, and the longest wait for
it (wall s)."""


def busy_config() -> Config:
    """The default configuration with the HPGe rates raised for statistics."""
    config = Config()
    config.sim.flat_cpd = FLAT_CPD
    config.frontends.hpge.rt_rate_hz = RT_RATE_HZ
    return config


# -- taking a run -----------------------------------------------------------------------------


@dataclass
class TakenRun:
    """One run on a fresh ``nudaq up --sim``: where it wrote and what it reported."""

    data_dir: Path
    config: Config
    summary: dict
    console: str
    """What nudaq up printed."""

    @property
    def db_url(self) -> str:
        return f"sqlite:///{self.data_dir / 'nudaq.sqlite'}"

    @property
    def pulses_file(self) -> Path:
        return Path(self.summary["raw_file"])

    @property
    def events_file(self) -> Path:
        return self.pulses_file.with_name(self.pulses_file.name.replace(".pulses.", ".events."))

    def remove(self) -> None:
        shutil.rmtree(self.data_dir, ignore_errors=True)


def short_dir() -> Path:
    """A fresh data directory with a short path (ipc socket paths stay under ~100 chars)."""
    return Path(tempfile.mkdtemp(prefix="nq", dir="/tmp"))


def take_run(
    config: Config,
    duration_s: float,
    speed: float,
    while_running: Callable[[subprocess.Popen], None] | None = None,
) -> TakenRun:
    """One run of ``duration_s`` simulated seconds at ``speed`` on a fresh system.

    ``nudaq up --sim --no-run`` comes up first, and the run begins only once the simulator
    keeps up with its clock: start-up loads every core, and a front-end that began with its
    clock far behind would, with a disconnect due after so many seconds of running, drop its
    line at once. ``while_running(process)`` is called right after the run began; the run
    ends ``duration_s / speed`` wall seconds after it began, and its summary is the one
    ``nudaq run stop`` gives. The system's console goes to ``<data dir>/up.out``.
    """
    data_dir = short_dir()
    config_file = data_dir / "config.json"
    config_file.write_text(config.snapshot())
    console_file = data_dir / "up.out"
    args = ["--no-run", "--config", str(config_file), "--speed", f"{speed:g}"]
    with open(console_file, "w") as console:
        up = subprocess.Popen(
            [*NUDAQ, "up", "--sim", *args, "--data-dir", str(data_dir)],
            stdin=subprocess.DEVNULL,
            stdout=console,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until(up, lambda: SYSTEM_UP in console_file.read_text(), "the system to come up")
        wait_for_the_simulator(up, data_dir / "logs" / "sim.log")
        nudaq("run", "start", "--data-dir", str(data_dir))
        end_at = time.monotonic() + duration_s / speed
        if while_running is not None:
            while_running(up)
        time.sleep(max(0.0, end_at - time.monotonic()))
        stopped = json.loads(nudaq("run", "stop", "--json", "--data-dir", str(data_dir)))
    except BaseException:
        stop_up(up)
        print(console_file.read_text()[-4000:])  # what the system said, in the test's output
        shutil.rmtree(data_dir, ignore_errors=True)
        raise
    stop_up(up)
    return TakenRun(data_dir, config, stopped["summary"], console_file.read_text())


def nudaq(*args: str) -> str:
    """Run a ``nudaq`` command and return its standard output (AssertionError if it fails)."""
    out = subprocess.run([*NUDAQ, *args], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, f"nudaq {' '.join(args)}: {out.stderr}"
    return out.stdout


def wait_until(up: subprocess.Popen, done: Callable[[], bool], what: str) -> None:
    """Poll ``done()`` until it is true, for at most STARTUP_TIMEOUT_S while nudaq up runs."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while not done():
        assert up.poll() is None, f"nudaq up ended (status {up.returncode}) before {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def wait_for_the_simulator(up: subprocess.Popen, sim_log: Path) -> None:
    """Wait until the simulator has not said for SETTLE_S that it lags its clock (it says so
    at most once a wall second while it lags by more than one), for at most
    SETTLE_TIMEOUT_S: on a machine too busy for it to catch up the run still begins."""
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    said, quiet_since = -1, time.monotonic()
    while time.monotonic() < deadline:
        assert up.poll() is None, f"nudaq up ended (status {up.returncode})"
        now_said = sim_log.read_text().count(LAG_WARNING) if sim_log.exists() else 0
        if now_said != said:
            said, quiet_since = now_said, time.monotonic()
        elif time.monotonic() - quiet_since >= SETTLE_S:
            return
        time.sleep(0.2)


def service(up: subprocess.Popen, name: str) -> psutil.Process:
    """The process of one service (``builder``, ``readout``, ...) under ``nudaq up``."""
    for child in psutil.Process(up.pid).children(recursive=True):
        cmdline = child.cmdline()
        if "daq.processes" in cmdline and name in cmdline:
            return child
    raise AssertionError(f"no {name} process under nudaq up")


def pause(process: psutil.Process, wall_s: float) -> None:
    """Freeze a process (SIGSTOP) for wall_s seconds, then let it go on (SIGCONT)."""
    process.send_signal(signal.SIGSTOP)
    try:
        time.sleep(wall_s)
    finally:
        process.send_signal(signal.SIGCONT)


# -- what the run stored ----------------------------------------------------------------------


@dataclass
class Stored:
    """A run's stored results (tag ""): its exposure summed over reactor states, its
    coverage gaps and its stream counters."""

    exposure: dict[str, int]
    gaps: list[tuple[str, str, int, int]]
    """(stream, reason, start_ns, end_ns) of every coverage gap."""
    streams: dict[str, dict[str, int]]

    def gaps_of(self, stream: str) -> tuple[np.ndarray, np.ndarray]:
        """Starts and ends (ns) of one stream's gaps."""
        rows = [(s, e) for name, _, s, e in self.gaps if name == stream]
        spans = np.array(rows, dtype=np.int64).reshape(-1, 2)
        return spans[:, 0], spans[:, 1]

    def reasons(self, stream: str) -> set[str]:
        return {reason for name, reason, _, _ in self.gaps if name == stream}

    def gap_ns(self, stream: str) -> int:
        starts, ends = self.gaps_of(stream)
        return int((ends - starts).sum())


EXPOSURE_COLUMNS = (
    "elapsed_ns",
    "uncovered_ns",
    "dead_ns",
    "dead_span_ns",
    "live_ns",
    "events_all",
    "events_ac",
    "events_crv",
    "events_candidate",
    "events_uncovered",
    "rt_events",
)
STREAM_COLUMNS = ("pulses", "dropped", "lost_frames", "missing_batches", "dead_ns", "uncovered_ns")


def read_stored(run: TakenRun) -> Stored:
    """The stored results of a taken run."""
    engine = create_engine(run.db_url)
    number = int(run.summary["run"])
    try:
        with engine.connect() as conn:
            where = f"JOIN runs r ON r.id = t.run_id WHERE r.number = {number} AND t.tag = ''"
            sums = ", ".join(f"sum(t.{c})" for c in EXPOSURE_COLUMNS)
            row = conn.execute(text(f"SELECT {sums} FROM exposures t {where}")).one()
            gaps = conn.execute(
                text(f"SELECT stream, reason, start_ns, end_ns FROM coverage_gaps t {where}")
            ).all()
            columns = ", ".join(f"t.{c}" for c in STREAM_COLUMNS)
            streams = conn.execute(text(f"SELECT t.stream, {columns} FROM stream_stats t {where}"))
            by_stream = {r[0]: dict(zip(STREAM_COLUMNS, r[1:], strict=True)) for r in streams}
    finally:
        engine.dispose()
    exposure = {c: int(v or 0) for c, v in zip(EXPOSURE_COLUMNS, row, strict=True)}
    return Stored(exposure, [tuple(g) for g in gaps], by_stream)


def recorded(pulses_file: Path) -> tuple[dict[Stream, tuple[int, int]], dict[Stream, np.ndarray]]:
    """From a raw pulses file, each data stream's time in the run, [begin-of-run watermark,
    end-of-run watermark) (ns; its last watermark if the end-of-run is missing), and every
    pulse it holds of the stream (PULSE_DTYPE)."""
    first: dict[Stream, int] = {}
    last: dict[Stream, int] = {}
    chunks: dict[Stream, list[np.ndarray]] = {}
    for batch in RawReader(pulses_file).iter_batches():
        stream = Stream(batch.stream)
        if stream == Stream.REACTOR:
            continue
        if batch.kind == KIND_BOR:  # a restarted sender's BOR comes later: the first counts
            first.setdefault(stream, batch.watermark_ns)
        last[stream] = max(last.get(stream, batch.watermark_ns), batch.watermark_ns)
        chunks.setdefault(stream, []).append(batch.pulses)
    spans = {s: (first[s], last[s]) for s in first}
    return spans, {s: np.concatenate(c) for s, c in chunks.items()}


# -- intervals, independent of daq.build.coverage --------------------------------------------


def union(starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint sorted intervals covering the same time as [starts, ends) (ns)."""
    order = np.argsort(starts)
    out: list[list[int]] = []
    for s, e in zip(starts[order].tolist(), ends[order].tolist(), strict=True):
        if e <= s:
            continue
        if out and s <= out[-1][1]:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    spans = np.array(out, dtype=np.int64).reshape(-1, 2)
    return spans[:, 0], spans[:, 1]


def inside(t_ns: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Whether each time lies in one of the disjoint sorted intervals [starts, ends)."""
    i = np.searchsorted(starts, t_ns, side="right") - 1
    hit = i >= 0
    hit[hit] = t_ns[hit] < ends[i[hit]]
    return hit


def any_within(t_ns: np.ndarray, others: np.ndarray, before: int, after: int) -> np.ndarray:
    """Whether a time of the sorted ``others`` lies in [t - before, t + after] for each t."""
    first = np.searchsorted(others, t_ns - before, side="left")
    hit = first < len(others)
    hit[hit] = others[first[hit]] <= t_ns[hit] + after
    return hit


def overlap_ns(starts: np.ndarray, ends: np.ndarray, lo: int, hi: int) -> int:
    """How much of [lo, hi) the disjoint intervals cover (ns)."""
    return int(np.clip(np.minimum(ends, hi) - np.maximum(starts, lo), 0, None).sum())


def poisson_sigmas(observed: float, expected: float) -> float:
    """How many standard deviations of a Poisson count of mean ``expected`` lie between it
    and ``observed``."""
    return abs(observed - expected) / np.sqrt(max(expected, 1.0))


# -- the comparison ---------------------------------------------------------------------------


@dataclass
class Comparison:
    """A taken run against the simulator's truth: counts, and times in ns."""

    run: TakenRun
    stored: Stored
    faults: dict[str, dict[str, int]]
    """The simulator's injected-fault counts per front-end (hardware_sim.faults)."""
    truth_veto_free: int
    """Physics HPGe events of the truth in the run with no veto pulse in their windows."""
    truth_veto_free_covered: int
    """... of them outside the run's uncovered time."""
    uncovered_ns: int
    """Uncovered HPGe time of the run, from its gaps and the windows."""
    dead_gap_ns: int
    """... of it in HPGe gaps."""
    absent: dict[str, int]
    """Truth pulses of each stream's time in the run absent from the raw file."""
    missing: dict[str, int]
    """... of them outside their stream's gaps, and the HPGe truth pulses absent from the
    built events outside the HPGe gaps (``events``)."""
    invented: dict[str, int]
    """Recorded pulses (and built events, ``events``) that are no pulse of the truth."""
    vetoed_candidates: int
    """Built candidates that have a veto pulse of the truth in their windows."""
    vetoed_compton_cosmic: int
    """... of them Compton or cosmic events."""
    hidden_vetoed: int
    """Uncovered built events that have a veto pulse of the truth in their windows but no
    veto tag (their veto pulse was lost): each a false candidate if uncovered time were
    ignored."""
    untagged: int
    """Built physics events without a veto tag, uncovered ones included."""
    untagged_alive: int
    """... of them outside the HPGe gaps."""

    @property
    def candidates(self) -> int:
        return self.stored.exposure["events_candidate"]

    @property
    def elapsed_s(self) -> float:
        return self.stored.exposure["elapsed_ns"] / 1e9

    @property
    def live_s(self) -> float:
        """Live time of the covered exposure (s), as stored."""
        return self.stored.exposure["live_ns"] / 1e9

    @property
    def live_fraction(self) -> float:
        """The HPGe front-end's own live fraction, 1 - dead / the span it was measured in."""
        e = self.stored.exposure
        return 1.0 - e["dead_ns"] / e["dead_span_ns"] if e["dead_span_ns"] else 1.0

    def measures(self) -> dict[str, tuple[int, float]]:
        """Veto-free counts, each with its live time (s): ``candidates`` as stored, over the
        stored live time; the truth's over the same (``truth_covered``) and over the whole
        run (``truth_run``: elapsed time x live fraction); and what the DAQ before coverage
        would have given: ``ignoring_uncovered`` (every built physics event without a veto
        tag, over the whole run) and ``ignoring_blind`` (HPGe gaps still taken out as dead
        time, veto blind time not)."""
        lf = self.live_fraction
        return {
            "candidates": (self.candidates, self.live_s),
            "truth_covered": (self.truth_veto_free_covered, self.live_s),
            "truth_run": (self.truth_veto_free, self.elapsed_s * lf),
            "ignoring_uncovered": (self.untagged, self.elapsed_s * lf),
            "ignoring_blind": (self.untagged_alive, (self.elapsed_s - self.dead_gap_ns / 1e9) * lf),
        }

    def rates(self) -> dict[str, float]:
        """The measures as counts per live second."""
        return {name: n / live_s for name, (n, live_s) in self.measures().items()}

    def sigmas_from_truth(self, name: str) -> float:
        """How far a measure's count lies from the truth's rate over the whole run times its
        live time, in standard deviations of a Poisson count of that mean."""
        n, live_s = self.measures()[name]
        return poisson_sigmas(n, self.rates()["truth_run"] * live_s)

    def describe(self) -> str:
        """The measured numbers, for assertion messages and the test log."""
        m, r = self.measures(), self.rates()
        e = self.stored.exposure
        said = {
            "candidates": "candidates",
            "truth_covered": "truth over the same exposure",
            "truth_run": "truth over the whole run",
            "ignoring_uncovered": "ignoring uncovered time",
            "ignoring_blind": "ignoring veto blind time",
        }
        rates = "; ".join(
            f"{said[k]} {n} in {live_s:.2f} live s = {r[k]:.2f}/s" for k, (n, live_s) in m.items()
        )
        return (
            f"{rates}; elapsed {self.elapsed_s:.2f} s, uncovered {e['uncovered_ns'] / 1e9:.2f} s"
            f" (from the gaps {self.uncovered_ns / 1e9:.2f} s, HPGe gaps"
            f" {self.dead_gap_ns / 1e9:.2f} s); hidden vetoed {self.hidden_vetoed}; gaps (s)"
            f" {_rounded(gap_summary(self.stored))}"
        )


def gap_summary(stored: Stored) -> dict[str, dict[str, float]]:
    """Seconds of gap per stream and reason."""
    out: dict[str, dict[str, float]] = {}
    for stream, reason, start, end in stored.gaps:
        by_reason = out.setdefault(stream, {})
        by_reason[reason] = by_reason.get(reason, 0.0) + (end - start) / 1e9
    return out


def _rounded(gaps: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    return {stream: {r: round(s, 2) for r, s in by.items()} for stream, by in gaps.items()}


def lookup(t_ns: np.ndarray, adc: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """For each pulse (t_ns, adc), the index of an equal pulse among ``rows`` (fields t_ns
    and adc, sorted by t_ns), -1 where there is none."""
    lo = np.searchsorted(rows["t_ns"], t_ns, side="left")
    hi = np.searchsorted(rows["t_ns"], t_ns, side="right")
    out = np.full(len(t_ns), -1, dtype=np.int64)
    one = hi - lo == 1
    out[one] = np.where(rows["adc"][lo[one]] == adc[one], lo[one], -1)
    for i in np.flatnonzero(hi - lo > 1):  # pulses at the same ns: rare
        same = np.flatnonzero(rows["adc"][lo[i] : hi[i]] == adc[i])
        out[i] = lo[i] + same[0] if len(same) else -1
    return out


def absent(pulses: np.ndarray, rows: np.ndarray) -> int:
    """How many of ``pulses`` (fields t_ns and adc) ``rows`` (sorted by t_ns) does not hold."""
    return int(np.count_nonzero(lookup(pulses["t_ns"], pulses["adc"], rows) < 0))


def by_time(rows: np.ndarray) -> np.ndarray:
    return rows[np.argsort(rows["t_ns"], kind="stable")]


def compare(run: TakenRun) -> Comparison:
    """Compare a taken run with the simulator's truth (see the module docstring)."""
    stored = read_stored(run)
    faults = read_fault_counts(run.data_dir / "sim" / FAULTS_FILE)
    truth = read_truth(run.data_dir / "sim" / TRUTH_FILE)
    truth = by_time(truth[truth["recorded"]])
    of_stream = {s: truth[truth["stream"] == s] for s in (Stream.HPGE, Stream.ACV, Stream.CRV)}
    spans, pulses = recorded(run.pulses_file)
    start, stop = spans[Stream.HPGE]
    b = run.config.builder
    windows = {
        Stream.ACV: (b.ac_window_ns, b.ac_window_ns, b.ac_threshold_adc),
        Stream.CRV: (b.crv_pre_ns, b.crv_post_ns, b.crv_threshold_adc),
    }

    # the truth's HPGe events of the run: vetoed (a veto pulse in a window), uncovered
    hpge = of_stream[Stream.HPGE]
    ge = hpge[(hpge["t_ns"] >= start) & (hpge["t_ns"] < stop)]
    t = ge["t_ns"]
    dead = union(*stored.gaps_of("hpge"))
    vetoed = np.zeros(len(ge), bool)
    blind_starts, blind_ends = [dead[0]], [dead[1]]
    for stream, (before, after, threshold) in windows.items():
        veto = of_stream[stream]
        vetoed |= any_within(t, veto["t_ns"][veto["adc"] >= threshold], before, after)
        gap_starts, gap_ends = stored.gaps_of(stream.name.lower())
        blind_starts.append(gap_starts - after)  # the HPGe times whose window reaches a gap
        blind_ends.append(gap_ends + before)
    uncovered = union(np.concatenate(blind_starts), np.concatenate(blind_ends))
    veto_free = ((ge["flags"] & FLAG_RT) == 0) & ~vetoed

    # every truth pulse outside its stream's gaps is recorded, every recorded one is true
    absent_pulses: dict[str, int] = {}
    missing: dict[str, int] = {}
    invented: dict[str, int] = {}
    for stream, (lo, hi) in spans.items():
        name = stream.name.lower()
        rows = of_stream[stream]
        have = by_time(pulses.get(stream, np.zeros(0, rows.dtype)))
        wanted = rows[(rows["t_ns"] >= lo) & (rows["t_ns"] < hi)]
        gaps = union(*stored.gaps_of(name))
        absent_pulses[name] = absent(wanted, have)
        missing[name] = absent(wanted[~inside(wanted["t_ns"], *gaps)], have)
        invented[name] = absent(have, rows)
    events = RawReader(run.events_file).read_events()
    missing["events"] = absent(ge[~inside(t, *dead)], events)
    truth_of_event = lookup(events["t_ns"], events["adc"], ge)
    invented["events"] = int(np.count_nonzero(truth_of_event < 0))

    # the built events' tags against the truth
    tags = events["tags"]
    known = truth_of_event >= 0
    truly_vetoed = np.zeros(len(events), bool)
    truly_vetoed[known] = vetoed[truth_of_event[known]]
    compton_cosmic = np.zeros(len(events), bool)
    compton_cosmic[known] = np.isin(ge["origin"][truth_of_event[known]], COMPTON_COSMIC)
    untagged = (tags & (TAG_AC | TAG_CRV | TAG_RT)) == 0
    candidate = untagged & ((tags & TAG_UNCOVERED) == 0)
    alive = ~inside(events["t_ns"], *dead)
    return Comparison(
        run=run,
        stored=stored,
        faults=faults,
        truth_veto_free=int(np.count_nonzero(veto_free)),
        truth_veto_free_covered=int(np.count_nonzero(veto_free & ~inside(t, *uncovered))),
        uncovered_ns=overlap_ns(*uncovered, start, stop),
        dead_gap_ns=overlap_ns(*dead, start, stop),
        absent=absent_pulses,
        missing=missing,
        invented=invented,
        vetoed_candidates=int(np.count_nonzero(candidate & truly_vetoed)),
        vetoed_compton_cosmic=int(np.count_nonzero(candidate & truly_vetoed & compton_cosmic)),
        hidden_vetoed=int(np.count_nonzero(untagged & ~candidate & truly_vetoed)),
        untagged=int(np.count_nonzero(untagged)),
        untagged_alive=int(np.count_nonzero(untagged & alive)),
    )
