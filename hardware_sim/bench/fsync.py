"""What the raw writer's fsync policy costs the builder: writer time per second of data.

The live builder hands every received wire batch to ``daq.formats.rawfile.RawWriter`` and
flushes it every ``builder.raw_flush_interval_s``; with ``builder.raw_fsync_interval_s`` the
writer also fsyncs the files, in a background thread. Here the writer records
RATE_PULSES_PER_S of the realistic stream mix (hardware_sim.bench.synthetic.Rates, scaled),
paced in real time: every TICK_S one batch per detector stream (a reactor batch per second),
flushes at the configured interval. It does so with the configured fsync policy and without
one (the baseline: no fsync until the close), in alternating rounds of the same length, so
both see the same machine. The figures are the wall time spent in the writer's calls per
second of data (ms/s, the median over the seconds: what the builder's loop pays, robust to
other processes' bursts), the slowest single tick (ms), and the fsyncs' own time in their
background thread (ms per s of data).

The files go to the data directory (daq.core.paths.data_dir) when it exists, the disk raw
files are written to, else to the temporary directory, and are removed afterwards.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from daq.core.config import Config
from daq.core.paths import data_dir
from daq.core.records import PULSE_DTYPE, Stream
from daq.formats.rawfile import RawWriter
from daq.formats.wire import KIND_DATA, Batch
from hardware_sim.bench.synthetic import T0_NS, Rates

RATE_PULSES_PER_S = 300_000
"""The issue's live target rate."""
TICK_S = 0.05
"""One batch per detector stream per this much time (s), as the readouts send them."""


def _tick_pulses(rng: np.random.Generator, rates: Rates) -> dict[Stream, np.ndarray]:
    """The pulses of one tick of each detector stream at RATE_PULSES_PER_S in total."""
    scale = RATE_PULSES_PER_S / rates.total_hz
    tick_ns = int(TICK_S * 1e9)
    rates_hz = {Stream.HPGE: rates.hpge_hz, Stream.ACV: rates.acv_hz, Stream.CRV: rates.crv_hz}
    out = {}
    for stream, hz in rates_hz.items():
        n = round(hz * scale * TICK_S)
        pulses = np.zeros(n, PULSE_DTYPE)
        pulses["t_ns"] = np.sort(rng.integers(0, tick_ns, n))
        pulses["adc"] = rng.integers(0, 100_000, n)
        out[stream] = pulses
    return out


def write_paced(
    directory: Path, seconds: int, fsync_interval_s: float | None, config: Config
) -> dict:
    """Record ``seconds`` of data in real time with this fsync policy (None: fsync only at
    the close): the writer's time in each second of data (s), its slowest tick (s), the
    number of fsyncs and their total time (s)."""
    per_second = round(1 / TICK_S)
    ticks = seconds * per_second
    pulses = _tick_pulses(np.random.default_rng(1), Rates())
    reactor = np.zeros(1, PULSE_DTYPE)
    tick_ns = int(TICK_S * 1e9)
    flush_s = config.builder.raw_flush_interval_s
    writer = RawWriter(directory / "run000001", 1, config.snapshot(), fsync_interval_s)
    busy_s = np.zeros(seconds)
    worst_s = 0.0
    start = time.monotonic()
    next_flush = start + flush_s
    for i in range(ticks):
        delay = start + (i + 1) * TICK_S - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        watermark = T0_NS + (i + 1) * tick_ns
        began = time.perf_counter()
        for stream, p in pulses.items():
            writer.write_batch(Batch(KIND_DATA, int(stream), 1, i + 1, watermark, p))
        if (i + 1) % per_second == 0:
            writer.write_batch(Batch(KIND_DATA, int(Stream.REACTOR), 1, i + 1, watermark, reactor))
        if time.monotonic() >= next_flush:
            writer.flush()
            next_flush += flush_s
        took = time.perf_counter() - began
        busy_s[i // per_second] += took
        worst_s = max(worst_s, took)
    writer.close()
    return {
        "busy_s": busy_s,
        "worst_s": worst_s,
        "fsyncs": writer.fsyncs,
        "fsync_s": writer.fsync_s,
    }


def compare(seconds: int, rounds: int = 2, config: Config | None = None) -> dict:
    """The bench figures (module doc): the configured fsync policy beside no fsync, each
    written for ``rounds`` rounds of ``seconds`` of data."""
    config = config or Config()
    interval = config.builder.raw_fsync_interval_s
    base = data_dir()
    base = base if base.is_dir() else Path(tempfile.gettempdir())
    work = Path(tempfile.mkdtemp(prefix="bench-fsync-", dir=base))
    runs: dict[str, list[dict]] = {"no_fsync": [], "fsync": []}
    try:
        for i in range(rounds):
            for name, policy in (("no_fsync", None), ("fsync", interval)):
                directory = work / f"{name}{i}"
                directory.mkdir()
                runs[name].append(write_paced(directory, seconds, policy, config))
                shutil.rmtree(directory)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    data_s = seconds * rounds
    fsync_s = sum(r["fsync_s"] for r in runs["fsync"])
    return {
        "raw_write_pulses_per_s": RATE_PULSES_PER_S,
        "raw_write_data_s": data_s,
        "raw_write_dir": str(base),
        "raw_fsync_interval_s": interval,
        "raw_write_ms_per_s": {
            name: 1e3 * float(np.median(np.concatenate([r["busy_s"] for r in rs])))
            for name, rs in runs.items()
        },
        "raw_write_worst_tick_ms": {
            name: 1e3 * max(r["worst_s"] for r in rs) for name, rs in runs.items()
        },
        "raw_fsyncs": sum(r["fsyncs"] for r in runs["fsync"]),
        "raw_fsync_ms_per_s": 1e3 * fsync_s / data_s,
    }
