"""Efficiencies measured with random triggers: the DAQ live fraction and accidental vetoes.

The random-trigger (RT) events that the ADC injects at a known rate give:
    live fraction     f = RT recorded / RT expected (rate x covered time), Poisson error
                      sqrt(RT recorded) / RT expected (the injected number is itself Poisson,
                      so f may exceed 1 by a fluctuation),
    accidental veto   P_ac = RT with AC tag / RT recorded, P_crv likewise, P_any for either,
                      each with a binomial error.
The efficiency-corrected candidate spectrum is raw / ((1 - P_any) f), and the exposure the
fit sees is (mass x covered time) f (1 - P_any).

Covered time is the elapsed time minus HPGe dead time and veto blind time (daq.build.coverage):
random triggers inside it are not recorded as RT events (they fill the "uncovered" spectrum),
so f measures the ADC's own live fraction in covered time and P_* the accidental vetoes of
covered random triggers. A loss is taken out once, as uncovered time, never again through f.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from daq.core.errors import AnalysisError


@dataclass(frozen=True)
class Measurement:
    """A value with its 1-sigma error."""

    value: float
    error: float

    def to_json(self) -> dict:
        return {"value": self.value, "error": self.error}


@dataclass(frozen=True)
class Efficiencies:
    """DAQ live fraction and accidental veto probabilities measured with random triggers."""

    live_fraction: Measurement
    accidental_ac: Measurement
    accidental_crv: Measurement
    accidental_any: Measurement

    @property
    def total(self) -> float:
        """Fraction of true candidates that end up in the candidate spectrum."""
        return self.live_fraction.value * (1.0 - self.accidental_any.value)

    def to_json(self) -> dict:
        return {
            "live_fraction": self.live_fraction.to_json(),
            "accidental_veto": {
                "ac": self.accidental_ac.to_json(),
                "crv": self.accidental_crv.to_json(),
                "any": self.accidental_any.to_json(),
            },
        }


def _binomial(k: float, n: float) -> Measurement:
    p = k / n
    return Measurement(p, float(np.sqrt(max(p * (1 - p), 0.0) / n)))


def efficiencies(
    rt_expected: float, rt_events: int, rt_ac: int, rt_crv: int, rt_any: int, what: str = "data"
) -> Efficiencies:
    """Live fraction and accidental veto probabilities from RT counts (binomial errors).

    ``rt_expected``: random triggers injected (sum of rate x covered time over the runs);
    ``rt_events``: RT events recorded, ``rt_ac``/``rt_crv``/``rt_any``: of which tagged by
    the AC veto, the CRV, either. ``what`` names the data in error messages.
    """
    if rt_expected <= 0:
        raise AnalysisError(
            f"{what}: no random triggers were injected (frontends.hpge.rt_rate_hz = 0 or no "
            "covered time), so the live fraction and accidental vetoes cannot be measured"
        )
    if rt_events <= 0:
        raise AnalysisError(
            f"{what}: no random-trigger events recorded out of {rt_expected:.1f} injected"
        )
    if not 0 <= rt_ac <= rt_events or not 0 <= rt_crv <= rt_events:
        raise AnalysisError(f"{what}: RT veto counts exceed the RT events ({rt_events})")
    if not max(rt_ac, rt_crv) <= rt_any <= rt_ac + rt_crv:
        raise AnalysisError(
            f"{what}: RT counts inconsistent: any={rt_any}, ac={rt_ac}, crv={rt_crv}"
        )
    if rt_any >= rt_events:
        raise AnalysisError(f"{what}: every random trigger was vetoed; no candidate acceptance")
    # The ADC injects a Poisson number of random triggers (rt_expected is its mean, not a
    # count) and records a thinned Poisson number of them: the error is Poisson, not binomial.
    live = Measurement(rt_events / rt_expected, float(np.sqrt(rt_events)) / rt_expected)
    return Efficiencies(
        live,
        _binomial(rt_ac, rt_events),
        _binomial(rt_crv, rt_events),
        _binomial(rt_any, rt_events),
    )


def corrected_spectrum(counts: np.ndarray, eff: Efficiencies) -> tuple[np.ndarray, np.ndarray]:
    """Efficiency-corrected candidate counts raw / ((1 - P_any) f) and their Poisson errors."""
    counts = np.asarray(counts, float)
    return counts / eff.total, np.sqrt(counts) / eff.total
