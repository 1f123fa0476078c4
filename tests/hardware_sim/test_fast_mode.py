"""The generator's fast mode against its definition and against the pulse-level simulation.

Definition: every HPGe source as in the full simulation, veto singles only on the union of
the windows [t - m, t + m] around triggered HPGe pulses, with the full rate there. Against
the pulse-level simulation, both through the same event builder (hardware_sim.fastsim):
the same accidental-veto fractions of random triggers (and both equal to the truth
1 - exp(-R w)), the same category fractions, the same spectra within statistics, the same
live fraction.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from daq.build.increments import REACTOR_STATES, BuildUpdate
from daq.build.windows import max_reach_ns
from daq.core.config import Config
from daq.core.records import FLAG_RT, Category, Stream
from hardware_sim.fastsim import RunPlan, build_run
from hardware_sim.generator import Generator, Origin

S = 10**9
DAY_S = 86400.0


def busy_config() -> Config:
    """High rates, so a short exposure has statistics of accidentals and spectra."""
    config = Config()
    sim = config.sim
    sim.flat_cpd = 2000.0
    sim.continuum_max_keV = 200.0
    sim.rt_rate_hz = config.frontends.hpge.rt_rate_hz = 50.0
    sim.acv_singles_hz = 5000.0
    sim.crv_singles_hz = 1000.0
    sim.adc_dead_time_ns = 200_000
    return config


def fast_slices(config: Config, seed: int, n: int, slice_s: float):
    margin = max_reach_ns(config.builder)
    gen = Generator(config.sim, config.detector, seed, veto_margin_ns=margin)
    edges = (np.arange(n + 1) * slice_s * S).astype(np.int64) + 7 * S
    return [
        (int(a), int(b), *gen.generate(int(a), int(b), 2900.0))
        for a, b in zip(edges[:-1], edges[1:], strict=True)
    ]


@pytest.fixture(scope="module")
def fast_run():
    config = busy_config()
    slices = fast_slices(config, seed=21, n=40, slice_s=50.0)
    return config, slices, np.concatenate([s[3] for s in slices])


def test_slices_hold_only_their_pulses_sorted(fast_run):
    _, slices, _ = fast_run
    for t0, t1, pulses, truth in slices:
        assert np.all((truth["t_ns"] >= t0) & (truth["t_ns"] < t1))
        assert np.all(np.diff(truth["t_ns"]) >= 0)
        for stream, p in pulses.items():
            assert np.all(np.diff(p["t_ns"]) >= 0), stream


def test_hpge_sources_have_full_rates(fast_run):
    config, slices, truth = fast_run
    sim, mass = config.sim, config.detector.mass_kg
    exposure_s = (slices[-1][1] - slices[0][0]) / S
    flat = sim.flat_cpd * mass * sim.continuum_max_keV / DAY_S
    expected_hz = {
        Origin.CONTINUUM: flat,
        Origin.COMPTON: sim.compton_factor * flat,
        Origin.AC_PARTNER: sim.compton_factor * flat,
        Origin.COSMIC: sim.cosmic_factor * flat,
        Origin.RT: sim.rt_rate_hz,
    }
    for origin, rate in expected_hz.items():
        n = int((truth["origin"] == origin).sum())
        assert abs(n - rate * exposure_s) < 5 * np.sqrt(rate * exposure_s), origin.name


def test_veto_singles_only_near_hpge_pulses_at_full_rate(fast_run):
    config, slices, truth = fast_run
    margin = max_reach_ns(config.builder)
    t_start = slices[0][0]
    ge = truth[truth["stream"] == Stream.HPGE]
    # triggered (above threshold, or a random trigger), recorded or lost to dead time
    triggered = ge[
        (ge["flags"] & FLAG_RT != 0)
        | (ge["adc"] * config.sim.gain_keV_per_adc >= config.detector.threshold_keV)
    ]["t_ns"]
    covered = _union_length(np.maximum(triggered - margin, t_start), triggered + margin + 1)
    for origin, rate_hz in (
        (Origin.AC_SINGLE, config.sim.acv_singles_hz),
        (Origin.CRV_SINGLE, config.sim.crv_singles_hz),
    ):
        t = truth["t_ns"][truth["origin"] == origin]
        i = np.searchsorted(triggered, t)  # nearest triggered HPGe pulse on either side
        before = np.abs(t - triggered[np.maximum(i - 1, 0)])
        after = np.abs(triggered[np.minimum(i, len(triggered) - 1)] - t)
        assert np.all(np.minimum(before, after) <= margin), origin.name
        assert np.all(t >= t_start)
        expected = rate_hz * covered * 1e-9
        assert abs(len(t) - expected) < 5 * np.sqrt(expected), origin.name


def _union_length(lo: np.ndarray, hi: np.ndarray) -> int:
    """Length (ns) of the union of the sorted equal-width intervals [lo, hi)."""
    total, end = 0, -(2**62)
    for a, b in zip(lo.tolist(), hi.tolist(), strict=True):
        a = max(a, end)
        if b > a:
            total += b - a
            end = b
    return total


def test_same_seed_same_pulses():
    config = busy_config()
    a = fast_slices(config, 5, 3, 10.0)
    b = fast_slices(config, 5, 3, 10.0)
    assert all(np.array_equal(x[3], y[3]) for x, y in zip(a, b, strict=True))


# --- fast against pulse-level, through the event builder ------------------------------------


def total(config: Config, plan: RunPlan, fast: bool) -> BuildUpdate:
    out = BuildUpdate.empty(config.spectrum.n_bins)
    for update in build_run(config, plan, chunk_s=50.0 if not fast else 3600.0, fast=fast):
        out.merge(update)
    return out


@pytest.fixture(scope="module")
def fast_and_full():
    config = busy_config()
    duration_ns = 1200 * S
    full = total(config, RunPlan(1, 10 * S, duration_ns, 2900.0, (1, 1)), fast=False)
    fast = total(config, RunPlan(2, 10 * S, duration_ns, 2900.0, (1, 2)), fast=True)
    return config, full, fast


def z_two_proportions(k1: int, n1: int, k2: int, n2: int) -> float:
    p = (k1 + k2) / (n1 + n2)
    return (k1 / n1 - k2 / n2) / np.sqrt(p * (1 - p) * (1 / n1 + 1 / n2))


def test_accidental_veto_fractions_match_full_and_truth(fast_and_full):
    config, full, fast = fast_and_full
    sim, b, mass = config.sim, config.builder, config.detector.mass_kg
    flat = sim.flat_cpd * mass * sim.continuum_max_keV / DAY_S
    ac_hz = sim.acv_singles_hz + sim.compton_factor * flat
    crv_hz = sim.crv_singles_hz + sim.cosmic_factor * flat
    p_ac = 1 - np.exp(-ac_hz * (2 * b.ac_window_ns + 1) * 1e-9)
    p_crv = 1 - np.exp(-crv_hz * (b.crv_pre_ns + b.crv_post_ns + 1) * 1e-9)
    p_any = 1 - (1 - p_ac) * (1 - p_crv)
    a, f = full.exposure["on"], fast.exposure["on"]
    assert a.rt_events > 50_000 and f.rt_events > 50_000
    for field, truth in (("rt_ac", p_ac), ("rt_crv", p_crv), ("rt_any", p_any)):
        k_full, k_fast = getattr(a, field), getattr(f, field)
        assert abs(z_two_proportions(k_full, a.rt_events, k_fast, f.rt_events)) < 4, field
        for k, n in ((k_full, a.rt_events), (k_fast, f.rt_events)):
            assert abs(k - n * truth) < 4 * np.sqrt(n * truth * (1 - truth)), (field, k, n * truth)


def test_category_fractions_match_full(fast_and_full):
    _, full, fast = fast_and_full
    a, f = full.exposure["on"], fast.exposure["on"]
    assert abs(a.events_all - f.events_all) < 5 * np.sqrt(a.events_all + f.events_all)
    for field in ("events_ac", "events_crv", "events_candidate"):
        z = z_two_proportions(getattr(a, field), a.events_all, getattr(f, field), f.events_all)
        assert abs(z) < 4, field


@pytest.mark.parametrize("category", [Category.ALL, Category.AC, Category.CRV, Category.CANDIDATE])
def test_spectra_match_full_within_statistics(fast_and_full, category):
    config, full, fast = fast_and_full
    on = REACTOR_STATES.index("on")
    per_bin = 25  # stored 0.2 keV bins -> 5 keV
    n_keep = int(config.sim.continuum_max_keV / config.spectrum.bin_width_keV) // per_bin
    rebin = (slice(0, n_keep * per_bin),)
    a = full.hist[on, category][rebin].reshape(n_keep, per_bin).sum(axis=1)
    f = fast.hist[on, category][rebin].reshape(n_keep, per_bin).sum(axis=1)
    assert a.sum() > 2000 and f.sum() > 2000
    table = np.array([a, f])
    table = table[:, table.sum(axis=0) >= 10]
    assert stats.chi2_contingency(table).pvalue > 1e-3
    # and the unbinned shape: KS on the 5 keV-bin cumulative distributions
    ks = np.max(np.abs(np.cumsum(a) / a.sum() - np.cumsum(f) / f.sum()))
    n_eff = a.sum() * f.sum() / (a.sum() + f.sum())
    assert ks < 1.95 / np.sqrt(n_eff)  # 0.1 % KS critical value


def test_live_fraction_is_one_minus_dead_fraction(fast_and_full):
    config, full, fast = fast_and_full
    rate = config.frontends.hpge.rt_rate_hz
    for update in (full, fast):
        ex = update.exposure["on"]
        measured = ex.rt_events / (rate * ex.elapsed_ns * 1e-9)
        error = np.sqrt(ex.rt_events) / (rate * ex.elapsed_ns * 1e-9)
        assert ex.dead_ns / ex.elapsed_ns > 0.005  # the dead time is big enough to matter
        assert measured == pytest.approx(ex.live_ns / ex.elapsed_ns, abs=4 * error)
