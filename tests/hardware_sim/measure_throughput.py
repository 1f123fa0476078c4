"""Measure how many pulses per wall second the simulated front-ends deliver over TCP.

Not a test (it takes a while and its result is a number, not a pass/fail): run

    .venv/bin/python tests/hardware_sim/measure_throughput.py [--rate-hz 1000] [--speed 300]

It starts ``python -m hardware_sim`` as a real process with every stream at ``rate-hz``
simulated pulses per second (HPGe through its random triggers, CONF RTRATE), reads all three
streams at once with the real driver (daq.drivers.listmode) and prints pulses per wall second
per stream, with the decoder's error counts (all must be 0).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from daq.core.config import Config
from daq.drivers.listmode import FrontendDriver


def read_stream(url: str, seconds: float, rt_rate_hz: float | None, out: dict) -> None:
    drv = FrontendDriver(url)
    if rt_rate_hz is not None:
        drv.configure(rtrate=rt_rate_hz)
    drv.configure(frame_ms=20)
    t_start = drv.start()
    wall0 = time.monotonic()
    pulses = 0
    while time.monotonic() - wall0 < seconds:
        pulses += sum(len(f.pulses) for f in drv.read_frames(0.05))
    rest, end = drv.stop()
    pulses += sum(len(f.pulses) for f in rest)
    wall = time.monotonic() - wall0
    out[url] = (pulses, wall, (end.watermark_ns - t_start) * 1e-9, drv.stats)
    drv.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rate-hz", type=float, default=1000.0, help="simulated rate per stream")
    p.add_argument("--speed", type=float, default=300.0)
    p.add_argument("--seconds", type=float, default=5.0, help="wall seconds of reading")
    p.add_argument("--no-truth", action="store_true", help="do not write the truth file")
    args = p.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="nqthr"))
    config = Config()
    config.sim.acv_singles_hz = args.rate_hz
    config.sim.crv_singles_hz = args.rate_hz
    config.sim.speed = args.speed
    config.sim.truth = not args.no_truth
    cfg = data_dir / "config.json"
    cfg.write_text(config.snapshot())
    sim = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "daq.processes",
            "sim",
            "--config",
            str(cfg),
            "--data-dir",
            str(data_dir),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        urls = json.loads(sim.stdout.readline())
        results: dict = {}
        threads = [
            threading.Thread(
                target=read_stream,
                args=(urls[name], args.seconds, args.rate_hz if name == "hpge" else None, results),
            )
            for name in ("hpge", "acv", "crv")
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for name in ("hpge", "acv", "crv"):
            pulses, wall, sim_s, stats = results[urls[name]]
            print(
                f"{name:5s} {pulses / wall:10.0f} pulses/s wall ({pulses} pulses,"
                f" {wall:.2f} s wall, {sim_s:.0f} s simulated) crc={stats.crc_errors}"
                f" bad={stats.bad_headers} missing={stats.missing_frames}"
                f" skipped={stats.skipped_bytes}"
            )
    finally:
        sim.terminate()
        sim.wait(30)
    print(f"simulator exit code {sim.returncode}; data in {data_dir}")


if __name__ == "__main__":
    main()
