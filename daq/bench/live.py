"""The live ceiling: the highest aggregate pulse rate ``nudaq up --sim`` takes with no loss.

The simulated hardware's clock is sped up stepwise (every rate scales with it): short
probes find the first speed that loses pulses (dropped, lost frames, missing batches, or
a run that does not end cleanly), then the fastest clean speed must hold for ``hold_s``
wall seconds; if it does not, the next slower one is tried. The rate is the run's pulses
of the three detector streams over the wall time its simulated exposure took (simulated
seconds / speed).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

SPEEDS = (25, 50, 100, 200, 400, 800, 1600, 3200, 6400)
"""Clock speed-ups tried (x real time); at the default rates ~1300 pulses/s each."""


def _run(speed: float, wall_s: float) -> tuple[bool, float, dict]:
    """One ``nudaq up --sim`` run: (no loss, pulses per wall second, summary)."""
    data_dir = Path(tempfile.mkdtemp(prefix="nql", dir="/tmp"))
    command = [sys.executable, "-m", "daq.cli", "up", "--sim", "--json"]
    command += ["--duration", str(wall_s * speed), "--speed", str(speed)]
    command += ["--data-dir", str(data_dir)]
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=wall_s + 180)
    except subprocess.TimeoutExpired:
        return False, 0.0, {"error": "timed out"}
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    if out.returncode != 0:
        return False, 0.0, {"error": out.stderr[-500:]}
    summary = json.loads(out.stdout)
    pulses = sum(summary["pulses"].values())
    rate = pulses / (summary["elapsed_s"] / speed) if summary["elapsed_s"] else 0.0
    clean = sum(summary["lost"].values()) == 0 and not summary.get("eor_timeout")
    clean = clean and summary.get("missing_batches", 0) == 0
    return clean, rate, summary


def live_max_zero_loss(probe_s: float = 10.0, hold_s: float = 60.0, log=print) -> dict:
    """Probe the speeds, then hold the best; {"pulses_per_s", "speed", "steps"}."""
    steps = []
    clean_speeds = []
    for speed in SPEEDS:
        clean, rate, _ = _run(speed, probe_s)
        steps.append({"speed": speed, "wall_s": probe_s, "pulses_per_s": rate, "clean": clean})
        log(f"live probe x{speed}: {rate:,.0f} pulses/s, {'no loss' if clean else 'LOSS'}")
        if not clean:
            break
        clean_speeds.append(speed)
    for speed in reversed(clean_speeds):
        clean, rate, _ = _run(speed, hold_s)
        steps.append({"speed": speed, "wall_s": hold_s, "pulses_per_s": rate, "clean": clean})
        log(f"live hold x{speed} for {hold_s:.0f} s: {rate:,.0f} pulses/s, clean={clean}")
        if clean:
            return {"pulses_per_s": rate, "speed": speed, "steps": steps}
    return {"pulses_per_s": 0.0, "speed": None, "steps": steps}
