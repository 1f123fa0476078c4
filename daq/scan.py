"""Window scans: one replay pass, several settings of one key, one SQL tag per setting.

``nudaq replay ... --scan builder.ac_window_ns=500,1000,2000`` builds the same batches under
each value (daq.builder variants) and stores each under the tag ``<tag>:<key>=<value>``.
``scan_figures`` then reads back what an analyst compares between settings, with the
online analysis' own functions (online.analysis): the candidate rate, the accidental-veto
probability measured with random triggers, and the efficiency-corrected background level
in the analysis window.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sqlalchemy import select

from online.db.models import Exposure
from online.db.session import session_scope
from online.spectra import select_runs

from .config import Config
from .errors import AnalysisError, ConfigError
from .update import REACTOR_STATES
from .variants import parse_value, with_overrides


@dataclass(frozen=True)
class Scan:
    """A dotted configuration key and the values to build it with."""

    key: str
    values: list[object]

    def tag(self, base: str, value: object) -> str:
        """The SQL tag of one setting."""
        return f"{base}:{self.key}={value}"

    def variants(self, base: str) -> list[dict]:
        """The builder's variants ({"tag", "overrides"}), one per value."""
        return [{"tag": self.tag(base, v), "overrides": {self.key: v}} for v in self.values]


def parse_scan(text: str, config: Config) -> Scan:
    """``KEY=V1,V2,...`` checked against the configuration schema (ConfigError if wrong)."""
    key, sep, values = text.partition("=")
    parsed = [parse_value(v.strip()) for v in values.split(",") if v.strip()]
    if not sep or not key.strip() or not parsed:
        raise ConfigError(f"--scan {text!r}: expected KEY=V1,V2,... (builder.ac_window_ns=500)")
    if len({str(v) for v in parsed}) != len(parsed):
        raise ConfigError(f"--scan {text!r}: a value is given twice")
    for value in parsed:
        with_overrides(config, {key.strip(): value})
    return Scan(key.strip(), parsed)


def _combined(inputs: dict) -> dict:
    """Both reactor states' analysis inputs added up (counts, exposure, RT counts)."""
    parts = list(inputs.values())
    total = {
        name: sum(getattr(p, name) for p in parts)
        for name in ("exposure_kg_day", "rt_expected", "rt_events", "rt_ac", "rt_crv", "rt_any")
    }
    total["counts"] = np.sum([p.counts for p in parts], axis=0)
    total["bin_edges_keV"] = parts[0].bin_edges_keV
    return total


def scan_figures(engine, run: int, tag: str, window_keV: tuple[float, float]) -> dict:
    """Candidate rate (Hz of live time), accidental-veto probabilities (RT) and background
    level (cpd, efficiency corrected, in ``window_keV``) of one run under one tag.

    Figures that cannot be had (no random triggers, an empty window) are None, and
    ``note`` says why.
    """
    # imported here: the analysis needs scipy, ~1 s of start-up every replay would pay
    from online.analysis import background_level, efficiencies, window_bins
    from online.analysis_db import state_inputs

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
            total = _combined(state_inputs(session, runs, tag))
            eff = efficiencies(
                total["rt_expected"],
                total["rt_events"],
                total["rt_ac"],
                total["rt_crv"],
                total["rt_any"],
                f"run {run} tag {tag}",
            )
            out["accidental_veto"] = eff.to_json()["accidental_veto"]
            _, index = window_bins(total["bin_edges_keV"], window_keV)
            in_window = float(np.asarray(total["counts"])[index >= 0].sum())
            level = background_level(
                in_window, total["exposure_kg_day"], eff, window_keV[1] - window_keV[0]
            )
            out["background_cpd"] = level.to_json()
            out["window_keV"] = list(window_keV)
        except AnalysisError as err:
            out["note"] = str(err)
    return out
