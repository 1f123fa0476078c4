"""Long simulated exposures in minutes: fast-mode generator -> event builder -> SQL.

What ``nudaq sim generate`` runs. Each simulated run takes the path of live data minus the
serial lines and sockets, in one process:

    Generator (fast mode)  ->  daq.formats.wire.Batch per stream
        ->  daq.build.eventbuilder.EventBuilder
        ->  daq.store.filler.SpectrumFiller (one SQL commit per chunk)

The generator (hardware_sim.generator, fast mode with ``veto_margin_ns`` =
daq.build.windows.max_reach_ns) draws every HPGe pulse and only the veto singles that a tagging
window can reach. Per chunk of simulated time (CHUNK_S) every stream gets one DATA batch
whose watermark is the chunk's end, as the readouts send them: HPGe pulses with the ADC dead
time of the chunk, AC and CRV pulses, and the reactor stream one reading (true thermal power,
ON flag from ``reactor.on_threshold_MW``) at the chunk's start. Runs begin with BOR and end
with EOR on every stream, so the event builder, its tags, categories, exposure and dead-time
bookkeeping are exactly those of live data; the builder's increments go to SQL through the
live filler, chunk by chunk, so memory stays flat whatever the exposure.

Runs are created with daq.store.runs.create_run (configuration snapshot, ``simulated`` True)
and have no raw files (the run comment says so). Their clock starts at the wall clock
of the call and runs on back to back. Stream statistics of the veto streams count only the
veto pulses drawn (see the generator's fast mode).

One process does it all, chunk after chunk: generating and building a chunk takes less time
than committing it (4712 h ON + 1250 h OFF of the default setup: ~20 s), so worker processes
would not help.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass

from sqlalchemy import Engine

from daq.build.eventbuilder import EventBuilder
from daq.build.increments import BuildUpdate, dominant_state, event_counts
from daq.build.reactor import reactor_pulse
from daq.build.windows import max_reach_ns
from daq.core.config import Config
from daq.core.records import RUN_STREAMS, Stream, empty_pulses
from daq.formats.wire import KIND_BOR, KIND_DATA, KIND_EOR, Batch
from daq.store.filler import SpectrumFiller
from daq.store.runs import create_run, end_run, next_run_number, set_quality
from daq.store.session import session_scope
from hardware_sim.generator import Generator

log = logging.getLogger(__name__)

CHUNK_S = 6 * 3600.0
"""Simulated seconds per chunk: one batch per stream, one builder update, one SQL commit."""
NS_PER_S = 10**9
SECONDS_PER_DAY = 86400.0


@dataclass(frozen=True)
class RunPlan:
    """One run to simulate: number, DAQ-clock start (ns), duration (ns), thermal power (MW)
    and the seed of its generator."""

    number: int
    start_ns: int
    duration_ns: int
    power_MW: float
    seed: tuple[int, int]


@dataclass(frozen=True)
class GeneratedRun:
    """A simulated run as stored: exposure from the builder's bookkeeping."""

    number: int
    reactor: str
    power_MW: float
    elapsed_s: float
    live_s: float
    exposure_kg_day: float
    """Detector mass x live time (kg day)."""
    events: dict[str, int]

    def to_json(self) -> dict:
        return {
            "run": self.number,
            "reactor": self.reactor,
            "power_MW": self.power_MW,
            "elapsed_s": self.elapsed_s,
            "live_s": self.live_s,
            "exposure_kg_day": self.exposure_kg_day,
            "events": self.events,
        }


def run_batches(
    config: Config, plan: RunPlan, generator: Generator, chunk_ns: int
) -> Iterator[list[Batch]]:
    """The batches of one run, chunk by chunk: first the BORs, then per chunk one DATA batch
    per stream (watermark = chunk end), last the EORs at the run's stop."""
    start, stop = plan.start_ns, plan.start_ns + plan.duration_ns
    seq = dict.fromkeys(RUN_STREAMS, 0)

    def batch(kind: int, stream: Stream, watermark_ns: int, pulses=None, dead_ns=0) -> Batch:
        pulses = empty_pulses() if pulses is None else pulses
        out = Batch(kind, stream, plan.number, seq[stream], watermark_ns, pulses, dead_ns)
        seq[stream] += 1
        return out

    yield [batch(KIND_BOR, s, start) for s in RUN_STREAMS]
    threshold = config.reactor.on_threshold_MW
    for t0 in range(start, stop, chunk_ns):
        t1 = min(t0 + chunk_ns, stop)
        pulses, _ = generator.generate(t0, t1, plan.power_MW)
        yield [
            batch(KIND_DATA, Stream.HPGE, t1, pulses[Stream.HPGE], generator.dead_ns),
            batch(KIND_DATA, Stream.ACV, t1, pulses[Stream.ACV]),
            batch(KIND_DATA, Stream.CRV, t1, pulses[Stream.CRV]),
            batch(KIND_DATA, Stream.REACTOR, t1, reactor_pulse(t0, plan.power_MW, threshold)),
        ]
    yield [batch(KIND_EOR, s, stop) for s in RUN_STREAMS]


