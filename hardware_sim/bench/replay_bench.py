"""End-to-end replay throughput and the builder's peak memory, through ``nudaq replay``.

A synthetic run at the realistic rates (hardware_sim.bench.synthetic) is written with the raw
writer and replayed by the real command (its own processes, a fresh SQLite database); the
figures are those of its --json summary: pulses per second over the streaming (reader
started, builder through its final commit), until all was built, and over the whole
command, and the builder's peak RSS. A run a tenth as long is the memory baseline: a flat
builder peaks the same, in the full run also after LONG_PULSES.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from daq.formats.rawfile import PULSES, raw_path
from hardware_sim.bench.synthetic import Rates, write_synthetic_run

MIN_PULSES = 10_000_000
LONG_PULSES = 100_000_000
"""The long replay of the full run: its builder must peak no higher than a short one's."""
REALISTIC = Rates()


def duration_for(pulses: int) -> float:
    """DAQ seconds of a synthetic run at the realistic rates holding about ``pulses``."""
    return pulses / REALISTIC.total_hz * 1.01


def replay_run(work: Path, name: str, duration_s: float) -> dict:
    """Write a synthetic run of ``duration_s`` and replay it; the replay's JSON summary plus
    ``command_s`` (wall time of the whole command, s)."""
    prefix = work / name / "run000001"
    files = write_synthetic_run(prefix, 1, duration_s)
    command = [sys.executable, "-m", "daq.cli", "replay", str(raw_path(prefix, PULSES))]
    command += ["--db", f"sqlite:///{work / name / 'replay.sqlite'}"]
    command += ["--data-dir", str(work / name), "--json"]
    start = time.perf_counter()
    out = subprocess.run(command, capture_output=True, text=True, timeout=600)
    elapsed = time.perf_counter() - start
    if out.returncode != 0:
        raise RuntimeError(f"nudaq replay failed ({out.returncode}): {out.stderr[-2000:]}")
    summary = json.loads(out.stdout)
    summary["command_s"] = elapsed
    summary["file_bytes"] = files[0].bytes
    files[0].path.unlink()
    return summary
