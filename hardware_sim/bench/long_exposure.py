"""The long-exposure simulator and the analysis of its runs: how long each takes.

``nudaq sim generate`` of 4712 h reactor ON and 1250 h OFF at the default setup into a
fresh SQLite database, through the fast-mode generator, event builder and spectrum filler
(hardware_sim.fastsim); then ``nudaq analysis`` of all those runs (248 daily runs, the
TEXONO exposure). The issue's targets: a few minutes at most, and seconds.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from daq.core.config import KUO_SHENG_POWER_MW, Config

HOURS = {"on": 4712.0, "off": 1250.0}
"""Simulated hours per reactor state (the TEXONO 2007 exposure)."""
GENERATE_TARGET_S = 180.0
ANALYSIS_TARGET_S = 10.0


def generate_and_analyse() -> dict:
    """Wall seconds to simulate HOURS of each reactor state ({"on", "off"}), to analyse all
    the runs ("analysis"), and the number of runs ("runs")."""
    from daq.store.session import make_engine, session_scope, upgrade_database
    from hardware_sim.fastsim import generate_runs
    from online.analysis.inputs import analyse_runs

    out: dict = {}
    with tempfile.TemporaryDirectory(prefix="nqx") as work:
        engine = make_engine(f"sqlite:///{Path(work) / 'nudaq.sqlite'}")
        upgrade_database(engine)
        for state, hours in HOURS.items():
            start = time.perf_counter()
            generate_runs(engine, Config(), hours, KUO_SHENG_POWER_MW if state == "on" else 0.0)
            out[state] = time.perf_counter() - start
        start = time.perf_counter()
        with session_scope(engine, readonly=True) as session:
            inputs, _ = analyse_runs(session)
        out["analysis"] = time.perf_counter() - start
        out["runs"] = len(inputs.runs)
        engine.dispose()
    return out
