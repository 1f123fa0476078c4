"""Detector physics of the simulated experiment: pulses with their ground truth.

``Generator.generate(t0, t1, power_MW)`` draws everything the HPGe ADC and the two veto
digitizers see in the slice [t0, t1) of the common clock (ns): Poisson counts, uniform times,
vectorised. Sources (rates from daq.core.config.Sim and Detector, formulas in online.physics):

=============  ============================================================================
origin         what it is
=============  ============================================================================
CONTINUUM      flat background that no veto sees: ``flat_cpd`` x mass, 0..continuum_max_keV
COMPTON        the same flat shape at ``compton_factor`` x that rate, each with an
               AC_PARTNER pulse at t + N(0, ac_delay_sigma_ns)
COSMIC         the same flat shape at ``cosmic_factor`` x that rate, each with a CRV_PARTNER
               pulse at t - U(crv_lag_min_ns, crv_lag_max_ns)
XRAY           Gaussian lines (``xray_lines``, counts per kg per day)
SIGNAL         magnetic-moment recoils, online.physics.mm_rate_per_kg_keV_day (power > 0)
RT             the ADC's random triggers at ``rt_rate_hz`` (FLAG_RT, true energy 0 keV)
AC_SINGLE      uncorrelated AC veto pulses at ``acv_singles_hz``
CRV_SINGLE     uncorrelated CRV pulses at ``crv_singles_hz``
=============  ============================================================================

Every HPGe energy is smeared with FWHM(E) = sqrt(a^2 + b E) (online.physics.fwhm_keV); the
ADC value is round(E_measured / gain_keV_per_adc), clipped at 0. A HPGe pulse is recorded when
its measured energy reaches ``detector.threshold_keV`` (random triggers always trigger) and
the ADC is not busy: each accepted trigger (physics or RT) makes the ADC dead for
``adc_dead_time_ns`` (non-paralysable). ``energy_keV`` in the truth is the true deposit.

Slices must be generated in time order without gaps (t0 of a call = t1 of the previous): a
pulse pair that straddles t1 (a partner's delay) is kept and returned by the next call, and
the ADC dead time carries over. Every returned pulse lies in [t0, t1).

Fast mode (``veto_margin_ns`` set): long exposures in minutes
    A veto pulse can only matter to the builder if it lies inside a tagging window of some
    HPGe pulse, and every window reaches at most daq.build.windows.max_reach_ns from its HPGe
    pulse. So the fast mode draws every HPGe source as above (continuum, Compton and cosmic
    events with their veto partners, X-ray lines, signal, random triggers, with threshold and
    dead time), but the uncorrelated veto singles only on the union of the intervals
    [t - m, t + m] (integer ns, m = ``veto_margin_ns``) around the triggered HPGe pulses:
    on each merged interval of length L a Poisson number (mean rate x L) of uniform integer
    times. Restricting a Poisson process to a set gives exactly that, so every tag and every
    spectrum has the statistics of the full simulation as long as m >= the widest builder
    window, while 1.3 kHz of veto singles at the defaults (3 x 10^10 pulses in 4712 h ON +
    1250 h OFF) shrink to rate x (2m + 1) per HPGe pulse (0.008 at m = 5 us). To know the
    windows that reach back into a slice, the fast mode draws the HPGe sources ahead of the
    slice by m (the part past t1 waits in the pending rows, drawn at the slice's power and
    RT rate). What it does not give: veto pulses far from any HPGe pulse (veto-stream pulse
    counts and rates are not the hardware's), and the truth holds only the veto singles
    drawn.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Sequence

import numba
import numpy as np

from daq.core.config import Detector, Sim
from daq.core.records import DATA_STREAMS, FLAG_RT, PULSE_DTYPE, Stream

log = logging.getLogger(__name__)

TRUTH_DTYPE = np.dtype(
    [
        ("stream", "u1"),
        ("t_ns", "<i8"),
        ("adc", "<u4"),
        ("channel", "<u2"),
        ("flags", "<u2"),
        ("origin", "u1"),
        ("energy_keV", "<f8"),
        ("partner_t_ns", "<i8"),
        ("recorded", "?"),
    ]
)
"""One drawn pulse with its ground truth: stream, the pulse fields (PULSE_DTYPE), its origin,
true deposited energy (keV; arbitrary scale for veto pulses), the time (ns) of its
coincident partner in the other stream (-1 if none) and whether the front-end recorded it."""

SECONDS_PER_DAY = 86400.0
FWHM_PER_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))
VETO_CHANNELS = 4
"""Channels (crystals or panels) of each veto digitizer."""
VETO_MEAN_KEV = 300.0
"""Mean (exponential) deposit of a veto pulse (keV); the veto energy scale is arbitrary."""
VETO_KEV_PER_ADC = 0.3
"""Veto digitizer gain (keV per ADC count): mean veto ADC value 1000."""
SIGNAL_MIN_KEV = 0.1
"""Lowest recoil energy drawn for the signal (keV): 1/T is not integrable down to 0."""
SIGNAL_GRID_POINTS = 4000
"""Log-spaced grid points of the signal's inverse-CDF table."""
ADC_MAX = np.iinfo(np.uint32).max


