"""The live ceiling: the highest aggregate pulse rate ``nudaq up --sim`` takes with no loss.

The simulated hardware's clock is sped up stepwise (every rate scales with it): short
probes find the first speed that loses pulses (dropped, lost frames, missing batches, or
a run that does not end cleanly), then the clean speed with the highest measured rate
must hold for ``hold_s`` wall seconds; if it does not, the next best one is tried. The
rate is the run's pulses of the three detector streams over the run's wall time as run
control recorded it (start to stop, the stop coming after the builder has every pulse): a
simulator or pipeline that falls behind the sped-up clock makes the run longer, not the
rate higher. Each step also reports the simulated seconds covered against those asked for.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from datetime import datetime
from pathlib import Path

from sqlalchemy import create_engine, text

from daq.core.paths import db_url

SPEEDS = (25, 50, 100, 200, 400, 800, 1600, 3200, 6400)
"""Clock speed-ups tried (x real time); at the default rates ~1300 pulses/s each."""


def _run_wall_s(data_dir: Path) -> float:
    """Wall seconds from start to stop of run 1, from the runs table."""
    engine = create_engine(db_url(None, data_dir))
    try:
        with engine.connect() as conn:
            start, stop = conn.execute(
                text("SELECT started_utc, stopped_utc FROM runs WHERE number = 1")
            ).one()
    finally:
        engine.dispose()
    start, stop = (datetime.fromisoformat(str(t)) for t in (start, stop))
    return (stop - start).total_seconds()


def _run(speed: float, wall_s: float) -> tuple[bool, float, dict]:
    """One ``nudaq up --sim`` run: (no loss, pulses per wall second, summary)."""
    data_dir = Path(tempfile.mkdtemp(prefix="nql", dir="/tmp"))
    command = [sys.executable, "-m", "daq.cli", "up", "--sim", "--json"]
    command += ["--duration", str(wall_s * speed), "--speed", str(speed)]
    command += ["--data-dir", str(data_dir)]
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=wall_s + 180)
        if out.returncode != 0:
            return False, 0.0, {"error": out.stderr[-500:]}
        summary = json.loads(out.stdout)
        summary["run_wall_s"] = _run_wall_s(data_dir)
    except subprocess.TimeoutExpired:
        return False, 0.0, {"error": "timed out"}
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    rate = sum(summary["pulses"].values()) / summary["run_wall_s"]
    clean = sum(summary["lost"].values()) == 0 and not summary.get("eor_timeout")
    clean = clean and summary.get("missing_batches", 0) == 0
    return clean, rate, summary


def _step(speed: float, wall_s: float, rate: float, clean: bool, summary: dict) -> dict:
    return {
        "speed": speed,
        "planned_wall_s": wall_s,
        "run_wall_s": summary.get("run_wall_s"),
        "pulses_per_s": rate,
        "clean": clean,
        "lost": summary.get("lost"),
        "simulated_s": summary.get("elapsed_s"),
        "requested_simulated_s": wall_s * speed,
    }


def live_max_zero_loss(probe_s: float = 10.0, hold_s: float = 60.0, log=print) -> dict:
    """Probe the speeds, then hold the best; {"pulses_per_s", "speed", "steps"}."""
    steps = []
    clean_rates = {}
    for speed in SPEEDS:
        clean, rate, summary = _run(speed, probe_s)
        steps.append(_step(speed, probe_s, rate, clean, summary))
        log(f"live probe x{speed}: {rate:,.0f} pulses/s, {'no loss' if clean else 'LOSS'}")
        if not clean:
            break
        clean_rates[speed] = rate
    for speed in sorted(clean_rates, key=clean_rates.get, reverse=True):
        clean, rate, summary = _run(speed, hold_s)
        steps.append(_step(speed, hold_s, rate, clean, summary))
        log(f"live hold x{speed} for {hold_s:.0f} s: {rate:,.0f} pulses/s, clean={clean}")
        if clean:
            return {"pulses_per_s": rate, "speed": speed, "steps": steps}
    return {"pulses_per_s": 0.0, "speed": None, "steps": steps}