def build_run(
    config: Config, plan: RunPlan, chunk_s: float = CHUNK_S, fast: bool = True
) -> Iterator[BuildUpdate]:
    """Generate and build one run: the builder's update of every chunk, then the one of
    the end of run.

    The ADC injects random triggers at ``frontends.hpge.rt_rate_hz``, as the readout
    configures it (CONF RTRATE). ``fast=False`` draws every veto pulse (pulse-level
    simulation, for comparisons on short exposures)."""
    margin = max_reach_ns(config.builder) if fast else None
    generator = Generator(config.sim, config.detector, plan.seed, veto_margin_ns=margin)
    generator.rt_rate_hz = config.frontends.hpge.rt_rate_hz
    builder = EventBuilder(config, plan.number)
    for batches in run_batches(config, plan, generator, int(chunk_s * NS_PER_S)):
        for b in batches:
            builder.add(b)
        yield builder.advance()
    yield builder.finish()


def plan_runs(
    first_number: int,
    hours: float,
    run_hours: float,
    power_MW: float,
    seed: int,
    start_ns: int,
) -> list[RunPlan]:
    """Back-to-back runs of ``run_hours`` (the last one shorter) covering ``hours``."""
    total_ns = int(round(hours * 3600 * NS_PER_S))
    run_ns = int(round(run_hours * 3600 * NS_PER_S))
    starts = range(0, total_ns, run_ns)
    return [
        RunPlan(
            number=first_number + k,
            start_ns=start_ns + offset,
            duration_ns=min(run_ns, total_ns - offset),
            power_MW=power_MW,
            seed=(seed, first_number + k),
        )
        for k, offset in enumerate(starts)
    ]


def _store_run(
    engine: Engine, config: Config, plan: RunPlan, comment: str, chunk_s: float
) -> GeneratedRun:
    """Create the run, build it and commit every chunk's update as it comes (memory stays
    flat), close the run; a failure leaves it in state 'error'."""
    with session_scope(engine) as session:
        create_run(session, plan.number, config, comment, simulated=True)
    filler = SpectrumFiller(engine, plan.number, "", config.spectrum.n_bins)
    total = BuildUpdate.empty(config.spectrum.n_bins)
    try:
        for update in build_run(config, plan, chunk_s):
            filler.add(update)
            filler.commit()
            total.merge(update)
        filler.close_run([], end_ns=plan.start_ns + plan.duration_ns)
    except BaseException as err:
        with session_scope(engine) as session:
            end_run(session, plan.number, "error", f"simulation failed: {err!r}")
        raise
    with session_scope(engine) as session:
        end_run(session, plan.number)
        set_quality(session, plan.number, "good", "simulated: complete by construction")
    return _summary(config, plan, total)


def _summary(config: Config, plan: RunPlan, total: BuildUpdate) -> GeneratedRun:
    ex = total.exposure
    elapsed = sum(e.elapsed_ns for e in ex.values()) / NS_PER_S
    live = sum(e.live_ns for e in ex.values()) / NS_PER_S
    return GeneratedRun(
        number=plan.number,
        reactor=dominant_state({s: e.elapsed_ns for s, e in ex.items()}),
        power_MW=plan.power_MW,
        elapsed_s=elapsed,
        live_s=live,
        exposure_kg_day=config.detector.mass_kg * live / SECONDS_PER_DAY,
        events=event_counts(ex.values()),
    )


def generate_runs(
    engine: Engine,
    config: Config,
    hours: float,
    power_MW: float,
    run_hours: float = 24.0,
    seed: int | None = None,
    chunk_s: float = CHUNK_S,
) -> list[GeneratedRun]:
    """Simulate ``hours`` of data taking at ``power_MW`` into the database as runs of
    ``run_hours`` (the runs get the next free numbers). ``config`` is stored with every run;
    its ``sim`` section sets the physics (``sim.mu_nu_1e10`` the injected moment). ``seed``
    defaults to ``sim.seed``; run N draws from the seed (seed, N)."""
    if not (hours > 0 and run_hours > 0 and chunk_s > 0):
        raise ValueError(f"hours ({hours}), run_hours ({run_hours}), chunk_s must be positive")
    seed = config.sim.seed if seed is None else seed
    state = "ON" if power_MW >= config.reactor.on_threshold_MW else "OFF"
    with session_scope(engine) as session:
        first = next_run_number(session)
    plans = plan_runs(first, hours, run_hours, power_MW, seed, time.time_ns())
    comment = (
        f"fast simulation: reactor {state} at {power_MW:g} MW, mu_nu "
        f"{config.sim.mu_nu_1e10:g}e-10 mu_B, seed {seed}; veto singles drawn only within "
        f"{max_reach_ns(config.builder)} ns of HPGe pulses; no raw files"
    )
    out = []
    for plan in plans:
        out.append(_store_run(engine, config, plan, comment, chunk_s))
        log.info("run %d stored: %s", plan.number, out[-1])
    return out
