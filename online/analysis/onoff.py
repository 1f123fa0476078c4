"""The ON/OFF analysis of spectra already in memory: background level, mu_nu fit and limit.

Everything here takes numpy arrays and numbers, never SQL (online.analysis.inputs loads
them), so it is fast and testable. Units: energies keV, exposures kg day, background in cpd
(counts per kg keV day), mu_nu^2 in 1e-20 mu_B^2, mu_nu limits in mu_B. Efficiencies are
those of online.analysis.efficiency.

The mu_nu^2 fit (online.stats.fit) uses the window in 1 keV bins, the limit is the
Feldman-Cousins 90 % CL upper end for a Gaussian measurement bounded at zero, and the
expected limit is the median one for zero true signal at the measured (flat) background:
FC_up(0) sigma_Asimov = 1.645 sigma at 90 % CL.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from daq.core.errors import AnalysisError
from online import physics
from online.analysis.binning import DEFAULT_WINDOW_KEV, rebin, window_bins
from online.analysis.efficiency import Efficiencies, Measurement, efficiencies
from online.analysis.template import MU_UNIT_MUB, mm_template
from online.stats.feldman_cousins import fc_upper_limit
from online.stats.fit import FitResult, fc_limit, fit_mu_nu2, gaussian_sigma

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SpectrumInput:
    """One reactor state's candidate spectrum and the bookkeeping to normalise it.

    ``exposure_kg_day`` is mass x elapsed time before any dead-time correction;
    ``power_MW`` the exposure-weighted mean thermal power (0 for reactor OFF).
    """

    bin_edges_keV: np.ndarray
    counts: np.ndarray
    exposure_kg_day: float
    rt_expected: float
    rt_events: int
    rt_ac: int
    rt_crv: int
    rt_any: int
    power_MW: float = 0.0

    def efficiencies(self, what: str) -> Efficiencies:
        """Efficiencies from this input's RT counts."""
        return efficiencies(
            self.rt_expected, self.rt_events, self.rt_ac, self.rt_crv, self.rt_any, what
        )


def combined(inputs: Sequence[SpectrumInput]) -> SpectrumInput:
    """Inputs added up (both reactor states, say): counts, exposure and RT counts; the
    thermal power is the exposure-weighted mean. The binnings must agree."""
    if not inputs:
        raise AnalysisError("nothing to combine: no data")
    exposure = sum(p.exposure_kg_day for p in inputs)
    return SpectrumInput(
        bin_edges_keV=inputs[0].bin_edges_keV,
        counts=np.sum([p.counts for p in inputs], axis=0),
        exposure_kg_day=exposure,
        rt_expected=sum(p.rt_expected for p in inputs),
        rt_events=sum(p.rt_events for p in inputs),
        rt_ac=sum(p.rt_ac for p in inputs),
        rt_crv=sum(p.rt_crv for p in inputs),
        rt_any=sum(p.rt_any for p in inputs),
        power_MW=sum(p.power_MW * p.exposure_kg_day for p in inputs) / exposure
        if exposure > 0
        else 0.0,
    )


def background_level(
    counts_in_window: float, exposure_kg_day: float, eff: Efficiencies, width_keV: float
) -> Measurement:
    """Efficiency-corrected candidate rate (cpd) in a window with its Poisson error (the
    error of zero counts is taken as that of one count)."""
    if exposure_kg_day <= 0:
        raise AnalysisError(f"exposure must be positive, got {exposure_kg_day:g} kg day")
    if width_keV <= 0:
        raise AnalysisError("empty energy window")
    norm = exposure_kg_day * eff.total * width_keV
    return Measurement(counts_in_window / norm, float(np.sqrt(max(counts_in_window, 1))) / norm)


@dataclass(frozen=True)
class LimitResult:
    """Fit, Feldman-Cousins interval and expected limit, in 1e-20 mu_B^2 unless in mu_B."""

    fit: FitResult
    interval: tuple[float, float]
    expected_sigma: float
    cl: float

    @property
    def limit_mu_nu2(self) -> float:
        return self.interval[1]

    @property
    def limit_muB(self) -> float:
        return float(np.sqrt(self.interval[1]) * MU_UNIT_MUB)

    @property
    def expected_limit_mu_nu2(self) -> float:
        return float(fc_upper_limit(0.0, self.cl)) * self.expected_sigma

    @property
    def expected_limit_muB(self) -> float:
        return float(np.sqrt(self.expected_limit_mu_nu2) * MU_UNIT_MUB)


