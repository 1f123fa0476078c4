"""SQL reads behind the web API: each returns one API document (online.web.models).

Spectra are normalised by their own exposure, mass x live time, into counts/(kg keV day);
the ON-minus-OFF residual carries the expected magnetic-moment spectra of the latest live
analysis (best fit and 90 % CL limit) computed with online.analysis.mm_template.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from daq.core.config import Config
from daq.store.models import (
    Alarm,
    AnalysisHistory,
    Exposure,
    LogbookEntry,
    ReactorInterval,
    Run,
    SlowControlReading,
)
from daq.store.runs import by_quality
from daq.store.spectra import SpectrumSet, load_spectrum, select_runs
from online.analysis.live import LIVE_QUALITY
from online.analysis.template import MU_UNIT_MUB, mm_template
from online.web.models import (
    AlarmOut,
    AnalysisOut,
    AnalysisPoint,
    Curve,
    LogbookEntryOut,
    ResidualOut,
    RunOut,
    Series,
    SpectrumOut,
)

SECONDS_PER_DAY = 86400.0
SLOW_CONTROL_POINTS = 1000
"""Points per slow-control series on the trends page (averaged in time buckets)."""


def _rebin(edges: np.ndarray, counts: np.ndarray, factor: int, max_keV: float | None):
    """Merge ``factor`` neighbouring bins and cut at max_keV (a partial last group is dropped)."""
    n = len(counts)
    if max_keV is not None:
        n = min(n, int(np.searchsorted(edges, max_keV, side="left")))
    n -= n % factor
    merged = counts[:n].reshape(-1, factor).sum(axis=1)
    return edges[: n + 1 : factor], merged


def _with_exposure(session: Session, runs: list[Run], reactor: str | None) -> list[Run]:
    """The runs that have live time in this reactor state (any state if None)."""
    query = select(Exposure.run_id).where(
        Exposure.run_id.in_([r.id for r in runs]), Exposure.tag == "", Exposure.live_ns > 0
    )
    if reactor is not None:
        query = query.where(Exposure.reactor == reactor)
    taken = set(session.scalars(query))
    return [r for r in runs if r.id in taken]


def spectrum(
    session: Session,
    config: Config,
    reactor: str | None,
    category: str,
    runs_spec: str | None = None,
    exclude_bad: bool = False,
    rebin: int = 1,
    max_keV: float | None = None,
) -> SpectrumOut:
    """The summed spectrum of the selected runs that took data in this reactor state."""
    runs = _with_exposure(session, _select(session, runs_spec, exclude_bad), reactor)
    if runs:
        spec = load_spectrum(session, runs, reactor, category)
    else:
        n_bins = config.spectrum.n_bins
        edges = np.arange(n_bins + 1) * config.spectrum.bin_width_keV
        spec = SpectrumSet(edges, np.zeros(n_bins, np.int64), 0, [])
    edges, counts = _rebin(np.asarray(spec.bin_edges_keV), np.asarray(spec.counts), rebin, max_keV)
    exposure = config.detector.mass_kg * spec.live_ns / 1e9 / SECONDS_PER_DAY
    norm = exposure * np.diff(edges)
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = np.where(norm > 0, counts / norm, 0.0)
        error = np.where(norm > 0, np.sqrt(counts) / norm, 0.0)
    return SpectrumOut(
        reactor=reactor,
        category=category,
        runs=list(spec.runs),
        bin_edges_keV=edges.tolist(),
        counts=counts.astype(int).tolist(),
        live_time_s=spec.live_ns / 1e9,
        exposure_kg_day=exposure,
        rate_cpd=rate.tolist(),
        rate_cpd_error=error.tolist(),
    )


def _mean_on_power_MW(session: Session, runs: list[int]) -> float:
    """Time-weighted mean thermal power of the reactor-ON intervals of these runs (MW)."""
    duration = ReactorInterval.end_ns - ReactorInterval.start_ns
    weighted, total = session.execute(
        select(func.sum(ReactorInterval.power_MW * duration), func.sum(duration))
        .join(Run, Run.id == ReactorInterval.run_id)
        .where(Run.number.in_(runs), ReactorInterval.reactor == "on", ReactorInterval.tag == "")
    ).one()
    return float(weighted) / float(total) if total else 0.0


def residual(
    session: Session,
    config: Config,
    category: str,
    runs_spec: str | None = None,
    exclude_bad: bool = False,
    rebin: int = 5,
    max_keV: float | None = 100.0,
) -> ResidualOut:
    """ON minus OFF (cpd) with errors, and the MM curves of the latest analysis on its bins."""
    on = spectrum(session, config, "on", category, runs_spec, exclude_bad, rebin, max_keV)
    off = spectrum(session, config, "off", category, runs_spec, exclude_bad, rebin, max_keV)
    rate = np.asarray(on.rate_cpd) - np.asarray(off.rate_cpd)
    error = np.hypot(on.rate_cpd_error, off.rate_cpd_error)
    return ResidualOut(
        category=category,
        runs_on=on.runs,
        runs_off=off.runs,
        bin_edges_keV=on.bin_edges_keV,
        rate_cpd=rate.tolist(),
        rate_cpd_error=error.tolist(),
        curves=_mm_curves(session, config, np.asarray(on.bin_edges_keV), on.runs),
    )


def _mm_curves(session: Session, config: Config, edges: np.ndarray, runs_on: list[int]):
    """Best-fit and 90 % CL limit MM spectra (cpd) of the latest analysis, if there is one."""
    latest = session.scalars(
        select(AnalysisHistory).order_by(AnalysisHistory.time_utc.desc()).limit(1)
    ).first()
    power = _mean_on_power_MW(session, runs_on)
    if latest is None or power <= 0 or len(edges) < 2:
        return []
    lo = max(float(edges[0]), config.detector.threshold_keV)
    shown = edges[edges >= lo]
    if len(shown) < 2:
        return []
    resolution = (config.sim.resolution_a_keV, config.sim.resolution_b_keV)
    per_unit = mm_template(shown, power, config.sim.distance_m, resolution) / np.diff(shown)
    per_unit = np.concatenate([np.zeros(len(edges) - len(shown)), per_unit])
    curves = []
    if latest.mu_nu2_1e20 is not None:
        curves.append(
            Curve(
                label=f"best fit μ² = {latest.mu_nu2_1e20:.3g} × 10⁻²⁰ μB²",
                mu_nu2_1e20=latest.mu_nu2_1e20,
                rate_cpd=(latest.mu_nu2_1e20 * per_unit).tolist(),
            )
        )
    if latest.limit_90_muB is not None:
        mu2 = (latest.limit_90_muB / MU_UNIT_MUB) ** 2
        curves.append(
            Curve(
                label=f"90% CL limit μ < {latest.limit_90_muB:.2g} μB",
                mu_nu2_1e20=mu2,
                rate_cpd=(mu2 * per_unit).tolist(),
            )
        )
    return curves


def _point(row: AnalysisHistory) -> AnalysisPoint:
    return AnalysisPoint.model_validate(row, from_attributes=True)


def _select(session: Session, runs_spec: str | None, exclude_bad: bool) -> list[Run]:
    """Runs by spec (all if None), without those marked bad if asked."""
    runs = select_runs(session, runs_spec)
    return by_quality(runs, "usable") if exclude_bad else runs


def analysis(session: Session) -> AnalysisOut:
    """The latest live analysis and the runs it contains (online.analysis.live.LIVE_QUALITY)."""
    latest = session.scalars(
        select(AnalysisHistory).order_by(AnalysisHistory.time_utc.desc()).limit(1)
    ).first()
    return AnalysisOut(
        latest=_point(latest) if latest else None,
        runs=[r.number for r in by_quality(select_runs(session), LIVE_QUALITY)],
    )


def analysis_history(session: Session, limit: int = 5000) -> list[AnalysisPoint]:
    """The live analysis rows, oldest first."""
    rows = session.scalars(
        select(AnalysisHistory).order_by(AnalysisHistory.time_utc.desc()).limit(limit)
    ).all()
    return [_point(r) for r in reversed(rows)]


def slow_control(session: Session, hours: float) -> list[Series]:
    """Every slow-control quantity of the last ``hours``, averaged in the database into at
    most about SLOW_CONTROL_POINTS buckets of equal DAQ-clock time (so a request holds a
    thousand points, not hours of readings)."""
    since = datetime.now(UTC) - timedelta(hours=hours)
    recent = SlowControlReading.time_utc >= since
    lo, hi = session.execute(
        select(func.min(SlowControlReading.clock_ns), func.max(SlowControlReading.clock_ns)).where(
            recent
        )
    ).one()
    if lo is None:
        return []
    width_ns = (hi - lo) // SLOW_CONTROL_POINTS + 1
    bucket = (SlowControlReading.clock_ns - lo) // width_ns
    rows = session.execute(
        select(
            SlowControlReading.quantity,
            SlowControlReading.unit,
            func.min(SlowControlReading.time_utc),
            func.avg(SlowControlReading.value),
        )
        .where(recent)
        .group_by(SlowControlReading.quantity, SlowControlReading.unit, bucket)
        .order_by(SlowControlReading.quantity, bucket)
    ).all()
    series: dict[tuple[str, str], Series] = {}
    for quantity, unit, time_utc, value in rows:
        one = series.setdefault(
            (quantity, unit), Series(name=quantity, unit=unit, time_utc=[], values=[])
        )
        one.time_utc.append(time_utc)
        one.values.append(float(value))
    return list(series.values())


def alarms(session: Session, limit: int = 200) -> list[AlarmOut]:
    """Open alarms first, then the most recent cleared ones."""
    rows = session.scalars(
        select(Alarm).order_by(Alarm.cleared_utc.is_not(None), Alarm.raised_utc.desc()).limit(limit)
    )
    return [AlarmOut.model_validate(a, from_attributes=True) for a in rows]


def logbook(
    session: Session, q: str = "", run: int | None = None, limit: int = 200
) -> list[LogbookEntryOut]:
    """Logbook entries, newest first, whose text or author contains q (case-insensitive)."""
    query = select(LogbookEntry).order_by(LogbookEntry.time_utc.desc(), LogbookEntry.id.desc())
    if q:
        query = query.where(
            or_(
                LogbookEntry.text.icontains(q, autoescape=True),
                LogbookEntry.author.icontains(q, autoescape=True),
            )
        )
    if run is not None:
        query = query.where(LogbookEntry.run_number == run)
    rows = session.scalars(query.limit(limit))
    return [LogbookEntryOut.model_validate(e, from_attributes=True) for e in rows]


def runs(session: Session, limit: int = 500, number: int | None = None) -> list[RunOut]:
    """Runs (all, or the one numbered), newest first, with live time per reactor state and
    candidate events."""
    in_analysis = {r.number for r in by_quality(select_runs(session), LIVE_QUALITY)}
    exposure = (
        select(
            Exposure.run_id,
            func.sum(func.coalesce(Exposure.live_ns, 0)).filter(Exposure.reactor == "on"),
            func.sum(func.coalesce(Exposure.live_ns, 0)).filter(Exposure.reactor == "off"),
            func.sum(Exposure.events_candidate),
        )
        .where(Exposure.tag == "")
        .group_by(Exposure.run_id)
    )
    totals = {row[0]: row[1:] for row in session.execute(exposure)}
    out = []
    query = select(Run).order_by(Run.number.desc()).limit(limit)
    if number is not None:
        query = query.where(Run.number == number)
    for run in session.scalars(query):
        on_ns, off_ns, candidates = totals.get(run.id, (0, 0, 0))
        out.append(
            RunOut(
                number=run.number,
                state=run.state,
                started_utc=run.started_utc,
                stopped_utc=run.stopped_utc,
                comment=run.comment,
                quality=run.quality,
                quality_reason=run.quality_reason,
                live_time_on_s=int(on_ns or 0) / 1e9,
                live_time_off_s=int(off_ns or 0) / 1e9,
                events_candidate=int(candidates or 0),
                in_analysis=run.number in in_analysis,
            )
        )
    return out
