"""Losses against the simulator's ground truth, through the real processes.

One busy run of ``nudaq up --sim`` per scenario, with the fault on every detector stream at
once: (1) ``line``: a noisy line that also drops bytes and flips bits; (2) ``reconnect``:
disconnects, and stalls longer than the readout's timeout; (3) ``overflow``: small readout
buffers that overflow while the builder is frozen (SIGSTOP); (4) ``restart``: each readout
killed (SIGKILL) in turn, restarted by the supervisor, rejoining the run; (5) ``builder``:
the builder killed (SIGKILL), restarted, resuming the run from its raw file. Each run is
compared with the simulator's truth (tests.ground_truth, which computes tags and uncovered
time on its own):

(a) candidates per exposure (SQL events_candidate / live_ns) equal the truly veto-free
    HPGe events of the truth (no veto pulse of the truth in their windows) over the same
    covered exposure, and over the whole run, within TOLERANCE_SIGMAS; the stored uncovered
    time is the union of the stored gaps widened by the windows. The old behaviour fails
    this by far: what the same run gives with the loss treated as before coverage
    (Scenario.old) is more than FAR_OFF_SIGMAS away;
(b) no truth pulse is missing from the raw file, nor any HPGe one from the built events,
    outside its stream's recorded gaps (HPGe dead time, veto blind time), and nothing
    recorded is invented;
(c) no truly vetoed event (Compton, cosmic or accidental) is a candidate;
(d) the losses were detected (gaps of the scenario's reason on every stream, counters that
    match the faults injected) and reported (run summary and SQL agree with the gaps);
(e) a replay of the raw file reproduces the gaps, exposure and spectra bit for bit.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
from sqlalchemy import create_engine, text

from daq.core.config import Config
from tests.ground_truth import (
    Comparison,
    busy_config,
    compare,
    gap_summary,
    pause,
    poisson_sigmas,
    service,
    take_run,
)
from tests.processes import NUDAQ
from tests.test_replay_system import stored

pytestmark = pytest.mark.slow

DETECTOR_STREAMS = ("hpge", "acv", "crv")
TOLERANCE_SIGMAS = 4.0
"""Largest difference of the candidate count from the truth's expectation, in standard
deviations of a Poisson count of that mean (its square root)."""
FAR_OFF_SIGMAS = 10.0
"""Smallest distance from the truth, in the same unit, of what the old behaviour gives."""
EDGE_REASONS = frozenset({"not_started", "not_ended"})
"""Gaps any run may have: a veto that began after, or ended before, the HPGe stream."""
KILL_EVERY_S = 1.5
"""Wall seconds between the kills of the readouts in ``restart``."""
FREEZE_AFTER_S = 1.0
FREEZE_S = 4.0
"""When, into the run, and for how long the builder is frozen in ``overflow`` (wall s)."""


@dataclass(frozen=True)
class Scenario:
    """A fault on every detector stream, the run that shows it and what must be detected."""

    name: str
    configure: Callable[[Config], None]
    reason: str
    """The gap reason the fault must leave on every detector stream."""
    speed: float
    duration_s: float
    old: str | None
    """How the DAQ before coverage saw this loss, a key of Comparison.measures():
    ``ignoring_uncovered`` (not at all: lost frames) or ``ignoring_blind`` (the readout
    added the lost time to its stream's dead time, and the builder took dead time from the
    HPGe stream only: a reconnect, an overflow); None where data taking used to stop."""
    while_running: Callable | None = None
    min_uncovered: float = 0.1
    """The least share of the run the fault must uncover, for the run to test something."""


def line_faults(config: Config) -> None:
    for stream in DETECTOR_STREAMS:
        faults = getattr(config.sim.faults, stream)
        faults.noise_bytes_per_s = 50.0
        faults.dropped_bytes_per_s = 0.2
        faults.corrupt_frames_per_s = 0.2


def disconnects_and_stalls(config: Config) -> None:
    """Stalls on the common clock, so at the same time on every stream; disconnects after
    running for a time that differs by stream, so a veto is often blind while the HPGe
    stream is not (the case that would turn vetoed events into candidates)."""
    for stream, disconnect_after_s in zip(DETECTOR_STREAMS, (8.0, 11.0, 14.0), strict=True):
        faults = getattr(config.sim.faults, stream)
        faults.disconnect_after_s = disconnect_after_s
        faults.stall_every_s = 20.0
        faults.stall_s = 3.0  # 0.6 wall s at speed 5, twice the readout's timeout
        getattr(config.frontends, stream).timeout_s = 0.3


def small_buffers(config: Config) -> None:
    """Readout buffers of a few batches and one batch queued in ZeroMQ: a frozen builder
    makes every readout overflow once the kernel's socket buffers (about 200 kB each) are
    full too; the CRV singles are raised so that its stream, the slowest, fills them in
    seconds."""
    config.network.send_hwm = 1
    config.sim.crv_singles_hz = 1000.0
    for stream in DETECTOR_STREAMS:
        getattr(config.frontends, stream).buffer_pulses = 5000


def freeze_builder(up) -> None:
    time.sleep(FREEZE_AFTER_S)
    pause(service(up, "builder"), FREEZE_S)


def kill_readouts(up) -> None:
    """SIGKILL each readout in turn, KILL_EVERY_S apart: the supervisor restarts it, and it
    rejoins the run as a new incarnation of its stream."""
    for stream in DETECTOR_STREAMS:
        time.sleep(KILL_EVERY_S)
        readout = next(
            p
            for p in psutil.Process(up.pid).children(recursive=True)
            if "readout" in p.cmdline() and stream in p.cmdline()
        )
        readout.kill()


def kill_builder(up) -> None:
    """SIGKILL the builder: the supervisor restarts it, and it resumes the run."""
    time.sleep(KILL_EVERY_S)
    service(up, "builder").kill()


SCENARIOS = {
    s.name: s
    for s in (
        Scenario("line", line_faults, "line", 10.0, 60.0, "ignoring_uncovered"),
        Scenario("reconnect", disconnects_and_stalls, "reconnect", 5.0, 40.0, "ignoring_blind"),
        Scenario(
            "overflow", small_buffers, "overflow", 20.0, 130.0, "ignoring_blind", freeze_builder
        ),
        Scenario(
            "builder",
            lambda config: None,
            "builder_restart",
            20.0,
            160.0,
            None,
            kill_builder,
            min_uncovered=0.02,
        ),
        Scenario(
            "restart",
            lambda config: None,
            "restart",
            20.0,
            160.0,
            "ignoring_uncovered",
            kill_readouts,
        ),
    )
}


@pytest.fixture(scope="module", params=list(SCENARIOS))
def scenario_run(request) -> tuple[Scenario, Comparison]:
    """One run per scenario, compared with the truth, shared by the checks below."""
    scenario = SCENARIOS[request.param]
    config = busy_config()
    scenario.configure(config)
    run = take_run(config, scenario.duration_s, scenario.speed, scenario.while_running)
    try:
        comparison = compare(run)
        old = "-" if scenario.old is None else f"{comparison.sigmas_from_truth(scenario.old):.1f}"
        print(f"\n{scenario.name}: {comparison.describe()}; old behaviour {old} sigma off")
        yield scenario, comparison
    finally:
        run.remove()


def test_candidates_per_exposure_equal_the_truth(scenario_run):
    """(a) Candidates per live second equal the truth's veto-free rate over the same covered
    exposure, and over the whole run, within TOLERANCE_SIGMAS; the stored uncovered time is
    the gaps' union widened by the windows."""
    scenario, c = scenario_run
    m = c.measures()
    assert m["truth_covered"][0] > 2000, c.describe()  # statistics to speak of
    assert c.stored.exposure["uncovered_ns"] == c.uncovered_ns, c.describe()
    share = c.uncovered_ns / c.stored.exposure["elapsed_ns"]
    assert scenario.min_uncovered < share < 0.8, c.describe()
    covered = poisson_sigmas(m["candidates"][0], m["truth_covered"][0])
    assert covered <= TOLERANCE_SIGMAS, f"{covered:.1f} sigma: {c.describe()}"
    whole = c.sigmas_from_truth("candidates")
    assert whole <= TOLERANCE_SIGMAS, f"{whole:.1f} sigma from the run's: {c.describe()}"