class Origin(enum.IntEnum):
    """What produced a pulse (truth ``origin``)."""

    CONTINUUM = 0
    XRAY = 1
    COMPTON = 2
    COSMIC = 3
    SIGNAL = 4
    RT = 5
    AC_PARTNER = 6
    CRV_PARTNER = 7
    AC_SINGLE = 8
    CRV_SINGLE = 9


@numba.njit(cache=True, nogil=True)
def nonparalysable(t_ns, dead_ns, busy_until_ns):
    """Accepted triggers of a non-paralysable ADC among sorted trigger times (ns).

    A trigger is accepted when the ADC is free (t >= busy_until); each accepted trigger keeps
    it busy for dead_ns. Returns the acceptance mask and the new busy-until time (ns).
    """
    accepted = np.zeros(t_ns.shape[0], dtype=np.bool_)
    for i in range(t_ns.shape[0]):
        if t_ns[i] >= busy_until_ns:
            accepted[i] = True
            busy_until_ns = t_ns[i] + dead_ns
    return accepted, busy_until_ns


def dead_time_ns(trigger_t_ns: np.ndarray, dead_ns: int, a_ns: int, b_ns: int) -> int:
    """Dead time (ns) inside [a, b) of an ADC whose accepted triggers are ``trigger_t_ns``.

    Each accepted trigger at t makes the ADC dead over [t, t + dead_ns); pass the last
    trigger before ``a`` too, since its dead time may reach into the interval.
    """
    t = np.asarray(trigger_t_ns, dtype=np.int64)
    overlap = np.minimum(t + dead_ns, b_ns) - np.maximum(t, a_ns)
    return int(np.clip(overlap, 0, None).sum())


_PULSE_BYTES = slice(TRUTH_DTYPE.fields["t_ns"][1], TRUTH_DTYPE.fields["t_ns"][1] + 16)
assert all(
    TRUTH_DTYPE.fields[name][1] - _PULSE_BYTES.start == PULSE_DTYPE.fields[name][1]
    and TRUTH_DTYPE[name] == PULSE_DTYPE[name]
    for name in PULSE_DTYPE.names
), "truth rows must hold a pulse record verbatim"


def to_pulses(rows: np.ndarray) -> np.ndarray:
    """The pulse records (PULSE_DTYPE) inside truth rows: one strided byte copy."""
    raw = np.ascontiguousarray(rows).view(np.uint8).reshape(len(rows), TRUTH_DTYPE.itemsize)
    return np.ascontiguousarray(raw[:, _PULSE_BYTES]).view(PULSE_DTYPE).reshape(len(rows))


def _rows(stream: Stream, origin: Origin, t_ns: np.ndarray, **fields) -> np.ndarray:
    """Truth rows for one source; unspecified fields: no partner, recorded, flags 0."""
    out = np.zeros(len(t_ns), dtype=TRUTH_DTYPE)
    out["stream"] = stream
    out["origin"] = origin
    out["t_ns"] = t_ns
    out["partner_t_ns"] = -1
    out["recorded"] = True
    for name, value in fields.items():
        out[name] = value
    return out


