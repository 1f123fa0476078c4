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


@numba.njit(cache=True, nogil=True)
def chunk_in_order(t, counts, wm, complete_ns, last_t_ns):
    """Would consecutive batches (``counts`` pulses each, watermarks ``wm``, pulse times
    ``t`` one batch after the other) each move a stream forward that is complete below
    ``complete_ns`` with its last pulse at ``last_t_ns`` (daq.build.order)? One pass: no
    pulse before the one before it, and each batch's first pulse not below the previous
    watermark."""
    if wm[0] < complete_ns:
        return False
    k = 0
    before = complete_ns
    previous = last_t_ns
    for i in range(counts.shape[0]):
        for r in range(counts[i]):
            if t[k] < previous or (r == 0 and t[k] < before):
                return False
            previous = t[k]
            k += 1
        before = wm[i]
    return True
