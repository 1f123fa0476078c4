"""Feldman-Cousins confidence intervals for a Gaussian mean bounded at zero.

Feldman & Cousins, PRD 57 (1998) 3873, Sec. IV.B: a measurement x ~ N(mu, 1) of a mean
mu >= 0. For each mu the acceptance interval [x1, x2] collects the x with the largest
likelihood ratio R(x) = P(x|mu) / P(x|mu_best), mu_best = max(0, x), until it holds the
confidence level; the interval for a measured x0 is every mu whose acceptance interval
contains x0. It goes smoothly from an upper limit (x0 small) to a two-sided interval
(x0 > x2(0) = 1.28 at 90 % CL), so choosing between them after seeing the data cannot
spoil coverage. Everything is in units of the measurement's standard deviation.

The belt is built numerically once per confidence level (vectorised bisection on a grid
of mu) and cached; intervals are interpolated from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy.special import ndtr, ndtri

MU_MAX = 12.0
"""Largest mu on the belt grid; beyond it the belt is the central interval mu +- z."""


@dataclass(frozen=True)
class GaussianBelt:
    """Acceptance intervals [x_low, x_high] of x for each mu (sigma units)."""

    cl: float
    mu: np.ndarray
    x_low: np.ndarray
    x_high: np.ndarray

    @property
    def half_width(self) -> float:
        """z = Phi^-1((1 + cl) / 2): the central interval mu +- z, reached for large mu."""
        return float(ndtri(0.5 * (1 + self.cl)))


def _x_high(mu: np.ndarray, x_low: np.ndarray) -> np.ndarray:
    """The other end of the acceptance interval, with R(x_high) = R(x_low)."""
    two_sided = mu + np.sqrt(np.maximum(mu**2 - 2 * x_low * mu, 0.0))
    return np.where(x_low >= 0, 2 * mu - x_low, two_sided)


def acceptance_intervals(mu: np.ndarray, cl: float = 0.9) -> tuple[np.ndarray, np.ndarray]:
    """Feldman-Cousins acceptance interval [x1, x2] of x for each true mean mu >= 0."""
    mu = np.atleast_1d(np.asarray(mu, float))
    if np.any(mu < 0) or not 0 < cl < 1:
        raise ValueError("need mu >= 0 and 0 < cl < 1")
    z = float(ndtri(0.5 * (1 + cl)))
    x_low = np.where(mu >= z, mu - z, 0.0)
    need = (mu < z) & (mu > 0)
    # Bisection on x1 < 0: the content Phi(x2 - mu) - Phi(x1 - mu) grows as x1 decreases.
    m = mu[need]
    lo = -10.0 / m - 10.0
    hi = np.zeros_like(m)
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        content = ndtr(_x_high(m, mid) - m) - ndtr(mid - m)
        too_much = content > cl
        lo = np.where(too_much, mid, lo)
        hi = np.where(too_much, hi, mid)
    x_low[need] = 0.5 * (lo + hi)
    x_high = _x_high(mu, x_low)
    at_zero = mu == 0
    x_low[at_zero] = -np.inf
    x_high[at_zero] = ndtri(cl)
    return x_low, x_high


@lru_cache(maxsize=8)
def gaussian_belt(cl: float = 0.9) -> GaussianBelt:
    """The cached confidence belt at confidence level ``cl``."""
    mu = np.concatenate([[0.0], np.geomspace(1e-6, 0.5, 600)[:-1], np.linspace(0.5, MU_MAX, 2301)])
    x_low, x_high = acceptance_intervals(mu, cl)
    return GaussianBelt(cl, mu, x_low, x_high)


def fc_interval(x0: np.ndarray | float, cl: float = 0.9) -> tuple[np.ndarray, np.ndarray]:
    """Feldman-Cousins interval [mu_low, mu_high] (sigma units) for measured x0 (sigma units)."""
    belt = gaussian_belt(cl)
    x = np.asarray(x0, float)
    if not np.all(np.isfinite(x)):
        raise ValueError("measured value must be finite")
    z = belt.half_width
    # x_low rises from -inf (mu = 0) to MU_MAX - z: mu_high(x0) is its inverse.
    finite = slice(1, None)
    mu_high = np.interp(x, belt.x_low[finite], belt.mu[finite], left=0.0, right=np.nan)
    mu_high = np.where(x > belt.x_low[-1], x + z, mu_high)
    mu_low = np.interp(x, belt.x_high, belt.mu, left=0.0, right=np.nan)
    mu_low = np.where(x > belt.x_high[-1], x - z, mu_low)
    return mu_low, mu_high


def fc_upper_limit(x0: np.ndarray | float, cl: float = 0.9) -> np.ndarray:
    """Upper end of the Feldman-Cousins interval (sigma units) for measured x0."""
    return fc_interval(x0, cl)[1]