def mu_nu2_limit(
    n_on: np.ndarray,
    n_off: np.ndarray,
    e_on: float,
    e_off: float,
    signal: np.ndarray,
    widths_keV: np.ndarray,
    cl: float = 0.9,
) -> LimitResult:
    """Fit mu_nu^2, its FC interval and the expected (median, zero-signal) limit at the
    measured flat background level (ON and OFF pooled, bins ``widths_keV`` wide).
    Exposures are efficiency-corrected kg day."""
    try:
        fit = fit_mu_nu2(n_on, n_off, e_on, e_off, signal)
        interval = fc_limit(fit.mu_nu2, fit.error, cl)
    except (ValueError, ArithmeticError) as err:
        raise AnalysisError(f"mu_nu fit failed: {err}") from None
    total = float(np.sum(n_on) + np.sum(n_off))
    if total <= 0:
        raise AnalysisError("no candidate events in the window: the background is unknown")
    widths = np.asarray(widths_keV, float)
    share = total / (e_on + e_off) * widths / widths.sum()
    return LimitResult(fit, interval, gaussian_sigma(signal, share, e_on, e_off), cl)


@dataclass
class AnalysisResult:
    """What ``nudaq analysis`` reports; ``to_json`` is its documented JSON object."""

    window_keV: tuple[float, float]
    exposure_on: float
    exposure_off: float
    eff_on: Efficiencies
    eff_off: Efficiencies
    eff_all: Efficiencies
    background: Measurement
    background_on: Measurement
    limit: LimitResult
    power_MW: float
    distance_m: float
    fit_edges_keV: np.ndarray = field(repr=False)
    rate_on: np.ndarray = field(repr=False)
    rate_off: np.ndarray = field(repr=False)
    error_on: np.ndarray = field(repr=False)
    error_off: np.ndarray = field(repr=False)
    signal: np.ndarray = field(repr=False)
    """Per fit bin: corrected rates and errors (cpd) and the MM template (cpd at 1e-20)."""

    def mm_sm_ratio_at_limit(self) -> float:
        """MM/SM rate ratio in the window at the 90 % CL limit."""
        return physics.mm_sm_ratio(
            self.limit.limit_muB / MU_UNIT_MUB, self.window_keV, self.power_MW, self.distance_m
        )

    def history_fields(self) -> dict:
        """The columns of an ``analysis_history`` row (daq.store.models.AnalysisHistory)."""
        return {
            "exposure_on_kg_day": self.exposure_on,
            "exposure_off_kg_day": self.exposure_off,
            "background_cpd": self.background.value,
            "background_cpd_error": self.background.error,
            "mu_nu2_1e20": self.limit.fit.mu_nu2,
            "mu_nu2_1e20_error": self.limit.fit.error,
            "limit_90_muB": self.limit.limit_muB,
            "expected_limit_90_muB": self.limit.expected_limit_muB,
            "live_fraction": self.eff_all.live_fraction.value,
            "accidental_ac": self.eff_all.accidental_ac.value,
            "accidental_crv": self.eff_all.accidental_crv.value,
        }

    def to_json(self) -> dict:
        fit = self.limit.fit
        return {
            "window_keV": list(self.window_keV),
            "exposure_kg_day": {"on": self.exposure_on, "off": self.exposure_off},
            "background_cpd": self.background.to_json(),
            "background_on_cpd": self.background_on.to_json(),
            "mu_nu2_1e-20": {"value": fit.mu_nu2, "error": fit.error},
            "mu_nu2_interval_90_1e-20": list(self.limit.interval),
            "limit_90_muB": self.limit.limit_muB,
            "expected_limit_90_muB": self.limit.expected_limit_muB,
            "expected_sigma_mu_nu2_1e-20": self.limit.expected_sigma,
            "fit_deviance": {"value": fit.deviance, "ndof": fit.ndof},
            "live_fraction": self.eff_all.live_fraction.value,
            "accidental_veto": {
                "ac": self.eff_all.accidental_ac.value,
                "crv": self.eff_all.accidental_crv.value,
            },
            "efficiencies": {"on": self.eff_on.to_json(), "off": self.eff_off.to_json()},
            "power_MW": self.power_MW,
            "distance_m": self.distance_m,
            "mm_sm_ratio_at_limit": self.mm_sm_ratio_at_limit(),
        }


