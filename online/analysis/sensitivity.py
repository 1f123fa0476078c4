"""The expected sensitivity of a planned exposure: the median limit for zero true signal."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from daq.core.config import KUO_SHENG_POWER_MW
from daq.core.errors import AnalysisError
from online.analysis.binning import DEFAULT_WINDOW_KEV, FIT_BIN_KEV
from online.analysis.template import MU_UNIT_MUB, mm_template
from online.stats.feldman_cousins import fc_upper_limit
from online.stats.fit import gaussian_sigma


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
    power_MW: float = KUO_SHENG_POWER_MW,
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
