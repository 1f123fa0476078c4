"""Online analysis on spectra already in memory: efficiencies, background, mu_nu fit, limit.

Everything here takes numpy arrays and numbers, never SQL (``online.commands.analysis``
loads them), so it is fast and testable. Units: energies keV, exposures kg day, background
in cpd (counts per kg keV day), mu_nu^2 in 1e-20 mu_B^2, mu_nu limits in mu_B.

Efficiencies come from the random-trigger (RT) events that the ADC injects at a known rate:
    live fraction     f = RT recorded / RT expected (rate x elapsed time), Poisson error
                      sqrt(RT recorded) / RT expected (the injected number is itself Poisson,
                      so f may exceed 1 by a fluctuation),
    accidental veto   P_ac = RT with AC tag / RT recorded, P_crv likewise, P_any for either,
                      each with a binomial error.
The efficiency-corrected candidate spectrum is raw / ((1 - P_any) f), and the exposure the
fit sees is (mass x elapsed) f (1 - P_any).

The mu_nu^2 fit (``online.fit``) uses the window in 1 keV bins, the limit is the
Feldman-Cousins 90 % CL upper end for a Gaussian measurement bounded at zero, and the
expected limit is the median one for zero true signal at the measured (flat) background:
FC_up(0) sigma_Asimov = 1.645 sigma at 90 % CL.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from daq.errors import AnalysisError

from . import physics
from .feldman_cousins import fc_upper_limit
from .fit import FitResult, fc_limit, fit_mu_nu2, gaussian_sigma

log = logging.getLogger(__name__)

DEFAULT_WINDOW_KEV = (12.0, 60.0)
FIT_BIN_KEV = 1.0
MU_UNIT_MUB = 1e-10
"""mu_nu is fitted as mu_nu^2 in (1e-10 mu_B)^2 = 1e-20 mu_B^2."""


@dataclass(frozen=True)
class Measurement:
    """A value with its 1-sigma error."""

    value: float
    error: float

    def to_json(self) -> dict:
        return {"value": self.value, "error": self.error}


@dataclass(frozen=True)
class Efficiencies:
    """DAQ live fraction and accidental veto probabilities measured with random triggers."""

    live_fraction: Measurement
    accidental_ac: Measurement
    accidental_crv: Measurement
    accidental_any: Measurement

    @property
    def total(self) -> float:
        """Fraction of true candidates that end up in the candidate spectrum."""
        return self.live_fraction.value * (1.0 - self.accidental_any.value)

    def to_json(self) -> dict:
        return {
            "live_fraction": self.live_fraction.to_json(),
            "accidental_veto": {
                "ac": self.accidental_ac.to_json(),
                "crv": self.accidental_crv.to_json(),
                "any": self.accidental_any.to_json(),
            },
        }


def _binomial(k: float, n: float) -> Measurement:
    p = k / n
    return Measurement(p, float(np.sqrt(max(p * (1 - p), 0.0) / n)))


def efficiencies(
    rt_expected: float, rt_events: int, rt_ac: int, rt_crv: int, rt_any: int, what: str = "data"
) -> Efficiencies:
    """Live fraction and accidental veto probabilities from RT counts (binomial errors).

    ``rt_expected``: random triggers injected (sum of rate x elapsed time over the runs);
    ``rt_events``: RT events recorded, ``rt_ac``/``rt_crv``/``rt_any``: of which tagged by
    the AC veto, the CRV, either. ``what`` names the data in error messages.
    """
    if rt_expected <= 0:
        raise AnalysisError(
            f"{what}: no random triggers were injected (frontends.hpge.rt_rate_hz = 0 or no "
            "elapsed time), so the live fraction and accidental vetoes cannot be measured"
        )
    if rt_events <= 0:
        raise AnalysisError(
            f"{what}: no random-trigger events recorded out of {rt_expected:.1f} injected"
        )
    if not 0 <= rt_ac <= rt_events or not 0 <= rt_crv <= rt_events:
        raise AnalysisError(f"{what}: RT veto counts exceed the RT events ({rt_events})")
    if not max(rt_ac, rt_crv) <= rt_any <= rt_ac + rt_crv:
        raise AnalysisError(
            f"{what}: RT counts inconsistent: any={rt_any}, ac={rt_ac}, crv={rt_crv}"
        )
    if rt_any >= rt_events:
        raise AnalysisError(f"{what}: every random trigger was vetoed; no candidate acceptance")
    # The ADC injects a Poisson number of random triggers (rt_expected is its mean, not a
    # count) and records a thinned Poisson number of them: the error is Poisson, not binomial.
    live = Measurement(rt_events / rt_expected, float(np.sqrt(rt_events)) / rt_expected)
    return Efficiencies(
        live,
        _binomial(rt_ac, rt_events),
        _binomial(rt_crv, rt_events),
        _binomial(rt_any, rt_events),
    )


def corrected_spectrum(counts: np.ndarray, eff: Efficiencies) -> tuple[np.ndarray, np.ndarray]:
    """Efficiency-corrected candidate counts raw / ((1 - P_any) f) and their Poisson errors."""
    counts = np.asarray(counts, float)
    return counts / eff.total, np.sqrt(counts) / eff.total


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


def window_bins(
    edges_keV: np.ndarray, window_keV: tuple[float, float], width_keV: float = FIT_BIN_KEV
) -> tuple[np.ndarray, np.ndarray]:
    """Fit-bin edges (``width_keV`` wide, the last may be narrower) over the window, and for
    every stored bin the index of the fit bin that contains it (-1 outside the window).

    The window must start and end on stored bin edges, so no stored bin is split.
    """
    edges = np.asarray(edges_keV, float)
    lo, hi = (float(w) for w in window_keV)
    if not (np.isfinite(lo) and np.isfinite(hi)) or hi <= lo:
        raise AnalysisError(f"empty energy window {lo:g}-{hi:g} keV")
    if lo < edges[0] or hi > edges[-1]:
        raise AnalysisError(
            f"window {lo:g}-{hi:g} keV is outside the stored spectrum "
            f"({edges[0]:g}-{edges[-1]:g} keV)"
        )
    tol = 1e-6 * max(1.0, abs(hi))
    for e in (lo, hi):
        if np.min(np.abs(edges - e)) > tol:
            raise AnalysisError(
                f"window edge {e:g} keV is not a stored bin edge (bins of "
                f"{edges[1] - edges[0]:g} keV)"
            )
    fit_edges = np.append(np.arange(lo, hi - tol, width_keV), hi)
    centres = 0.5 * (edges[1:] + edges[:-1])
    index = np.searchsorted(fit_edges, centres, side="right") - 1
    index[(centres < lo) | (centres > hi)] = -1
    index[index >= len(fit_edges) - 1] = -1
    # Fit-bin edges snapped to the stored edges they actually cover.
    snapped = np.array([edges[np.argmin(np.abs(edges - e))] for e in fit_edges])
    return snapped, index


def rebin(counts: np.ndarray, index: np.ndarray, n_bins: int) -> np.ndarray:
    """Sum stored-bin counts into fit bins (``index`` from :func:`window_bins`)."""
    counts = np.asarray(counts)
    inside = index >= 0
    return np.bincount(index[inside], weights=counts[inside], minlength=n_bins).astype(np.int64)


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


def mm_template(
    fit_edges_keV: np.ndarray,
    power_MW: float,
    distance_m: float,
    resolution_keV: tuple[float, float] | None = None,
) -> np.ndarray:
    """Expected magnetic-moment counts per kg day per fit bin for mu_nu^2 = 1e-20 mu_B^2."""
    return physics.counts_in_bins(
        fit_edges_keV,
        lambda t: physics.mm_rate_per_kg_keV_day(t, 1.0, power_MW, distance_m),
        resolution_keV,
    )


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
        """The columns of an ``analysis_history`` row (online.db.models.AnalysisHistory)."""
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
    eff_all = efficiencies(
        on.rt_expected + off.rt_expected,
        on.rt_events + off.rt_events,
        on.rt_ac + off.rt_ac,
        on.rt_crv + off.rt_crv,
        on.rt_any + off.rt_any,
    )
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


@dataclass(frozen=True)
class Sensitivity:
    """Expected (median, zero-signal) limit of a planned exposure."""

    exposure_on_kg_day: float
    exposure_off_kg_day: float
    background_cpd: float
    window_keV: tuple[float, float]
    sigma_mu_nu2: float
    limit_mu_nu2: float
    cl: float
    signal_counts_per_kg_day: float
    """MM counts per kg day in the window for mu_nu = 1e-10 mu_B."""

    @property
    def limit_muB(self) -> float:
        return float(np.sqrt(self.limit_mu_nu2) * MU_UNIT_MUB)

    def to_json(self) -> dict:
        return {
            "expected_limit_90_muB": self.limit_muB,
            "expected_limit_mu_nu2_1e-20": self.limit_mu_nu2,
            "sigma_mu_nu2_1e-20": self.sigma_mu_nu2,
            "confidence_level": self.cl,
            "exposure_kg_day": {"on": self.exposure_on_kg_day, "off": self.exposure_off_kg_day},
            "background_cpd": self.background_cpd,
            "window_keV": list(self.window_keV),
            "mm_counts_per_kg_day_at_1e-10": self.signal_counts_per_kg_day,
        }


def flat_background(fit_edges_keV: np.ndarray, background_cpd: float) -> np.ndarray:
    """Counts per kg day per fit bin of a flat background of ``background_cpd``."""
    return background_cpd * np.diff(np.asarray(fit_edges_keV, float))


def expected_sensitivity(
    mass_kg: float,
    on_days: float,
    off_days: float,
    background_cpd: float,
    window_keV: tuple[float, float] = DEFAULT_WINDOW_KEV,
    power_MW: float = 2900.0,
    distance_m: float = 28.0,
    efficiency: float = 1.0,
    resolution_keV: tuple[float, float] | None = None,
    cl: float = 0.9,
) -> Sensitivity:
    """Median 90 % CL limit for zero true signal (Asimov/Gaussian) of a planned run:
    ``mass_kg`` of Ge, ``on_days``/``off_days`` of live time, a flat background of
    ``background_cpd``, the MM template for ``power_MW`` at ``distance_m``, and an overall
    candidate efficiency. In the background-dominated regime the mu_nu^2 limit scales as
    sqrt(B / (M t)) / phi."""
    checks = {
        "mass (kg)": mass_kg,
        "ON time (days)": on_days,
        "OFF time (days)": off_days,
        "background (cpd)": background_cpd,
        "thermal power (MW)": power_MW,
        "distance (m)": distance_m,
        "efficiency": efficiency,
    }
    for name, value in checks.items():
        if not np.isfinite(value) or value <= 0:
            raise AnalysisError(f"{name} must be positive, got {value:g}")
    if efficiency > 1:
        raise AnalysisError(f"efficiency must be at most 1, got {efficiency:g}")
    lo, hi = (float(w) for w in window_keV)
    if not (np.isfinite(lo) and np.isfinite(hi)) or hi <= lo or lo <= 0:
        raise AnalysisError(f"empty or invalid energy window {lo:g}-{hi:g} keV")
    fit_edges = np.append(np.arange(lo, hi - 1e-9, FIT_BIN_KEV), hi)
    signal = mm_template(fit_edges, power_MW, distance_m, resolution_keV)
    e_on = mass_kg * on_days * efficiency
    e_off = mass_kg * off_days * efficiency
    sigma = gaussian_sigma(signal, flat_background(fit_edges, background_cpd), e_on, e_off)
    return Sensitivity(
        exposure_on_kg_day=mass_kg * on_days,
        exposure_off_kg_day=mass_kg * off_days,
        background_cpd=background_cpd,
        window_keV=(lo, hi),
        sigma_mu_nu2=sigma,
        limit_mu_nu2=float(fc_upper_limit(0.0, cl)) * sigma,
        cl=cl,
        signal_counts_per_kg_day=float(signal.sum()),
    )