class Generator:
    """Draws HPGe and veto pulses with ground truth, slice after slice (see module docstring).

    ``rt_rate_hz`` is the ADC's random-trigger rate (Hz), settable while running (the
    simulated ADC's ``CONF RTRATE``). After each ``generate`` call, ``dead_ns`` holds the ADC
    dead time (ns) inside that slice and ``last_trigger_ns`` the last accepted trigger.
    ``seed`` is anything numpy.random.default_rng takes (an int, or a list of ints such as
    [seed, run]). ``veto_margin_ns`` switches on the fast mode (module docstring): veto
    singles only within that many ns of an HPGe pulse.
    """

    def __init__(
        self,
        sim: Sim,
        detector: Detector,
        seed: int | Sequence[int],
        veto_margin_ns: int | None = None,
    ) -> None:
        if veto_margin_ns is not None and veto_margin_ns < 0:
            raise ValueError(f"veto_margin_ns must be >= 0, got {veto_margin_ns}")
        self.sim = sim
        self.detector = detector
        self.veto_margin_ns = veto_margin_ns
        self.rng = np.random.default_rng(seed)
        self.rt_rate_hz = sim.rt_rate_hz
        self.dead_ns = 0
        self.last_trigger_ns = np.iinfo(np.int64).min // 2
        self._pending = np.zeros(0, dtype=TRUTH_DTYPE)
        self._signal_table: tuple[float, float, np.ndarray, np.ndarray] | None = None
        self._hpge_until: int | None = None
        """Fast mode: HPGe sources are drawn below this time (ns)."""
        self._veto_until = 0
        """Fast mode: veto singles are drawn below this time (ns)."""
        self._warm_up()

    def _warm_up(self) -> None:
        """Compile the dead-time kernel and import online.physics now, not in the first slice
        (which would then take a second of the running clock)."""
        nonparalysable(np.zeros(0, dtype=np.int64), 0, 0)
        self._hpge(Origin.RT, np.zeros(0, dtype=np.int64), np.zeros(0))

    @property
    def continuum_rate_hz(self) -> float:
        """Rate (Hz) of the veto-free flat continuum over 0..continuum_max_keV."""
        sim = self.sim
        return sim.flat_cpd * self.detector.mass_kg * sim.continuum_max_keV / SECONDS_PER_DAY

    def generate(
        self, t0_ns: int, t1_ns: int, power_MW: float
    ) -> tuple[dict[Stream, np.ndarray], np.ndarray]:
        """Pulses in [t0, t1) at reactor thermal power ``power_MW``.

        Returns the recorded pulses per data stream (PULSE_DTYPE, sorted by t_ns) and the
        truth of every drawn pulse in the slice, recorded or not (TRUTH_DTYPE, sorted by t_ns).
        """
        if t1_ns <= t0_ns:
            raise ValueError(f"empty slice [{t0_ns}, {t1_ns}) ns")
        if self.veto_margin_ns is None:
            drawn = [self._hpge_sources(t0_ns, t1_ns, power_MW), self._veto_singles(t0_ns, t1_ns)]
        else:
            drawn = self._fast_sources(t0_ns, t1_ns, power_MW)
        rows = np.concatenate([self._pending[self._pending["t_ns"] >= t0_ns], *drawn])
        later = rows["t_ns"] >= t1_ns
        self._pending = rows[later]
        rows = rows[~later]
        rows = rows[np.argsort(rows["t_ns"], kind="stable")]
        self._apply_dead_time(rows, t0_ns, t1_ns)
        stream = np.where(rows["recorded"], rows["stream"], len(Stream))
        pulses = {s: to_pulses(rows[stream == s]) for s in DATA_STREAMS}
        return pulses, rows

    def _hpge_sources(self, t0: int, t1: int, power_MW: float) -> np.ndarray:
        """HPGe pulses of every source, with their veto partners."""
        sim = self.sim
        rate = self.continuum_rate_hz
        parts = [
            self._hpge(Origin.CONTINUUM, *self._flat(t0, t1, rate)),
            self._compton(t0, t1, sim.compton_factor * rate),
            self._cosmic(t0, t1, sim.cosmic_factor * rate),
            self._signal(t0, t1, power_MW),
        ]
        per_day = self.detector.mass_kg / SECONDS_PER_DAY
        for line in sim.xray_lines:
            t = self._times(t0, t1, line.rate_per_kg_day * per_day)
            parts.append(self._hpge(Origin.XRAY, t, np.full(len(t), line.energy_keV)))
        t_rt = self._times(t0, t1, self.rt_rate_hz)
        parts.append(self._hpge(Origin.RT, t_rt, np.zeros(len(t_rt)), flags=FLAG_RT))
        return np.concatenate(parts)

    def _times(self, t0: int, t1: int, rate_hz: float) -> np.ndarray:
        """Poisson number of uniform times (ns) in [t0, t1) for a rate in Hz, sorted.

        Sorted sources make the slice's final stable sort a cheap merge of sorted runs.
        """
        n = self.rng.poisson(rate_hz * (t1 - t0) * 1e-9)
        return np.sort(self.rng.integers(t0, t1, n, dtype=np.int64))

    def _flat(self, t0: int, t1: int, rate_hz: float) -> tuple[np.ndarray, np.ndarray]:
        """Times (ns) and flat true energies (keV, 0..continuum_max_keV) of events."""
        t = self._times(t0, t1, rate_hz)
        return t, self.rng.uniform(0.0, self.sim.continuum_max_keV, len(t))

    def _hpge(
        self,
        origin: Origin,
        t: np.ndarray,
        energy_keV: np.ndarray,
        partner_t: np.ndarray | int = -1,
        flags: int = 0,
    ) -> np.ndarray:
        """HPGe truth rows: resolution smearing, ADC value, trigger threshold."""
        from online.physics import fwhm_keV

        sim = self.sim
        sigma = fwhm_keV(energy_keV, sim.resolution_a_keV, sim.resolution_b_keV) / FWHM_PER_SIGMA
        measured = energy_keV + sigma * self.rng.standard_normal(len(t))
        adc = np.clip(np.rint(measured / sim.gain_keV_per_adc), 0, ADC_MAX)
        triggered = measured >= self.detector.threshold_keV
        if flags & FLAG_RT:
            triggered = np.ones(len(t), dtype=bool)
        return _rows(
            Stream.HPGE,
            origin,
            t,
            adc=adc,
            flags=flags,
            energy_keV=energy_keV,
            partner_t_ns=partner_t,
            recorded=triggered,
        )

    def _veto(
        self, stream: Stream, origin: Origin, t: np.ndarray, partner_t: np.ndarray | int = -1
    ) -> np.ndarray:
        """Veto truth rows: exponential deposit, random channel, always recorded."""
        energy = self.rng.exponential(VETO_MEAN_KEV, len(t))
        return _rows(
            stream,
            origin,
            t,
            adc=np.clip(np.rint(energy / VETO_KEV_PER_ADC), 0, ADC_MAX),
            channel=self.rng.integers(0, VETO_CHANNELS, len(t)),
            energy_keV=energy,
            partner_t_ns=partner_t,
        )

    def _compton(self, t0: int, t1: int, rate_hz: float) -> np.ndarray:
        """Compton-scattered gammas: HPGe pulse and AC pulse, delay N(0, ac_delay_sigma_ns).

        The earlier pulse of each pair is drawn uniform in [t0, t1) (the pair process is
        stationary, so this is the same as drawing the HPGe time); a later one past t1 waits
        for the next slice.
        """
        first, energy = self._flat(t0, t1, rate_hz)
        delay = np.rint(self.rng.normal(0.0, self.sim.ac_delay_sigma_ns, len(first)))
        delay = delay.astype(np.int64)
        t_ge = first + np.maximum(-delay, 0)
        t_ac = first + np.maximum(delay, 0)
        return np.concatenate(
            [
                self._hpge(Origin.COMPTON, t_ge, energy, partner_t=t_ac),
                self._veto(Stream.ACV, Origin.AC_PARTNER, t_ac, partner_t=t_ge),
            ]
        )

    def _cosmic(self, t0: int, t1: int, rate_hz: float) -> np.ndarray:
        """Cosmic-induced events: CRV pulse at t_crv, HPGe pulse U(lag_min, lag_max) later."""
        sim = self.sim
        t_crv, energy = self._flat(t0, t1, rate_hz)
        lag = self.rng.uniform(sim.crv_lag_min_ns, sim.crv_lag_max_ns, len(t_crv))
        t_ge = t_crv + np.rint(lag).astype(np.int64)
        return np.concatenate(
            [
                self._hpge(Origin.COSMIC, t_ge, energy, partner_t=t_crv),
                self._veto(Stream.CRV, Origin.CRV_PARTNER, t_crv, partner_t=t_ge),
            ]
        )

    def _signal(self, t0: int, t1: int, power_MW: float) -> np.ndarray:
        """Magnetic-moment recoils, drawn by inverse CDF from online.physics' spectrum."""
        if power_MW <= 0 or self.sim.mu_nu_1e10 <= 0:
            return np.zeros(0, dtype=TRUTH_DTYPE)
        rate_hz, grid, cdf = self._signal_spectrum(power_MW)
        t = self._times(t0, t1, rate_hz)
        energy = np.interp(self.rng.uniform(0.0, 1.0, len(t)), cdf, grid)
        return self._hpge(Origin.SIGNAL, t, energy)

    def _signal_spectrum(self, power_MW: float) -> tuple[float, np.ndarray, np.ndarray]:
        """Total signal rate (Hz) and the inverse-CDF table (grid keV, normalised CDF).

        The table is recomputed only when the power changes (reactor schedule, trips).
        """
        from online.physics import mm_rate_per_kg_keV_day

        if self._signal_table is not None and self._signal_table[0] == power_MW:
            return self._signal_table[1:]
        sim = self.sim
        lo = max(self.detector.threshold_keV, SIGNAL_MIN_KEV)
        grid = np.geomspace(lo, sim.continuum_max_keV, SIGNAL_GRID_POINTS)
        dr_dt = mm_rate_per_kg_keV_day(grid, sim.mu_nu_1e10, power_MW, sim.distance_m)
        cum = np.concatenate([[0.0], np.cumsum(0.5 * (dr_dt[1:] + dr_dt[:-1]) * np.diff(grid))])
        rate_hz = cum[-1] * self.detector.mass_kg / SECONDS_PER_DAY
        cdf = cum / cum[-1] if cum[-1] > 0 else cum
        self._signal_table = (power_MW, rate_hz, grid, cdf)
        return rate_hz, grid, cdf

    def _veto_singles(self, t0: int, t1: int) -> np.ndarray:
        """Uncorrelated veto pulses (gammas in the NaI/CsI, muons in the plastic)."""
        return np.concatenate(
            [
                self._veto(
                    Stream.ACV, Origin.AC_SINGLE, self._times(t0, t1, self.sim.acv_singles_hz)
                ),
                self._veto(
                    Stream.CRV, Origin.CRV_SINGLE, self._times(t0, t1, self.sim.crv_singles_hz)
                ),
            ]
        )

    def _fast_sources(self, t0: int, t1: int, power_MW: float) -> list[np.ndarray]:
        """Fast mode: HPGe sources drawn up to t1 + margin, veto singles near HPGe pulses."""
        margin = self.veto_margin_ns
        if self._hpge_until is None:
            self._hpge_until = self._veto_until = t0  # nothing exists before the first slice
        lo, hi = self._hpge_until, t1 + margin
        hpge = self._hpge_sources(lo, hi, power_MW) if hi > lo else np.zeros(0, TRUTH_DTYPE)
        self._hpge_until = max(lo, hi)
        near = hpge["t_ns"][(hpge["stream"] == Stream.HPGE) & hpge["recorded"]]
        starts, ends = self._union_of_windows(np.sort(near), margin)
        sim = self.sim
        return [
            hpge,
            self._veto(
                Stream.ACV, Origin.AC_SINGLE, self._times_in(starts, ends, sim.acv_singles_hz)
            ),
            self._veto(
                Stream.CRV, Origin.CRV_SINGLE, self._times_in(starts, ends, sim.crv_singles_hz)
            ),
        ]

    def _union_of_windows(self, t: np.ndarray, margin: int) -> tuple[np.ndarray, np.ndarray]:
        """Disjoint half-open intervals [start, end) (ns) covering every [t - m, t + m] not
        covered by an earlier call; sorted."""
        lo = np.maximum(t - margin, self._veto_until)
        hi = t + margin + 1
        new = np.ones(len(t), dtype=bool)
        new[1:] = lo[1:] > hi[:-1]  # equal widths and sorted t: hi is sorted, so this merges
        starts = lo[new]
        ends = hi[np.append(new[1:], True)]
        keep = ends > starts
        if len(ends):
            self._veto_until = max(self._veto_until, int(ends[-1]))
        return starts[keep], ends[keep]

    def _times_in(self, starts: np.ndarray, ends: np.ndarray, rate_hz: float) -> np.ndarray:
        """Times (ns) of a Poisson process of ``rate_hz`` on the intervals [start, end):
        a Poisson count per interval, uniform integer times inside; sorted."""
        length = ends - starts
        n = self.rng.poisson(rate_hz * length * 1e-9)
        t = np.repeat(starts, n) + self.rng.integers(0, np.repeat(length, n), dtype=np.int64)
        return np.sort(t)

    def _apply_dead_time(self, rows: np.ndarray, t0: int, t1: int) -> None:
        """Mark HPGe triggers that hit a busy ADC as not recorded; set ``dead_ns``."""
        idx = np.flatnonzero((rows["stream"] == Stream.HPGE) & rows["recorded"])
        dead = self.sim.adc_dead_time_ns
        t = rows["t_ns"][idx]
        accepted, _ = nonparalysable(t, dead, self.last_trigger_ns + dead)
        rows["recorded"][idx[~accepted]] = False
        triggers = np.concatenate([[self.last_trigger_ns], t[accepted]])
        self.dead_ns = dead_time_ns(triggers, dead, t0, t1)
        self.last_trigger_ns = int(triggers[-1])
