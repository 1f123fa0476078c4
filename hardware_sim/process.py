"""The simulated crate as a process (service ``sim``): serves until SIGTERM or SIGINT.

Prints exactly one JSON line on stdout, ``{"hpge": URL, "acv": URL, "crv": URL,
"slowcontrol": URL, "clock_t0_ns": int}``, then serves; exits 0 after closing the lines and
flushing the ground truth. ``--reactor on|off`` replaces the reactor schedule by a constant
state (daq.core.config.Sim.hold_reactor).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from daq.core.config import load_config
from daq.core.errors import NudaqError
from daq.core.paths import data_dir as resolve_data_dir
from daq.processes.common import StopFlag, setup_logging
from hardware_sim.crate import SimCrate


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m daq.processes sim", description="Simulated nudaq hardware on ttys or TCP."
    )
    p.add_argument("--config", type=Path, help="TOML configuration or JSON snapshot")
    p.add_argument("--data-dir", type=Path, help="data directory (ground truth in sim/)")
    p.add_argument("--speed", type=float, help="simulated seconds per wall second")
    p.add_argument("--transport", choices=("tcp", "pty"), help="device lines")
    p.add_argument("--reactor", choices=("on", "off"), help="constant reactor power")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        config = load_config(args.config)
        if args.speed is not None:
            config.sim.speed = args.speed
        if args.transport:
            config.sim.transport = args.transport
        if args.reactor:
            config.sim.hold_reactor(args.reactor)
    except (NudaqError, ValueError) as err:
        print(f"hardware_sim: error: {err}", file=sys.stderr)
        return 2
    data_dir = resolve_data_dir(args.data_dir)
    setup_logging("sim", data_dir)
    stop = StopFlag()
    crate = SimCrate(config, data_dir)
    try:
        print(json.dumps({**crate.urls, "clock_t0_ns": crate.t0_ns}), flush=True)
        crate.run(lambda: bool(stop))
    finally:
        crate.close()
    return 0