def _check_input(spec: SpectrumInput, what: str) -> None:
    if not np.isfinite(spec.exposure_kg_day) or spec.exposure_kg_day < 0:
        raise AnalysisError(f"{what}: negative exposure ({spec.exposure_kg_day:g} kg day)")
    if spec.exposure_kg_day == 0:
        raise AnalysisError(f"no {what} data: zero exposure")
    counts = np.asarray(spec.counts)
    if counts.shape != (len(spec.bin_edges_keV) - 1,) or np.any(counts < 0):
        raise AnalysisError(f"{what}: counts must be non-negative, one per bin")


def analyse(
    on: SpectrumInput,
    off: SpectrumInput,
    window_keV: tuple[float, float] = DEFAULT_WINDOW_KEV,
    distance_m: float = 28.0,
    resolution_keV: tuple[float, float] | None = None,
    cl: float = 0.9,
) -> AnalysisResult:
    """The full ON/OFF analysis: efficiencies, background level, mu_nu^2 fit, FC limit and
    expected limit. ``resolution_keV = (a, b)`` folds FWHM = sqrt(a^2 + b E) into the MM
    template. Invalid input raises AnalysisError with the reason."""
    _check_input(on, "reactor ON")
    _check_input(off, "reactor OFF")
    if not np.allclose(on.bin_edges_keV, off.bin_edges_keV):
        raise AnalysisError("ON and OFF spectra have different binnings")
    if on.power_MW <= 0:
        raise AnalysisError("reactor ON data with zero thermal power: no expected signal")
    if distance_m <= 0:
        raise AnalysisError(f"distance must be positive, got {distance_m:g} m")
    eff_on = on.efficiencies("reactor ON")
    eff_off = off.efficiencies("reactor OFF")
    eff_all = combined([on, off]).efficiencies("reactor ON and OFF")
    fit_edges, index = window_bins(on.bin_edges_keV, window_keV)
    n_fit = len(fit_edges) - 1
    n_on = rebin(on.counts, index, n_fit)
    n_off = rebin(off.counts, index, n_fit)
    width = fit_edges[-1] - fit_edges[0]
    e_on = on.exposure_kg_day * eff_on.total
    e_off = off.exposure_kg_day * eff_off.total
    signal = mm_template(fit_edges, on.power_MW, distance_m, resolution_keV)
    widths = np.diff(fit_edges)
    limit = mu_nu2_limit(n_on, n_off, e_on, e_off, signal, widths, cl)
    result = AnalysisResult(
        window_keV=(float(fit_edges[0]), float(fit_edges[-1])),
        exposure_on=on.exposure_kg_day * eff_on.live_fraction.value,
        exposure_off=off.exposure_kg_day * eff_off.live_fraction.value,
        eff_on=eff_on,
        eff_off=eff_off,
        eff_all=eff_all,
        background=background_level(float(n_off.sum()), off.exposure_kg_day, eff_off, width),
        background_on=background_level(float(n_on.sum()), on.exposure_kg_day, eff_on, width),
        limit=limit,
        power_MW=on.power_MW,
        distance_m=distance_m,
        fit_edges_keV=fit_edges,
        rate_on=n_on / e_on / widths,
        rate_off=n_off / e_off / widths,
        error_on=np.sqrt(np.maximum(n_on, 1)) / e_on / widths,
        error_off=np.sqrt(np.maximum(n_off, 1)) / e_off / widths,
        signal=signal / widths,
    )
    _require_finite(result.to_json())
    return result


def _require_finite(obj, key: str = "") -> None:
    """AnalysisError rather than a NaN or infinity anywhere in the output."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            _require_finite(v, f"{key}.{k}" if key else k)
    elif isinstance(obj, list | tuple):
        for i, v in enumerate(obj):
            _require_finite(v, f"{key}[{i}]")
    elif isinstance(obj, float) and not np.isfinite(obj):
        raise AnalysisError(f"analysis produced a non-finite {key}; the data cannot support it")
