"""numba kernels over time arrays: order check and threshold selection (pure, no state)."""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def is_sorted(t):
    """True when the times never decrease (one pass, no temporaries)."""
    for i in range(1, t.shape[0]):
        if t[i] < t[i - 1]:
            return False
    return True


@numba.njit(cache=True, nogil=True)
def times_at_least(t, adc, threshold):
    """The times (ns) of the pulses whose adc reaches threshold, as a new contiguous array."""
    out = np.empty(t.shape[0], dtype=np.int64)
    k = 0
    for i in range(t.shape[0]):
        if adc[i] >= threshold:
            out[k] = t[i]
            k += 1
    return out[:k].copy() if k < t.shape[0] else out
