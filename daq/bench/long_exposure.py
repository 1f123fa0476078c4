"""The long-exposure simulator: how long the TEXONO exposure takes to produce.

``nudaq sim generate`` of 4712 h reactor ON and 1250 h OFF at the default setup into a
fresh SQLite database, through the fast-mode generator, event builder and spectrum filler
(hardware_sim.fastsim). The issue's target: a few minutes at most on 2 cores.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from ..config import Config

HOURS = {"on": 4712.0, "off": 1250.0}
"""Simulated hours per reactor state (the TEXONO 2007 exposure)."""
TARGET_S = 180.0


def generate_seconds() -> dict[str, float]:
    """Wall seconds to simulate HOURS of each reactor state (state -> seconds)."""
    from hardware_sim.fastsim import generate_runs
    from online.db.session import make_engine, upgrade_database

    from ..commands.up import SIM_POWER_ON_MW

    out = {}
    with tempfile.TemporaryDirectory(prefix="nqx") as work:
        engine = make_engine(f"sqlite:///{Path(work) / 'nudaq.sqlite'}")
        upgrade_database(engine)
        for state, hours in HOURS.items():
            start = time.perf_counter()
            generate_runs(engine, Config(), hours, SIM_POWER_ON_MW if state == "on" else 0.0)
            out[state] = time.perf_counter() - start
        engine.dispose()
    return out