@pytest.mark.parametrize(
    "scenario_run", [n for n, s in SCENARIOS.items() if s.old is not None], indirect=True
)
def test_the_old_behaviour_would_be_far_off(scenario_run):
    """(a) fails on the old behaviour: the same run's candidates per exposure, with the loss
    treated as before coverage, are far from the truth's."""
    scenario, c = scenario_run
    rates = c.rates()
    off = c.sigmas_from_truth(scenario.old)
    assert off > FAR_OFF_SIGMAS, (
        f"{scenario.old.replace('_', ' ')}: {rates[scenario.old]:.2f}/s is only {off:.1f}"
        f" sigma from the truth's {rates['truth_run']:.2f}/s (with coverage:"
        f" {rates['candidates']:.2f}/s): {c.describe()}"
    )


def test_no_truth_pulse_is_missing_outside_the_gaps(scenario_run):
    """(b) Every pulse of the truth is in the raw file, and every HPGe one among the built
    events, unless it lies in a recorded gap of its stream; nothing recorded is invented."""
    scenario, c = scenario_run
    for stream in DETECTOR_STREAMS:
        assert c.absent[stream] > 0, f"{stream} lost nothing: {c.describe()}"
    assert c.missing == dict.fromkeys([*DETECTOR_STREAMS, "events"], 0), c.describe()
    assert c.invented == dict.fromkeys([*DETECTOR_STREAMS, "events"], 0), c.describe()


