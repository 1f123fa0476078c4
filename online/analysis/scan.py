"""The figures of a replay scan (``nudaq replay --scan``), read back from SQL per tag.

A scan (daq.replay.scan) builds the same batches under several values of one key and stores
each under its own tag; these are what an analyst compares between the settings, computed
with the analysis's own functions: the candidate rate, the accidental-veto probability
measured with random triggers, and the efficiency-corrected background level in the
analysis window.
"""

from __future__ import annotations

import json

import numpy as np
from sqlalchemy import select

from daq.build.increments import REACTOR_STATES
from daq.core.config import parse_config
from daq.core.errors import AnalysisError
from daq.replay.runner import ReplayOptions, ReplayResult
from daq.store.models import Exposure
from daq.store.runs import get_run
from daq.store.session import make_engine, session_scope
from daq.store.spectra import select_runs
from online.analysis.binning import window_bins
from online.analysis.inputs import state_inputs
from online.analysis.onoff import background_level, combined


def scan_figures(engine, run: int, tag: str, window_keV: tuple[float, float]) -> dict:
    """Candidate rate (Hz of live time), accidental-veto probabilities (RT) and background
    level (cpd, efficiency corrected, in ``window_keV``) of one run under one tag.

    Figures that cannot be had (no random triggers, an empty window) are None, and
    ``note`` says why.
    """
    out: dict = {"tag": tag, "candidate_rate_hz": None, "accidental_veto": None}
    out["background_cpd"] = None
    with session_scope(engine, readonly=True) as session:
        runs = select_runs(session, str(run), tag=tag)
        if not runs:
            return {**out, "note": f"no results under tag {tag!r}"}
        rows = session.execute(
            select(Exposure).where(Exposure.run_id == runs[0].id, Exposure.tag == tag)
        ).scalars()
        by_state = {e.reactor: e for e in rows}
        live_ns = sum(by_state[s].live_ns for s in REACTOR_STATES if s in by_state)
        candidates = sum(by_state[s].events_candidate for s in REACTOR_STATES if s in by_state)
        out["candidates"] = candidates
        out["live_time_s"] = live_ns / 1e9
        out["candidate_rate_hz"] = candidates / (live_ns / 1e9) if live_ns > 0 else None
        try:
            total = combined(list(state_inputs(session, runs, tag).values()))
            eff = total.efficiencies(f"run {run} tag {tag}")
            out["accidental_veto"] = eff.to_json()["accidental_veto"]
            _, index = window_bins(total.bin_edges_keV, window_keV)
            in_window = float(np.asarray(total.counts)[index >= 0].sum())
            level = background_level(
                in_window, total.exposure_kg_day, eff, window_keV[1] - window_keV[0]
            )
            out["background_cpd"] = level.to_json()
            out["window_keV"] = list(window_keV)
        except AnalysisError as err:
            out["note"] = str(err)
    return out


def add_scan_figures(results: list[ReplayResult], options: ReplayOptions) -> None:
    """Fill each scanned replay result's rows ({"value", "tag"}) with that tag's figures, in
    the analysis window of the configuration replayed with (the recorded one by default)."""
    engine = make_engine(options.db_url)
    try:
        for result in results:
            config = options.config
            if config is None:
                with session_scope(engine, readonly=True) as session:
                    run = get_run(session, result.run)
                    config = parse_config(json.loads(run.config_json), f"run {run.number}")
            window = tuple(config.analysis.window_keV)
            result.scan = [
                {**row, **scan_figures(engine, result.run, row["tag"], window)}
                for row in result.scan
            ]
    finally:
        engine.dispose()
