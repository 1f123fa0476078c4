"""Spectra and the live analysis: summed spectra, the ON-OFF residual, results and history."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from daq.store.session import session_scope
from online.web import queries
from online.web.deps import ConfigDep, EngineDep, LiveDep
from online.web.models import (
    AnalysisOut,
    CategoryName,
    HistoryOut,
    Reactor,
    ResidualOut,
    SpectrumOut,
)

RunsSpec = Annotated[str | None, Query(description="run numbers such as 3-7,9")]
ExcludeBad = Annotated[bool, Query(description="leave out runs marked bad")]

router = APIRouter()


@router.get("/api/spectra", response_model=SpectrumOut, tags=["spectra"])
def spectra(
    config: ConfigDep,
    engine: EngineDep,
    reactor: Reactor | None = None,
    category: CategoryName = "all",
    runs: RunsSpec = None,
    exclude_bad: ExcludeBad = False,
    rebin: Annotated[int, Query(ge=1, le=500, description="bins merged")] = 1,
    max_keV: Annotated[float | None, Query(gt=0)] = None,
) -> SpectrumOut:
    """A spectrum summed over runs: counts and cpd per bin (both states if no reactor)."""
    with session_scope(engine, readonly=True) as session:
        return queries.spectrum(
            session, config, reactor, category, runs, exclude_bad, rebin, max_keV
        )


@router.get("/api/residual", response_model=ResidualOut, tags=["spectra"])
def residual(
    config: ConfigDep,
    engine: EngineDep,
    category: CategoryName = "candidate",
    runs: RunsSpec = None,
    exclude_bad: ExcludeBad = False,
    rebin: Annotated[int, Query(ge=1, le=500)] = 5,
    max_keV: Annotated[float, Query(gt=0)] = 100.0,
) -> ResidualOut:
    """ON minus OFF (cpd) with the fitted and 90 % CL limit MM spectra."""
    with session_scope(engine, readonly=True) as session:
        return queries.residual(session, config, category, runs, exclude_bad, rebin, max_keV)


@router.get("/api/analysis", response_model=AnalysisOut, tags=["analysis"])
def analysis(engine: EngineDep) -> AnalysisOut:
    """The latest live analysis result and the runs it is built from (good or unchecked)."""
    with session_scope(engine, readonly=True) as session:
        return queries.analysis(session)


@router.get("/api/history", response_model=HistoryOut, tags=["analysis"])
def history(
    engine: EngineDep,
    live: LiveDep,
    hours: Annotated[float, Query(gt=0, le=24 * 365, description="slow-control span")] = 6.0,
) -> HistoryOut:
    """Analysis history (background, sensitivity vs time and exposure), slow control
    of the last ``hours``, and the live rates since the server started."""
    with session_scope(engine, readonly=True) as session:
        return HistoryOut(
            analysis=queries.analysis_history(session),
            slow_control=queries.slow_control(session, hours),
            rates=live.rate_series(),
        )
