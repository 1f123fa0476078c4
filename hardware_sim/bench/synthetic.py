"""Synthetic raw runs: a recording as the live system writes it, at chosen rates, fast.

``write_synthetic_run`` draws Poisson pulse trains for the three detector streams and a
reactor reading per second, cuts each stream into batches the way a readout sends them (one
per ``batch_s`` of DAQ time, a reactor batch per second, BOR first and EOR last, watermarks
at the cut times), and records them with ``daq.formats.rawfile.RawWriter`` in watermark order, as
the builder would have received them, flushing once per second of DAQ time as the builder
does once per second. A fraction of the HPGe pulses get an AC or CRV
partner inside the veto windows, HPGe batches carry ADC dead time, and the reactor trips
for a while in the middle, so replaying the file exercises every part of the builder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from daq.core.config import KUO_SHENG_POWER_MW, Config
from daq.core.records import FLAG_REACTOR_ON, FLAG_RT, PULSE_DTYPE, Stream
from daq.formats.rawfile import RawFileInfo, RawWriter
from daq.formats.wire import KIND_BOR, KIND_DATA, KIND_EOR, Batch

T0_NS = 1_000_000_000
"""DAQ clock at the start of a synthetic run (ns)."""
BLOCK_S = 200.0
"""Pulses are drawn in blocks of this much DAQ time (s), so memory stays small."""
FLUSH_NS = 1_000_000_000
"""The writer is flushed (a block of the pulses file ends) once per this much DAQ time."""


@dataclass(frozen=True)
class Rates:
    """Pulse rates (Hz) of a synthetic run; the default is the realistic Kuo-Sheng mix."""

    hpge_hz: float = 30.0
    acv_hz: float = 1000.0
    crv_hz: float = 300.0
    rt_hz: float = 0.1
    ac_partner_fraction: float = 0.3
    crv_partner_fraction: float = 0.1

    @property
    def total_hz(self) -> float:
        """Aggregate pulse rate of the detector streams (Hz)."""
        return self.hpge_hz + self.acv_hz + self.crv_hz


def _times(rng: np.random.Generator, t0: int, t1: int, rate_hz: float) -> np.ndarray:
    n = rng.poisson(rate_hz * (t1 - t0) * 1e-9)
    return np.sort(rng.integers(t0, t1, n, dtype=np.int64))


def _pulses(t: np.ndarray, adc: np.ndarray, flags: np.ndarray | int = 0) -> np.ndarray:
    order = np.argsort(t, kind="stable")
    p = np.zeros(len(t), PULSE_DTYPE)
    p["t_ns"] = t[order]
    p["adc"] = np.asarray(adc)[order]
    p["flags"] = np.broadcast_to(flags, len(t))[order]
    return p


def _block(rng: np.random.Generator, t0: int, t1: int, rates: Rates, dead_ns: int):
    """Pulses of every detector stream in [t0, t1) (partners kept inside the block)."""
    margin = 10_000
    ge_t = _times(rng, t0 + margin, t1 - margin, rates.hpge_hz)
    rt_t = _times(rng, t0 + margin, t1 - margin, rates.rt_hz)
    ge = _pulses(
        np.concatenate([ge_t, rt_t]),
        np.concatenate([rng.integers(500, 100_000, len(ge_t)), np.zeros(len(rt_t), int)]),
        np.concatenate([np.zeros(len(ge_t), np.uint16), np.full(len(rt_t), FLAG_RT, np.uint16)]),
    )
    ge = ge[np.concatenate([[True], np.diff(ge["t_ns"]) >= dead_ns])]  # ADC busy: lost
    ac_partners = ge_t[rng.random(len(ge_t)) < rates.ac_partner_fraction]
    ac_t = np.concatenate(
        [_times(rng, t0, t1, rates.acv_hz), ac_partners + rng.integers(-200, 200, len(ac_partners))]
    )
    crv_partners = ge_t[rng.random(len(ge_t)) < rates.crv_partner_fraction]
    crv_t = np.concatenate(
        [_times(rng, t0, t1, rates.crv_hz), crv_partners - rng.integers(20, 80, len(crv_partners))]
    )
    return {
        Stream.HPGE: ge,
        Stream.ACV: _pulses(ac_t, rng.integers(0, 3000, len(ac_t))),
        Stream.CRV: _pulses(crv_t, rng.integers(0, 3000, len(crv_t))),
    }


def _reactor(t0: int, t1: int, trip: tuple[int, int]) -> np.ndarray:
    """One reading per second; OFF (0 kW) during the trip."""
    t = np.arange(t0, t1, 1_000_000_000, dtype=np.int64)
    on = (t < trip[0]) | (t >= trip[1])
    return _pulses(
        t, np.where(on, round(KUO_SHENG_POWER_MW * 1000), 0), np.where(on, FLAG_REACTOR_ON, 0)
    )


def _cut(stream: Stream, run: int, pulses: np.ndarray, edges: np.ndarray, seq0: int, dead_ns: int):
    """DATA batches of one block: one per interval (edges[i], edges[i+1]]."""
    cuts = np.searchsorted(pulses["t_ns"], edges[1:], side="left")
    starts = np.concatenate([[0], cuts[:-1]])
    return [
        Batch(
            KIND_DATA,
            int(stream),
            run,
            seq0 + i,
            int(wm),
            pulses[a:b],
            dead_ns=dead_ns * (b - a) if stream == Stream.HPGE else 0,
        )
        for i, (a, b, wm) in enumerate(zip(starts, cuts, edges[1:], strict=True))
    ]


def write_synthetic_run(
    prefix: Path,
    run: int,
    duration_s: float,
    rates: Rates | None = None,
    batch_s: float = 0.05,
    seed: int = 1,
    config: Config | None = None,
) -> list[RawFileInfo]:
    """Record a synthetic run of ``duration_s`` DAQ seconds under ``prefix`` (see module doc);
    returns the raw files [pulses, events] (the events file stays empty)."""
    config = config or Config()
    rates = rates or Rates()
    rng = np.random.default_rng(seed)
    dead_ns = config.sim.adc_dead_time_ns
    t_stop = T0_NS + int(duration_s * 1e9)
    step = int(batch_s * 1e9)
    trip = (T0_NS + int(0.4 * duration_s * 1e9), T0_NS + int(0.5 * duration_s * 1e9))
    seq = dict.fromkeys(Stream, 1)
    empty = np.zeros(0, PULSE_DTYPE)
    writer = RawWriter(prefix, run, config.snapshot())
    for stream in Stream:
        writer.write_batch(Batch(KIND_BOR, int(stream), run, 0, T0_NS, empty))
    block = int(BLOCK_S * 1e9) // step * step
    flushed = 0
    for b0 in range(T0_NS, t_stop, block):
        b1 = min(b0 + block, t_stop)
        data = _block(rng, b0, b1, rates, dead_ns)
        data[Stream.REACTOR] = _reactor(b0, b1, trip)
        edges = np.append(np.arange(b0, b1, step, dtype=np.int64), b1)
        each_second = np.append(np.arange(b0, b1, 1_000_000_000, dtype=np.int64), b1)
        batches = []
        for stream, pulses in data.items():
            cuts = each_second if stream == Stream.REACTOR else edges
            cut = _cut(stream, run, pulses, cuts, seq[stream], dead_ns)
            seq[stream] += len(cut)
            batches += cut
        batches.sort(key=lambda x: (x.watermark_ns, x.stream))
        for batch in batches:
            if (batch.watermark_ns - T0_NS - 1) // FLUSH_NS > flushed:
                writer.flush()
                flushed = (batch.watermark_ns - T0_NS - 1) // FLUSH_NS
            writer.write_batch(batch)
    for stream in Stream:
        writer.write_batch(Batch(KIND_EOR, int(stream), run, seq[stream], t_stop, empty))
    return writer.close()
