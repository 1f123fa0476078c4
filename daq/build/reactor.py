"""The reactor stream: a thermal-power reading as a pulse, and the reactor state at a time.

Each slow-control reading becomes one pulse of the REACTOR stream (daq.core.records):
``t_ns`` = the reading's clock, ``adc`` = the thermal power in kW, ``FLAG_REACTOR_ON`` when
the power is at least the ON threshold. The state at a time t is that of the last reading at
or before t, and before the first reading that of the first one, so no HPGe pulse of a run is
without a state. The event builder and the replay's planner both look the state up here.
"""

from __future__ import annotations

import numpy as np

from daq.core.records import FLAG_REACTOR_ON, empty_pulses


def reactor_pulse(t_ns: int, power_MW: float, on_threshold_MW: float) -> np.ndarray:
    """The REACTOR-stream pulse of one reading (an array of one): t_ns, kW, the ON flag."""
    pulses = empty_pulses(1)
    pulses["t_ns"] = t_ns
    pulses["adc"] = min(max(round(power_MW * 1000), 0), 2**32 - 1)
    pulses["flags"] = FLAG_REACTOR_ON if power_MW >= on_threshold_MW else 0
    return pulses


def reading_index(readings: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Index of the reading that gives the state at each time t (ns); readings not empty."""
    return np.maximum(np.searchsorted(readings["t_ns"], t, side="right") - 1, 0)


def on_at(readings: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Reactor ON at each time t (ns), from time-ordered readings (not empty)?"""
    return (readings["flags"][reading_index(readings, t)] & FLAG_REACTOR_ON) != 0


def power_MW(reading: np.void) -> float:
    """Thermal power (MW) of one reading."""
    return float(reading["adc"]) / 1000.0
