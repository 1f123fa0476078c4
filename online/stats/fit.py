"""The mu_nu^2 fit: binned Poisson likelihood of reactor ON and OFF spectra.

Model, per energy bin i (counts; exposures are efficiency-corrected kg day):
    ON:  n_i ~ Poisson(E_on  (b_i + theta s_i))
    OFF: m_i ~ Poisson(E_off  b_i)
theta = mu_nu^2 in 1e-20 mu_B^2 (negative values allowed, so the estimator is unbiased and
Gaussian), s_i the expected magnetic-moment counts per kg day in bin i for theta = 1 at the
ON reactor power, b_i one background nuisance per bin shared by ON and OFF (counts per
kg day). For fixed theta each b_i has a closed-form maximum (the larger root of a
quadratic), so the profile likelihood is a 1-D function of theta that numpy evaluates over
all bins at once. The statistic is the Poisson deviance (-2 ln of the likelihood ratio to
the saturated model); the 1-sigma interval is where it rises by 1.

The Fisher information of the same model gives the expected error for a flat background:
    sigma(theta)^-2 = sum_i s_i^2 / b_i / (1/E_on + 1/E_off),
the Asimov/Gaussian sensitivity that :func:`toy_fits` checks by Monte Carlo.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy.optimize import brentq, minimize_scalar

from online.stats.feldman_cousins import fc_interval

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FitResult:
    """Best fit of theta = mu_nu^2 (1e-20 mu_B^2) and its profile-likelihood errors."""

    mu_nu2: float
    error: float
    error_low: float
    error_high: float
    deviance: float
    n_bins: int
    background: np.ndarray
    """Profiled background per bin at the best fit (counts per kg day)."""

    @property
    def ndof(self) -> int:
        """Degrees of freedom of the deviance: 2 n_bins data minus n_bins + 1 parameters."""
        return self.n_bins - 1


def _xlogx_ratio(n: np.ndarray, nu: np.ndarray) -> np.ndarray:
    safe = np.where(n > 0, n, 1.0)
    return np.where(n > 0, n * np.log(safe / np.maximum(nu, 1e-300)), 0.0)


def profile_background(
    theta: float, n_on: np.ndarray, n_off: np.ndarray, e_on: float, e_off: float, s: np.ndarray
) -> np.ndarray:
    """The b_i that maximise the likelihood for fixed theta (counts per kg day per bin).

    Solves n/(b + theta s) + m/b = E_on + E_off, i.e. A b^2 + B b + C = 0 with
    A = E_on + E_off, B = A theta s - n - m, C = -m theta s; the larger root is the one with
    b >= 0 and b + theta s >= 0 (computed without cancellation).
    """
    a = e_on + e_off
    ts = theta * s
    b = a * ts - n_on - n_off
    c = -n_off * ts
    root = np.sqrt(np.maximum(b * b - 4 * a * c, 0.0))
    den = b + root
    with np.errstate(divide="ignore", invalid="ignore"):
        stable = np.where(den != 0, -2 * c / np.where(den != 0, den, 1.0), 0.0)
    return np.where(b < 0, (root - b) / (2 * a), stable)


def deviance(
    theta: float, n_on: np.ndarray, n_off: np.ndarray, e_on: float, e_off: float, s: np.ndarray
) -> float:
    """Profile Poisson deviance -2 ln lambda(theta) against the saturated model."""
    bkg = profile_background(theta, n_on, n_off, e_on, e_off, s)
    nu_on = np.maximum(e_on * (bkg + theta * s), 0.0)
    nu_off = e_off * bkg
    d = nu_on - n_on + _xlogx_ratio(n_on, nu_on) + nu_off - n_off + _xlogx_ratio(n_off, nu_off)
    return 2.0 * float(np.sum(d))


def gaussian_sigma(signal: np.ndarray, background: np.ndarray, e_on: float, e_off: float) -> float:
    """Expected 1-sigma error of theta from the Fisher information (Asimov, theta = 0).

    ``signal``: counts per kg day per bin for theta = 1; ``background``: counts per kg day
    per bin (must be > 0 where the signal is); exposures in kg day.
    """
    signal = np.asarray(signal, float)
    background = np.asarray(background, float)
    if e_on <= 0 or e_off <= 0:
        raise ValueError("exposures must be positive")
    if np.any(background[signal > 0] <= 0):
        raise ValueError("background must be positive in every bin with signal")
    info = np.sum(np.where(signal > 0, signal**2 / np.where(background > 0, background, 1.0), 0))
    if info <= 0:
        raise ValueError("no signal in the fitted bins")
    return float(np.sqrt((1.0 / e_on + 1.0 / e_off) / info))


def _rough_sigma(n_on, n_off, e_on, e_off, s) -> float:
    """Gaussian error of the weighted-least-squares residual fit (starting scale)."""
    var = np.maximum(n_on, 1) / e_on**2 + np.maximum(n_off, 1) / e_off**2
    return float(1.0 / np.sqrt(np.sum(s**2 / var)))


def fit_mu_nu2(
    n_on: np.ndarray, n_off: np.ndarray, e_on: float, e_off: float, signal: np.ndarray
) -> FitResult:
    """Maximum-likelihood fit of theta = mu_nu^2 (1e-20 mu_B^2) to ON/OFF counts per bin.

    ``e_on``, ``e_off``: efficiency-corrected exposures (kg day); ``signal``: expected
    counts per kg day per bin for theta = 1 at the ON reactor power.
    """
    n_on = np.asarray(n_on, float)
    n_off = np.asarray(n_off, float)
    s = np.asarray(signal, float)
    if not (n_on.shape == n_off.shape == s.shape) or n_on.ndim != 1 or len(s) == 0:
        raise ValueError("ON, OFF and signal need the same non-empty 1-D binning")
    if e_on <= 0 or e_off <= 0:
        raise ValueError("exposures must be positive")
    if np.any(n_on < 0) or np.any(n_off < 0) or np.any(s < 0) or not np.any(s > 0):
        raise ValueError("counts and signal must be non-negative, with some signal")
    args = (n_on, n_off, e_on, e_off, s)
    resid = n_on / e_on - n_off / e_off
    var = np.maximum(n_on, 1) / e_on**2 + np.maximum(n_off, 1) / e_off**2
    start = float(np.sum(s * resid / var) / np.sum(s**2 / var))
    scale = _rough_sigma(*args)
    span = 30 * scale
    best = minimize_scalar(
        deviance,
        bounds=(start - span, start + span),
        args=args,
        method="bounded",
        options={"xatol": 1e-6 * scale},
    )
    theta = float(best.x)
    d_min = float(best.fun)

    def crossing(direction: float) -> float:
        step = scale
        for _ in range(60):
            edge = theta + direction * step
            if deviance(edge, *args) - d_min > 1.0:
                return brentq(
                    lambda t: deviance(t, *args) - d_min - 1.0, theta, edge, xtol=1e-6 * scale
                )
            step *= 2
        raise ArithmeticError("the likelihood does not constrain mu_nu^2")

    lo, hi = crossing(-1.0), crossing(+1.0)
    return FitResult(
        mu_nu2=theta,
        error=0.5 * (hi - lo),
        error_low=theta - lo,
        error_high=hi - theta,
        deviance=d_min,
        n_bins=len(s),
        background=profile_background(theta, *args),
    )


def fc_limit(mu_nu2: float, error: float, cl: float = 0.9) -> tuple[float, float]:
    """Feldman-Cousins interval (1e-20 mu_B^2) for a Gaussian measurement of mu_nu^2 >= 0."""
    if not (np.isfinite(mu_nu2) and np.isfinite(error) and error > 0):
        raise ValueError("the measurement needs a finite value and a positive error")
    lo, hi = fc_interval(mu_nu2 / error, cl)
    return float(lo) * error, float(hi) * error


@dataclass(frozen=True)
class ToyResults:
    """Fits to Poisson toy experiments: best fits, errors and FC intervals (1e-20 mu_B^2)."""

    mu_nu2: np.ndarray
    error: np.ndarray
    lower: np.ndarray
    upper: np.ndarray


def toy_fits(
    signal: np.ndarray,
    background: np.ndarray,
    e_on: float,
    e_off: float,
    n_toys: int,
    mu_nu2_true: float = 0.0,
    cl: float = 0.9,
    rng: np.random.Generator | None = None,
) -> ToyResults:
    """Draw ON/OFF Poisson spectra for a true mu_nu^2 (1e-20 mu_B^2), fit each and build its
    Feldman-Cousins interval: the Monte-Carlo check of the sensitivity and of coverage."""
    rng = rng or np.random.default_rng()
    s = np.asarray(signal, float)
    b = np.asarray(background, float)
    n_on = rng.poisson(e_on * (b + mu_nu2_true * s), size=(n_toys, len(s)))
    n_off = rng.poisson(e_off * b, size=(n_toys, len(s)))
    out = np.empty((4, n_toys))
    for k in range(n_toys):
        fit = fit_mu_nu2(n_on[k], n_off[k], e_on, e_off, s)
        out[:, k] = (fit.mu_nu2, fit.error, *fc_limit(fit.mu_nu2, fit.error, cl))
    return ToyResults(*out)
