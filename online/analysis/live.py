"""The live analysis: one ``analysis_history`` row per call, what the shifter watches grow.

The monitor (online.monitoring.monitor) calls :func:`record_live_analysis` every
``analysis.interval_s`` while a run is going. It analyses every usable run (good or not yet checked:
not marked bad), the running one included (the filler commits its spectra and exposure as they
come), since the running run cannot have been judged yet. When the full ON/OFF analysis is not
possible yet (typically: no reactor-OFF data), the row still gets the exposures, the live fraction
and accidental veto probabilities from the random triggers, and the background level (from OFF data,
else from ON data), with the fit columns left empty.
"""

from __future__ import annotations

import logging

from sqlalchemy import Engine

from daq.core.config import Config
from daq.core.errors import AnalysisError
from daq.store.models import AnalysisHistory
from daq.store.runs import by_quality
from daq.store.session import session_scope
from daq.store.spectra import select_runs
from online.analysis.binning import window_bins
from online.analysis.inputs import analyse_runs, state_inputs
from online.analysis.onoff import background_level, combined

log = logging.getLogger(__name__)

LIVE_QUALITY = "usable"  # daq.store.runs.QUALITY_SELECTIONS


def _partial_fields(session, window_keV: tuple[float, float]) -> dict:
    """History columns available without a full ON/OFF analysis."""
    runs = by_quality(select_runs(session), LIVE_QUALITY)
    inputs = state_inputs(session, runs) if runs else {}
    fields = {
        "exposure_on_kg_day": 0.0,
        "exposure_off_kg_day": 0.0,
    }
    if not inputs:
        return fields
    measured = []
    for state, spec in inputs.items():
        try:
            eff = spec.efficiencies(f"reactor {state.upper()}")
        except AnalysisError as err:
            log.info("live analysis: %s", err)
            continue
        fields[f"exposure_{state}_kg_day"] = spec.exposure_kg_day * eff.live_fraction.value
        measured.append(spec)
    if measured:
        eff_all = combined(measured).efficiencies("reactor ON and OFF")
        fields["live_fraction"] = eff_all.live_fraction.value
        fields["accidental_ac"] = eff_all.accidental_ac.value
        fields["accidental_crv"] = eff_all.accidental_crv.value
    spec = inputs.get("off") or inputs["on"]
    try:
        edges, index = window_bins(spec.bin_edges_keV, window_keV)
        level = background_level(
            float(spec.counts[index >= 0].sum()),
            spec.exposure_kg_day,
            spec.efficiencies("background"),
            edges[-1] - edges[0],
        )
        fields["background_cpd"] = level.value
        fields["background_cpd_error"] = level.error
    except AnalysisError as err:
        log.info("live analysis: no background level yet: %s", err)
    return fields


def record_live_analysis(engine: Engine, config: Config, run_number: int | None) -> dict:
    """Analyse the stored runs and append one ``analysis_history`` row; returns its columns."""
    window = tuple(config.analysis.window_keV)
    with session_scope(engine, readonly=True) as session:
        try:
            _, result = analyse_runs(session, quality=LIVE_QUALITY, window_keV=window)
            fields = result.history_fields()
        except AnalysisError as err:
            log.info("live analysis: full ON/OFF analysis not possible yet: %s", err)
            fields = _partial_fields(session, window)
    fields = {k: float(v) for k, v in fields.items()}
    with session_scope(engine) as session:
        session.add(AnalysisHistory(run_number=run_number, **fields))
    return fields