def test_no_truly_vetoed_event_is_a_candidate(scenario_run):
    """(c) No built candidate has a veto pulse of the truth in its windows; and the run did
    hide veto pulses from the DAQ (vetoed events without a veto tag, all uncovered)."""
    scenario, c = scenario_run
    assert c.vetoed_candidates == 0, c.describe()
    assert c.vetoed_compton_cosmic == 0, c.describe()
    assert c.hidden_vetoed > 0, f"no vetoed event lost its veto pulse: {c.describe()}"


def test_losses_are_detected_and_reported(scenario_run):
    """(d) Gaps of the scenario's reason on every detector stream, counters that match the
    injected faults, and a run summary and SQL that agree with the gaps."""
    scenario, c = scenario_run
    summary, stored = c.run.summary, c.stored
    gaps = gap_summary(stored)
    for stream in DETECTOR_STREAMS:
        reasons = stored.reasons(stream)
        assert scenario.reason in reasons, (stream, gaps)
        assert reasons <= {scenario.reason} | EDGE_REASONS, (stream, gaps)
        assert stored.streams[stream]["uncovered_ns"] == stored.gap_ns(stream), stream
        assert summary["uncovered_s"][stream] == pytest.approx(stored.gap_ns(stream) / 1e9)
        assert summary["gaps_s"][stream] == pytest.approx(gaps[stream]), stream
    assert summary["exposure_uncovered_s"] == pytest.approx(stored.exposure["uncovered_ns"] / 1e9)
    assert summary["events"]["uncovered"] == stored.exposure["events_uncovered"] > 0
    assert summary["events"]["candidate"] == stored.exposure["events_candidate"]
    assert summary["live_time_s"] == pytest.approx(stored.exposure["live_ns"] / 1e9)
    for stream in DETECTOR_STREAMS:
        counts, faults = stored.streams[stream], c.faults[stream]
        if scenario.name == "line":  # every damaged frame is seen, once
            assert faults["noise_bytes"] > 0 and faults["damaged_frames"] > 0, faults
            assert summary["lost"][stream] == counts["lost_frames"] == faults["damaged_frames"]
        elif scenario.name == "reconnect":
            assert faults["disconnects"] > 0 and faults["stalls"] > 0, (stream, faults)
        elif scenario.name in ("restart", "builder"):
            restarts = [g for g in stored.gaps if g[0] == stream and g[1] == scenario.reason]
            assert len(restarts) == 1, (stream, gaps)
        else:  # every pulse the readout dropped is counted, and no other one is lost
            assert summary["lost"][stream] == counts["dropped"] == c.absent[stream] > 0


@pytest.mark.parametrize("scenario_run", ["restart"], indirect=True)
def test_restarts_are_logged_alarmed_and_the_readouts_are_back(scenario_run):
    """(d) for ``restart``: every kill left a logbook entry of the rejoin and a supervisor
    alarm raised while the readout was away and cleared once it was back."""
    scenario, c = scenario_run
    engine = create_engine(f"sqlite:///{c.run.data_dir / 'nudaq.sqlite'}")
    with engine.connect() as conn:
        logbook = conn.scalars(text("SELECT text FROM logbook")).all()
        alarms = conn.execute(text("SELECT name, cleared_utc FROM alarms")).all()
    engine.dispose()
    for stream in DETECTOR_STREAMS:
        name = f"readout-{stream}"
        assert any(f"{name} restarted: rejoined run 1 as incarnation 1" in t for t in logbook)
        assert any(f"process {name} was killed by signal 9" in t for t in logbook)
        assert [
            cleared is not None for a, cleared in alarms if a == f"supervisor:restart:{name}"
        ] == [True], alarms


def test_a_replay_reproduces_the_gaps_and_exposure_bit_for_bit(scenario_run, tmp_path):
    """The raw file records every batch's gap: replayed into a fresh database, the lossy run
    gives the same gaps, exposure, stream bookkeeping and spectra as live."""
    _, comparison = scenario_run
    data_dir = comparison.run.data_dir
    raw_file = data_dir / "raw" / f"run{comparison.run.summary['run']:06d}.pulses.arrow"
    fresh = tmp_path / "fresh.sqlite"
    work = Path(tempfile.mkdtemp(prefix="nqr", dir="/tmp"))  # ipc paths stay short
    try:
        out = subprocess.run(
            [*NUDAQ, "replay", str(raw_file), "--db", f"sqlite:///{fresh}", "--json"]
            + ["--data-dir", str(work)],
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    assert out.returncode == 0, out.stderr
    live = stored(data_dir / "nudaq.sqlite")
    assert live["coverage_gaps"] and live["exposures"]
    assert stored(fresh) == live
