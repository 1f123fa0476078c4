"""Loading every kernel before the first build (numba's on-disk cache, compiled once)."""

from __future__ import annotations

import numpy as np

from daq.core.records import PULSE_DTYPE, TAG_AC, Category
from daq.kernels.arrays import is_sorted, times_at_least
from daq.kernels.histogram import calibrate, fill_histogram
from daq.kernels.tagging import set_tag, tag_window_search, tag_window_sweep


def warm_up() -> None:
    """Load every kernel now (compiled, from numba's on-disk cache): the first call of each
    otherwise takes ~0.1-0.5 s in the middle of the first build."""
    t = np.zeros(1, dtype=np.int64)
    pulses = np.frombuffer(bytes(16), dtype=PULSE_DTYPE)
    is_sorted(pulses["t_ns"])
    times_at_least(pulses["t_ns"], pulses["adc"], 0)
    tag_window_sweep(t, t, 0, 0)
    tag_window_search(t, t, 0, 0)
    set_tag(np.zeros(1, dtype=np.uint8), np.zeros(1, dtype=np.bool_), TAG_AC)
    energy, _ = calibrate(
        np.zeros(1, dtype=np.uint32), np.zeros(1, dtype=np.uint16), np.ones(1), np.zeros(1)
    )
    fill_histogram(np.zeros((2, len(Category), 1), dtype=np.int64), energy, t.astype(np.uint8), 1.0)
