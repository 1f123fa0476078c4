"""The physics generator against its configuration: rates, shapes, resolution, dead time,
partners and slicing, over long simulated exposures with small rates."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from sim_host import pulse_fields

from daq.core.config import Config, XrayLine
from daq.core.records import FLAG_RT, Stream
from hardware_sim.generator import TRUTH_DTYPE, Generator, Origin
from online.physics import mm_rate_per_kg_keV_day

S = 10**9
DAY_S = 86400.0
EXPOSURE_S = 100_000
N_SLICES = 100


def long_config() -> Config:
    config = Config()
    sim = config.sim
    sim.flat_cpd = 200.0
    sim.continuum_max_keV = 100.0
    sim.xray_lines = [
        XrayLine(energy_keV=10.37, rate_per_kg_day=5000.0),
        XrayLine(energy_keV=1.30, rate_per_kg_day=2000.0),
    ]
    sim.rt_rate_hz = 0.05
    sim.acv_singles_hz = 0.2
    sim.crv_singles_hz = 0.1
    return config


@pytest.fixture(scope="module")
def long_run():
    """10^5 simulated seconds in 100 slices: (config, slices, all truth rows)."""
    config = long_config()
    gen = Generator(config.sim, config.detector, seed=11)
    edges = np.linspace(0, EXPOSURE_S * S, N_SLICES + 1).astype(np.int64) + 5 * S
    slices = []
    for t0, t1 in zip(edges[:-1], edges[1:], strict=True):
        pulses, truth = gen.generate(int(t0), int(t1), 2900.0)
        slices.append((int(t0), int(t1), pulses, truth, gen.dead_ns))
    return config, slices, np.concatenate([s[3] for s in slices])


def assert_poisson(observed: int, expected: float, what: str) -> None:
    assert abs(observed - expected) < 5 * np.sqrt(expected) + 1, (what, observed, expected)


def test_rates_of_every_origin(long_run):
    config, _, truth = long_run
    sim, mass = config.sim, config.detector.mass_kg
    flat = sim.flat_cpd * mass * sim.continuum_max_keV / DAY_S
    xray = sum(line.rate_per_kg_day for line in sim.xray_lines) * mass / DAY_S
    expected_hz = {
        Origin.CONTINUUM: flat,
        Origin.COMPTON: sim.compton_factor * flat,
        Origin.AC_PARTNER: sim.compton_factor * flat,
        Origin.COSMIC: sim.cosmic_factor * flat,
        Origin.CRV_PARTNER: sim.cosmic_factor * flat,
        Origin.XRAY: xray,
        Origin.RT: sim.rt_rate_hz,
        Origin.AC_SINGLE: sim.acv_singles_hz,
        Origin.CRV_SINGLE: sim.crv_singles_hz,
        Origin.SIGNAL: 0.0,
    }
    for origin, rate in expected_hz.items():
        n = int((truth["origin"] == origin).sum())
        assert_poisson(n, rate * EXPOSURE_S, origin.name)
    paired = truth["origin"] == Origin.COMPTON
    assert paired.sum() == (truth["origin"] == Origin.AC_PARTNER).sum()


def test_slices_hold_only_their_pulses_sorted(long_run):
    _, slices, _ = long_run
    for t0, t1, pulses, truth, _ in slices:
        assert truth.dtype == TRUTH_DTYPE
        assert np.all((truth["t_ns"] >= t0) & (truth["t_ns"] < t1))
        assert np.all(np.diff(truth["t_ns"]) >= 0)
        assert set(pulses) == {Stream.HPGE, Stream.ACV, Stream.CRV}
        for stream, p in pulses.items():
            rows = truth[(truth["stream"] == stream) & truth["recorded"]]
            assert np.array_equal(p, pulse_fields(rows))
            assert np.all(np.diff(p["t_ns"]) >= 0)
        veto = truth["stream"] != Stream.HPGE
        assert truth["recorded"][veto].all()
        assert np.all(truth["channel"][veto] < 4)


def test_continuum_is_flat(long_run):
    config, _, truth = long_run
    flat = np.isin(truth["origin"], [Origin.CONTINUUM, Origin.COMPTON, Origin.COSMIC])
    counts, _ = np.histogram(truth["energy_keV"][flat], bins=20, range=(0, 100))
    assert stats.chisquare(counts).pvalue > 1e-3
    gain = config.sim.gain_keV_per_adc
    measured = truth["adc"][flat] * gain
    counts, _ = np.histogram(measured, bins=16, range=(10, 90))
    assert stats.chisquare(counts).pvalue > 1e-3


def test_xray_line_width_matches_resolution(long_run):
    config, _, truth = long_run
    sim = config.sim
    line = truth[(truth["origin"] == Origin.XRAY) & (truth["energy_keV"] == 10.37)]
    measured = line["adc"] * sim.gain_keV_per_adc
    sigma = np.sqrt(sim.resolution_a_keV**2 + sim.resolution_b_keV * 10.37) / 2.35482
    assert len(line) > 4000
    assert abs(measured.mean() - 10.37) < 5 * sigma / np.sqrt(len(line))
    assert measured.std() == pytest.approx(sigma, rel=0.05)


def test_threshold_and_adc(long_run):
    config, _, truth = long_run
    gain, thr = config.sim.gain_keV_per_adc, config.detector.threshold_keV
    ge = truth[(truth["stream"] == Stream.HPGE) & (truth["flags"] & FLAG_RT == 0)]
    assert np.all(ge["adc"][ge["recorded"]] * gain >= thr - gain)
    l_line = ge[ge["energy_keV"] == 1.30]
    assert l_line["recorded"].sum() == 0
    lost = ge["t_ns"][~ge["recorded"] & (ge["adc"] * gain >= thr + gain)]
    triggers = truth[(truth["stream"] == Stream.HPGE) & truth["recorded"]]["t_ns"]
    before = triggers[np.searchsorted(triggers, lost) - 1]
    assert np.all(lost - before < config.sim.adc_dead_time_ns)  # lost only to dead time


def test_random_triggers(long_run):
    _, _, truth = long_run
    rt = truth[truth["origin"] == Origin.RT]
    assert np.all(rt["flags"] == FLAG_RT) and np.all(rt["energy_keV"] == 0)
    assert np.all(rt["stream"] == Stream.HPGE)
    assert rt["recorded"].mean() > 0.999
    assert np.all(truth["flags"][truth["origin"] != Origin.RT] == 0)
    assert np.median(rt["adc"]) < 100  # noise around 0 keV (gain 0.01 keV per count)


def _partners(truth: np.ndarray, origin: Origin, partner: Origin) -> tuple[np.ndarray, np.ndarray]:
    """(event rows, their partner rows), checked to point at each other."""
    events = truth[truth["origin"] == origin]
    others = truth[truth["origin"] == partner]
    others = others[np.argsort(others["t_ns"], kind="stable")]
    idx = np.searchsorted(others["t_ns"], events["partner_t_ns"])
    assert np.all(idx < len(others))
    mates = others[idx]
    assert np.array_equal(mates["t_ns"], events["partner_t_ns"])
    assert np.array_equal(mates["partner_t_ns"], events["t_ns"])
    return events, mates


def test_partner_timing(long_run):
    config, _, truth = long_run
    sim = config.sim
    ge, ac = _partners(truth, Origin.COMPTON, Origin.AC_PARTNER)
    assert np.all(ac["stream"] == Stream.ACV)
    delay = (ac["t_ns"] - ge["t_ns"]).astype(float)
    assert abs(delay.mean()) < 5 * sim.ac_delay_sigma_ns / np.sqrt(len(delay))
    assert delay.std() == pytest.approx(sim.ac_delay_sigma_ns, rel=0.03)
    ge, crv = _partners(truth, Origin.COSMIC, Origin.CRV_PARTNER)
    assert np.all(crv["stream"] == Stream.CRV)
    lag = ge["t_ns"] - crv["t_ns"]
    assert lag.min() >= sim.crv_lag_min_ns and lag.max() <= sim.crv_lag_max_ns
    assert lag.mean() == pytest.approx((sim.crv_lag_min_ns + sim.crv_lag_max_ns) / 2, rel=0.02)
    singles = truth[np.isin(truth["origin"], [Origin.CONTINUUM, Origin.AC_SINGLE])]
    assert np.all(singles["partner_t_ns"] == -1)


def test_dead_time_losses_and_accounting():
    """Non-paralysable: measured rate r / (1 + r D); dead_ns adds up over the slices."""
    config = Config()
    sim = config.sim
    sim.rt_rate_hz, sim.adc_dead_time_ns = 20_000.0, 20_000
    sim.acv_singles_hz = sim.crv_singles_hz = 0.0
    gen = Generator(sim, config.detector, seed=3)
    dead_total, parts = 0, []
    edges = np.linspace(0, 5 * S, 51).astype(np.int64)
    for t0, t1 in zip(edges[:-1], edges[1:], strict=True):
        _, truth = gen.generate(int(t0), int(t1), 0.0)
        dead_total += gen.dead_ns
        parts.append(truth)
    truth = np.concatenate(parts)
    rt = truth[truth["origin"] == Origin.RT]
    d = sim.adc_dead_time_ns
    acc = rt["t_ns"][rt["recorded"]]
    lost = rt["t_ns"][~rt["recorded"]]
    expected = len(rt) / (1 + sim.rt_rate_hz * d * 1e-9)
    assert len(acc) == pytest.approx(expected, rel=0.01)
    assert np.diff(acc).min() >= d
    prev = acc[np.searchsorted(acc, lost, side="right") - 1]
    assert np.all(lost - prev < d)
    overhang = max(0, int(acc[-1]) + d - 5 * S)
    assert dead_total == len(acc) * d - overhang


def test_same_seed_same_pulses():
    config = long_config()
    a = Generator(config.sim, config.detector, seed=5).generate(0, 1000 * S, 2900.0)[1]
    b = Generator(config.sim, config.detector, seed=5).generate(0, 1000 * S, 2900.0)[1]
    c = Generator(config.sim, config.detector, seed=6).generate(0, 1000 * S, 2900.0)[1]
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_signal_injection_follows_the_mm_spectrum():
    mm_rate = mm_rate_per_kg_keV_day
    config = Config()
    sim, det = config.sim, config.detector
    sim.mu_nu_1e10, sim.flat_cpd, sim.rt_rate_hz = 30.0, 0.0, 0.0
    sim.acv_singles_hz = sim.crv_singles_hz = 0.0
    sim.xray_lines = []
    exposure_s = 10**6
    gen = Generator(sim, det, seed=8)
    edges = np.linspace(0, exposure_s * S, 11).astype(np.int64)
    truth = np.concatenate(
        [
            gen.generate(int(a), int(b), 2900.0)[1]
            for a, b in zip(edges[:-1], edges[1:], strict=True)
        ]
    )
    signal = truth[truth["origin"] == Origin.SIGNAL]
    assert len(signal) == len(truth)
    grid = np.linspace(det.threshold_keV, sim.continuum_max_keV, 200_001)
    dr = mm_rate(grid, sim.mu_nu_1e10, 2900.0, sim.distance_m)
    per_kg_day = np.trapezoid(dr, grid)
    assert_poisson(len(signal), per_kg_day * det.mass_kg * exposure_s / DAY_S, "signal")
    bins = np.geomspace(det.threshold_keV, sim.continuum_max_keV, 11)
    observed, _ = np.histogram(signal["energy_keV"], bins)
    cum = np.concatenate([[0], np.cumsum((dr[1:] + dr[:-1]) / 2 * np.diff(grid))])
    expected = np.diff(np.interp(bins, grid, cum))
    expected *= observed.sum() / expected.sum()
    assert stats.chisquare(observed, expected).pvalue > 1e-3
    gen_off = Generator(sim, det, seed=8)
    assert len(gen_off.generate(0, 10**5 * S, 0.0)[1]) == 0
