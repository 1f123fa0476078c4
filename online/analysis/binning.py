"""Fit bins over an analysis window, built from the stored spectrum bins (energies in keV)."""

from __future__ import annotations

import numpy as np

from daq.core.errors import AnalysisError

FIT_BIN_KEV = 1.0


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


DEFAULT_WINDOW_KEV = (12.0, 60.0)
