"""numba kernels of spectrum filling: ADC -> keV calibration and the category histogram.

Pure functions on contiguous numpy arrays: energies in keV, histogram axes (reactor state,
category, energy bin) as daq.build.increments.empty_hist makes them.
"""

from __future__ import annotations

import numba
import numpy as np

from daq.core.records import TAG_AC, TAG_CRV, TAG_REACTOR_ON, TAG_RT, TAG_UNCOVERED, Category

_ALL = int(Category.ALL)
_AC = int(Category.AC)
_CRV = int(Category.CRV)
_CANDIDATE = int(Category.CANDIDATE)
_RT = int(Category.RT)
_UNCOVERED = int(Category.UNCOVERED)


@numba.njit(cache=True, nogil=True)
def calibrate(adc, channel, gain_keV_per_adc, offset_keV):
    """Energies (keV) = offset_keV[ch] + gain_keV_per_adc[ch] * adc, and the count of pulses
    whose channel has no calibration entry (their energy is NaN)."""
    n = adc.shape[0]
    n_channels = gain_keV_per_adc.shape[0]
    energy = np.empty(n, dtype=np.float64)
    bad = 0
    for i in range(n):
        ch = channel[i]
        if ch < n_channels:
            energy[i] = offset_keV[ch] + gain_keV_per_adc[ch] * adc[i]
        else:
            energy[i] = np.nan
            bad += 1
    return energy, bad


@numba.njit(cache=True, nogil=True)
def fill_histogram(hist, energy_keV, tags, bin_width_keV):
    """Add events to hist[reactor state, category, bin] in place; returns events not filled.

    State index 1 when TAG_REACTOR_ON is set, else 0. Events in uncovered time
    (TAG_UNCOVERED) fill only UNCOVERED; random triggers only RT; physics events fill ALL,
    plus AC and/or CRV when tagged, CANDIDATE when neither veto fired.
    Energies below 0 go to the first bin, above the range to the last; NaN energies (no
    calibration) are not filled and are counted in the return value.
    """
    n_bins = hist.shape[2]
    skipped = 0
    for i in range(energy_keV.shape[0]):
        e = energy_keV[i]
        if np.isnan(e):
            skipped += 1
            continue
        x = e / bin_width_keV
        if x < 0.0:
            b = 0
        elif x >= n_bins - 1:
            b = n_bins - 1
        else:
            b = int(x)
        tag = tags[i]
        s = 1 if tag & TAG_REACTOR_ON else 0
        if tag & TAG_UNCOVERED:
            hist[s, _UNCOVERED, b] += 1
            continue
        if tag & TAG_RT:
            hist[s, _RT, b] += 1
            continue
        hist[s, _ALL, b] += 1
        vetoed = False
        if tag & TAG_AC:
            hist[s, _AC, b] += 1
            vetoed = True
        if tag & TAG_CRV:
            hist[s, _CRV, b] += 1
            vetoed = True
        if not vetoed:
            hist[s, _CANDIDATE, b] += 1
    return skipped
