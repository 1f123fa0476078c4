"""Signal recovery end to end: ``nudaq sim generate`` into SQL, then ``nudaq analysis --json``.

One database holds 1000 h reactor OFF, 1000 h ON without signal and 1000 h ON with
mu_nu = 1e-9 mu_B (about 5x the expected 90 % CL limit of that exposure, ~1.9e-10 mu_B).
Checked against the simulator's truth (the configuration), with fixed seeds and bounds of
3 or 4 standard deviations:

- the fitted mu_nu^2 of OFF + ON(signal) is the injected one within 3 sigma;
- OFF + ON(no signal): the fit is zero within 3 sigma, its error is the expected one, and the
  Feldman-Cousins limit lies in the band that |fit| < 3 sigma allows around the expected
  sensitivity (which ``nudaq sensitivity`` gives for the same exposure and background);
- the accidental-veto probabilities from random triggers equal 1 - exp(-R w) for the veto
  rate R (singles plus partners) and the window w;
- the efficiency-corrected OFF background equals sim.flat_cpd plus the X-ray lines' tails
  inside the window.
"""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest
from scipy.stats import norm

from daq.cli import main
from daq.core.config import Config
from online.physics import fwhm_keV
from online.stats.feldman_cousins import fc_upper_limit

HOURS = 1000
MU_NU_MUB = 1e-9
SEED = 11
DAY_S = 86400.0


def nudaq(*args: str) -> dict:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(list(args))
    assert code == 0
    return json.loads(out.getvalue())


def run_spec(generated: dict) -> str:
    numbers = [r["run"] for r in generated["runs"]]
    return f"{numbers[0]}-{numbers[-1]}"


@pytest.fixture(scope="module")
def analyses(tmp_path_factory):
    """(analysis of OFF + ON with signal, analysis of OFF + ON without, generated runs)."""
    db = f"sqlite:///{tmp_path_factory.mktemp('signal') / 'nudaq.sqlite'}"
    common = ["--hours", str(HOURS), "--seed", str(SEED), "--db", db, "--json"]
    off = nudaq("sim", "generate", "--reactor", "off", *common)
    on0 = nudaq("sim", "generate", "--reactor", "on", *common)
    on_mu = nudaq("sim", "generate", "--reactor", "on", "--mu-nu", str(MU_NU_MUB), *common)
    with_signal = nudaq(
        "analysis", "--db", db, "--runs", f"{run_spec(off)},{run_spec(on_mu)}", "--json"
    )
    without = nudaq("analysis", "--db", db, "--runs", f"{run_spec(off)},{run_spec(on0)}", "--json")
    return with_signal, without, {"off": off, "on": on0}


def test_injected_signal_is_fitted_back(analyses):
    with_signal, without, _ = analyses
    assert MU_NU_MUB > 4 * without["expected_limit_90_muB"]  # well above the sensitivity
    fit = with_signal["mu_nu2_1e-20"]
    injected = (MU_NU_MUB / 1e-10) ** 2
    assert fit["value"] == pytest.approx(injected, abs=3 * fit["error"])
    assert with_signal["mu_nu2_interval_90_1e-20"][0] > 0  # a two-sided interval: a discovery


def test_zero_signal_gives_a_limit_consistent_with_the_expected_sensitivity(analyses):
    _, without, generated = analyses
    fit = without["mu_nu2_1e-20"]
    sigma = without["expected_sigma_mu_nu2_1e-20"]
    assert abs(fit["value"]) < 3 * fit["error"]
    assert fit["error"] == pytest.approx(sigma, rel=0.15)
    limit2 = (without["limit_90_muB"] / 1e-10) ** 2
    assert fc_upper_limit(-3.0) * sigma < limit2 < fc_upper_limit(3.0) * sigma
    live_h = {s: generated[s]["total"]["live_s"] / 3600 for s in ("on", "off")}
    planned = nudaq(
        "sensitivity",
        "--on-hours",
        str(live_h["on"]),
        "--off-hours",
        str(live_h["off"]),
        "--background-cpd",
        str(without["background_cpd"]["value"]),
        "--json",
    )
    assert without["expected_limit_90_muB"] == pytest.approx(
        planned["expected_limit_90_muB"], rel=0.05
    )


def test_rt_accidental_probability_matches_the_simulator_truth(analyses):
    for result in analyses[:2]:
        config = Config()
        sim, b, mass = config.sim, config.builder, config.detector.mass_kg
        flat_hz = sim.flat_cpd * mass * sim.continuum_max_keV / DAY_S
        truth = {
            "ac": 1
            - np.exp(
                -(sim.acv_singles_hz + sim.compton_factor * flat_hz)
                * (2 * b.ac_window_ns + 1)
                * 1e-9
            ),
            "crv": 1
            - np.exp(
                -(sim.crv_singles_hz + sim.cosmic_factor * flat_hz)
                * (b.crv_pre_ns + b.crv_post_ns + 1)
                * 1e-9
            ),
        }
        rt_events = result["live_fraction"] * config.frontends.hpge.rt_rate_hz * 2 * HOURS * 3600
        for veto, p in truth.items():
            error = np.sqrt(p * (1 - p) / rt_events)
            assert result["accidental_veto"][veto] == pytest.approx(p, abs=4 * error), veto
        assert result["live_fraction"] == pytest.approx(1.0, abs=4 / np.sqrt(rt_events))


def test_corrected_background_matches_the_injected_level(analyses):
    config = Config()
    sim = config.sim
    lo, hi = config.analysis.window_keV
    tails = 0.0
    for line in sim.xray_lines:
        sigma = fwhm_keV(line.energy_keV, sim.resolution_a_keV, sim.resolution_b_keV) / 2.3548
        inside = norm.cdf(hi, line.energy_keV, sigma) - norm.cdf(lo, line.energy_keV, sigma)
        tails += line.rate_per_kg_day * inside / (hi - lo)
    expected = sim.flat_cpd + tails
    for result in analyses[:2]:
        bkg = result["background_cpd"]
        assert bkg["value"] == pytest.approx(expected, abs=3 * bkg["error"])
    assert analyses[1]["background_on_cpd"]["value"] == pytest.approx(
        expected, abs=3 * analyses[1]["background_on_cpd"]["error"]
    )
