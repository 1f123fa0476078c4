"""The expected magnetic-moment signal in the fit bins, and the unit mu_nu is fitted in."""

from __future__ import annotations

import numpy as np

from online import physics

MU_UNIT_MUB = 1e-10
"""mu_nu is fitted as mu_nu^2 in (1e-10 mu_B)^2 = 1e-20 mu_B^2."""


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
