"""Online analysis on arrays: Feldman-Cousins belt, efficiencies, fit, limit, sensitivity.

Ground truth is either published (Feldman & Cousins, PRD 57 (1998) 3873, Table X), derived
here from the model's definition, or the known input of a Poisson simulation.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.optimize import brentq, minimize_scalar
from scipy.stats import norm

from daq.core.errors import AnalysisError
from online import physics
from online.analysis.binning import window_bins
from online.analysis.efficiency import corrected_spectrum, efficiencies
from online.analysis.onoff import SpectrumInput, analyse, background_level
from online.analysis.sensitivity import expected_sensitivity, flat_background
from online.analysis.template import mm_template
from online.stats.feldman_cousins import acceptance_intervals, fc_interval
from online.stats.fit import deviance, fit_mu_nu2, gaussian_sigma, profile_background, toy_fits

EDGES = np.round(np.arange(0.0, 200.0001, 0.2), 6)
FIT_EDGES = np.arange(12.0, 61.0, 1.0)
KS_ON_KGD, KS_OFF_KGD = 1.06 * 4712 / 24, 1.06 * 1250 / 24


# --- Feldman-Cousins ------------------------------------------------------------------


@pytest.mark.parametrize(
    "x0,lo,hi",
    [(-3.0, 0.0, 0.26), (-1.0, 0.0, 0.81), (0.0, 0.0, 1.64), (1.0, 0.0, 2.64), (2.6, 1.02, 4.24)],
)
def test_fc_interval_matches_table_x(x0, lo, hi):
    """FC Table X, Gaussian bounded at 0, 90 % CL (x0 = 2.6 -> [1.02, 4.24] is also the value
    gammapy's test suite quotes from Table X)."""
    got_lo, got_hi = fc_interval(x0, 0.9)
    assert float(got_lo) == pytest.approx(lo, abs=0.006)
    assert float(got_hi) == pytest.approx(hi, abs=0.006)


def test_fc_upper_limit_for_negative_x_from_its_definition():
    """x0 < 0: mu_up solves Phi(x2 - mu) - Phi(x0 - mu) = 0.9 with x2 = mu + sqrt(mu^2 - 2 x0 mu)
    (equal likelihood ratio at both ends of the acceptance interval)."""
    for x0 in (-2.0, -0.5, -0.1):

        def content(mu, x0=x0):
            return norm.cdf(np.sqrt(mu**2 - 2 * x0 * mu)) - norm.cdf(x0 - mu) - 0.9

        assert float(fc_interval(x0)[1]) == pytest.approx(brentq(content, 1e-6, 5), abs=1e-3)


def test_fc_belt_turns_two_sided_at_1_28():
    _, x_high = acceptance_intervals(np.array([0.0]))
    assert x_high[0] == pytest.approx(1.2816, abs=1e-4)
    assert fc_interval(1.2)[0] == 0.0
    assert fc_interval(1.4)[0] > 0.0


def test_fc_coverage_by_gaussian_toys():
    rng = np.random.default_rng(11)
    for mu in (0.0, 0.2, 0.7, 1.5, 3.0, 6.0):
        x = rng.normal(mu, 1.0, 40_000)
        lo, hi = fc_interval(x)
        assert np.mean((lo <= mu) & (mu <= hi)) == pytest.approx(0.9, abs=0.006)


# --- efficiencies and background --------------------------------------------------------


def test_efficiencies_from_random_triggers():
    eff = efficiencies(rt_expected=10_000, rt_events=9_500, rt_ac=300, rt_crv=95, rt_any=390)
    assert eff.live_fraction.value == pytest.approx(0.95)
    assert eff.live_fraction.error == pytest.approx(np.sqrt(9_500) / 10_000)
    assert eff.accidental_ac.value == pytest.approx(300 / 9500)
    assert eff.accidental_ac.error == pytest.approx(np.sqrt(300 / 9500 * 9200 / 9500 / 9500))
    assert eff.accidental_crv.value == pytest.approx(0.01)
    assert eff.total == pytest.approx(0.95 * (1 - 390 / 9500))
    counts = np.array([0, 4, 100])
    corrected, err = corrected_spectrum(counts, eff)
    assert corrected == pytest.approx(counts / eff.total)
    assert err == pytest.approx(np.sqrt(counts) / eff.total)


@pytest.mark.parametrize(
    "args,match",
    [
        ((0, 0, 0, 0, 0), "no random triggers"),
        ((100, 0, 0, 0, 0), "no random-trigger events"),
        ((100, 50, 60, 0, 60), "exceed"),
        ((100, 50, 10, 10, 25), "inconsistent"),
        ((100, 50, 50, 0, 50), "every random trigger"),
    ],
)
def test_efficiencies_reject_impossible_counts(args, match):
    with pytest.raises(AnalysisError, match=match):
        efficiencies(*args)


def test_background_level_recovers_injected_rate():
    rng = np.random.default_rng(3)
    eff = efficiencies(1000, 900, 50, 20, 68)
    exposure, cpd, width = 40.0, 1.3, 48.0
    values = []
    for _ in range(200):
        n = rng.poisson(cpd * exposure * eff.total * width)
        values.append(background_level(n, exposure, eff, width))
    pulls = [(m.value - cpd) / m.error for m in values]
    assert np.mean(pulls) == pytest.approx(0.0, abs=0.25)
    assert np.std(pulls) == pytest.approx(1.0, abs=0.15)
    assert background_level(0, exposure, eff, width).error > 0
    with pytest.raises(AnalysisError):
        background_level(10, -1.0, eff, width)


def test_window_bins_rebin_and_validate():
    edges, index = window_bins(EDGES, (12.0, 60.0))
    assert edges == pytest.approx(FIT_EDGES)
    counts = np.ones(len(EDGES) - 1)
    assert np.bincount(index[index >= 0]).tolist() == [5] * 48
    assert counts[index >= 0].sum() == 240
    with pytest.raises(AnalysisError, match="empty"):
        window_bins(EDGES, (60.0, 12.0))
    with pytest.raises(AnalysisError, match="not a stored bin edge"):
        window_bins(EDGES, (12.1, 60.0))
    with pytest.raises(AnalysisError, match="outside"):
        window_bins(EDGES, (12.0, 600.0))


# --- the likelihood fit -------------------------------------------------------------------


def test_profiled_background_maximises_the_likelihood():
    rng = np.random.default_rng(5)
    s = rng.uniform(0.01, 0.1, 20)
    n, m = rng.poisson(30, 20).astype(float), rng.poisson(8, 20).astype(float)
    n[0], m[1] = 0, 0
    for theta in (-3.0, 0.0, 4.0):
        b = profile_background(theta, n, m, 200.0, 50.0, s)
        for i in range(20):

            def nll(bi, i=i, theta=theta):
                nu, om = 200.0 * (bi + theta * s[i]), 50.0 * bi
                return (
                    nu
                    + om
                    - (n[i] * np.log(nu) if n[i] else 0)
                    - (m[i] * np.log(om) if m[i] else 0)
                )

            lo = max(0.0, -theta * s[i]) + 1e-9
            best = minimize_scalar(
                nll, bounds=(lo, 2.0), method="bounded", options={"xatol": 1e-10}
            )
            assert b[i] == pytest.approx(best.x, abs=1e-6)


def test_fit_recovers_asimov_signal_and_its_error():
    s = mm_template(FIT_EDGES, 2900.0, 28.0)
    b = flat_background(FIT_EDGES, 1.0)
    for theta in (0.0, 4.0, 25.0):
        fit = fit_mu_nu2(KS_ON_KGD * (b + theta * s), KS_OFF_KGD * b, KS_ON_KGD, KS_OFF_KGD, s)
        assert fit.mu_nu2 == pytest.approx(theta, abs=1e-4)
        assert fit.deviance == pytest.approx(0.0, abs=1e-6)
        assert fit.background == pytest.approx(b, rel=1e-5)
    fit0 = fit_mu_nu2(KS_ON_KGD * b, KS_OFF_KGD * b, KS_ON_KGD, KS_OFF_KGD, s)
    assert fit0.error == pytest.approx(gaussian_sigma(s, b, KS_ON_KGD, KS_OFF_KGD), rel=0.01)
    assert deviance(fit0.error, KS_ON_KGD * b, KS_OFF_KGD * b, KS_ON_KGD, KS_OFF_KGD, s) == (
        pytest.approx(1.0, rel=0.02)
    )


def test_signal_recovery_and_fc_coverage_with_poisson_toys():
    """Toys at the Kuo-Sheng exposure: pulls are standard normal and the FC 90 % interval
    covers the true mu_nu^2 in 90 % +- a few % of them, with and without signal."""
    s = mm_template(FIT_EDGES, 2900.0, 28.0)
    b = flat_background(FIT_EDGES, 1.0)
    rng = np.random.default_rng(7)
    for theta in (0.0, 1.5, 9.0):
        toys = toy_fits(s, b, KS_ON_KGD, KS_OFF_KGD, 400, theta, rng=rng)
        pulls = (toys.mu_nu2 - theta) / toys.error
        assert np.mean(pulls) == pytest.approx(0.0, abs=0.15)
        assert np.std(pulls) == pytest.approx(1.0, abs=0.1)
        coverage = np.mean((toys.lower <= theta) & (theta <= toys.upper))
        assert coverage == pytest.approx(0.9, abs=0.04)


# --- sensitivity ------------------------------------------------------------------------


def test_sensitivity_at_kuo_sheng_is_of_order_texono():
    """TEXONO (PRL 90 (2003) 131802) published 1.3e-10 mu_B from this exposure."""
    sens = expected_sensitivity(1.06, 4712 / 24, 1250 / 24, 1.0)
    assert 1.0e-10 < sens.limit_muB < 2.0e-10
    assert sens.limit_mu_nu2 == pytest.approx(1.6449 * sens.sigma_mu_nu2, rel=1e-3)


def test_sensitivity_follows_background_dominated_scaling():
    """mu_nu^2 limit ~ sqrt(B / (M t)) / phi, phi ~ P / L^2."""
    ref = expected_sensitivity(1.0, 100.0, 100.0, 1.0).limit_mu_nu2
    cases = {
        (1.0, 100.0, 100.0, 4.0, 2900.0, 28.0): 2.0,
        (4.0, 100.0, 100.0, 1.0, 2900.0, 28.0): 0.5,
        (1.0, 400.0, 400.0, 1.0, 2900.0, 28.0): 0.5,
        (1.0, 100.0, 100.0, 1.0, 5800.0, 28.0): 0.5,
        (1.0, 100.0, 100.0, 1.0, 2900.0, 56.0): 4.0,
    }
    for (mass, on, off, bkg, power, dist), factor in cases.items():
        got = expected_sensitivity(mass, on, off, bkg, power_MW=power, distance_m=dist)
        assert got.limit_mu_nu2 == pytest.approx(factor * ref, rel=1e-9)


def test_sensitivity_agrees_with_toy_median():
    s = mm_template(FIT_EDGES, 2900.0, 28.0)
    b = flat_background(FIT_EDGES, 1.0)
    sens = expected_sensitivity(1.06, 4712 / 24, 1250 / 24, 1.0)
    toys = toy_fits(s, b, KS_ON_KGD, KS_OFF_KGD, 600, 0.0, rng=np.random.default_rng(8))
    assert np.median(toys.upper) == pytest.approx(sens.limit_mu_nu2, rel=0.07)
    assert np.std(toys.mu_nu2) == pytest.approx(sens.sigma_mu_nu2, rel=0.08)


def test_sensitivity_rejects_invalid_plans():
    for args in [(-1.0, 1, 1, 1), (1.0, 0, 1, 1), (1.0, 1, -5, 1), (1.0, 1, 1, float("nan"))]:
        with pytest.raises(AnalysisError):
            expected_sensitivity(*args)
    with pytest.raises(AnalysisError, match="window"):
        expected_sensitivity(1.0, 1, 1, 1, window_keV=(30.0, 30.0))


# --- analyse() end to end on simulated spectra --------------------------------------------


def simulate(power_MW, days, mu_nu_1e10, rng, cpd=1.0, live=0.97, p_ac=0.04, p_crv=0.02):
    """Stored-binning candidate spectrum and RT counts of one reactor state, drawn here."""
    mass = 1.06
    expected = physics.counts_in_bins(
        EDGES,
        lambda t: cpd + physics.mm_rate_per_kg_keV_day(t, mu_nu_1e10, power_MW, 28.0),
        resolution_keV=(0.6, 0.028),
    )
    p_any = 1 - (1 - p_ac) * (1 - p_crv)
    counts = rng.poisson(expected * mass * days * live * (1 - p_any))
    rt_expected = 0.1 * days * 86400
    rt = rng.binomial(int(rt_expected), live)
    ac = rng.binomial(rt, p_ac)
    crv_only = rng.binomial(rt - ac, p_crv)
    both = rng.binomial(ac, p_crv)
    return SpectrumInput(
        EDGES, counts, mass * days, rt_expected, rt, ac, crv_only + both, ac + crv_only, power_MW
    )


def test_analyse_recovers_injected_signal():
    rng = np.random.default_rng(31)
    on, off = simulate(2900.0, 196.3, 3.0, rng), simulate(0.0, 52.1, 0.0, rng)
    result = analyse(on, off, resolution_keV=(0.6, 0.028))
    out = json.loads(json.dumps(result.to_json(), allow_nan=False))
    fit = out["mu_nu2_1e-20"]
    assert fit["value"] == pytest.approx(9.0, abs=3 * fit["error"])
    assert out["mu_nu2_interval_90_1e-20"][0] > 0  # significant: two-sided interval
    assert out["live_fraction"] == pytest.approx(0.97, abs=0.003)
    assert out["accidental_veto"]["ac"] == pytest.approx(0.04, abs=0.003)
    assert out["accidental_veto"]["crv"] == pytest.approx(0.02, abs=0.003)
    bkg = out["background_cpd"]
    assert bkg["value"] == pytest.approx(1.0, abs=3 * bkg["error"])
    assert out["exposure_kg_day"]["on"] == pytest.approx(1.06 * 196.3 * 0.97, rel=0.01)


def test_analyse_without_signal_gives_limit_near_expected():
    rng = np.random.default_rng(32)
    on, off = simulate(2900.0, 196.3, 0.0, rng), simulate(0.0, 52.1, 0.0, rng)
    out = analyse(on, off).to_json()
    assert out["expected_limit_90_muB"] == pytest.approx(1.65e-10, rel=0.1)
    fit = out["mu_nu2_1e-20"]
    assert abs(fit["value"]) < 3 * fit["error"]
    # The FC upper limit for a measurement within +-2 sigma of zero lies between
    # FC_up(-2) = 0.40 and FC_up(2) = 3.64 sigma.
    limit_mu2 = (out["limit_90_muB"] / 1e-10) ** 2
    assert 0.40 * fit["error"] < limit_mu2 < 3.7 * fit["error"]


@pytest.mark.parametrize(
    "change,match",
    [
        (dict(off_exposure=-5.0), "negative exposure"),
        (dict(off_exposure=0.0), "no reactor OFF data"),
        (dict(window=(40.0, 40.0)), "empty"),
        (dict(on_power=0.0), "zero thermal power"),
        (dict(off_rt=0.0), "no random triggers"),
    ],
)
def test_analyse_rejects_invalid_input(change, match):
    rng = np.random.default_rng(33)
    on, off = simulate(2900.0, 10.0, 0.0, rng), simulate(0.0, 5.0, 0.0, rng)
    if "off_exposure" in change:
        off = SpectrumInput(**{**off.__dict__, "exposure_kg_day": change["off_exposure"]})
    if "on_power" in change:
        on = SpectrumInput(**{**on.__dict__, "power_MW": change["on_power"]})
    if "off_rt" in change:
        off = SpectrumInput(**{**off.__dict__, "rt_expected": change["off_rt"]})
    with pytest.raises(AnalysisError, match=match):
        analyse(on, off, window_keV=change.get("window", (12.0, 60.0)))


def test_analyse_with_no_counts_reports_an_error_not_nan():
    rng = np.random.default_rng(34)
    on, off = simulate(2900.0, 1.0, 0.0, rng), simulate(0.0, 1.0, 0.0, rng)
    empty = np.zeros_like(on.counts)
    on = SpectrumInput(**{**on.__dict__, "counts": empty})
    off = SpectrumInput(**{**off.__dict__, "counts": empty})
    with pytest.raises(AnalysisError):
        analyse(on, off)


# --- nudaq analysis on a database filled through the spectrum filler -------------------


def _store_run(engine, number, spec: SpectrumInput, on: bool, quality="unchecked"):
    """Store one run's candidate spectrum, exposure and RT counts the way the DAQ does."""
    from daq.build.increments import BuildUpdate, ExposureDelta, ReactorChange
    from daq.core.config import Config
    from daq.core.records import Category
    from daq.store.filler import SpectrumFiller
    from daq.store.runs import create_run, end_run, set_quality
    from daq.store.session import session_scope

    config = Config.model_validate({"spectrum": {"bin_width_keV": 0.2, "max_keV": 200.0}})
    with session_scope(engine) as session:
        create_run(session, number, config, simulated=True)
    update = BuildUpdate.empty(config.spectrum.n_bins)
    update.hist[int(on), Category.CANDIDATE] = spec.counts
    elapsed_ns = int(round(spec.exposure_kg_day / config.detector.mass_kg * 86400e9))
    update.exposure["on" if on else "off"] = ExposureDelta(
        elapsed_ns=elapsed_ns,
        rt_events=spec.rt_events,
        rt_ac=spec.rt_ac,
        rt_crv=spec.rt_crv,
        rt_any=spec.rt_any,
        events_candidate=int(spec.counts.sum()),
    )
    update.reactor_changes.append(ReactorChange(0, on, spec.power_MW))
    filler = SpectrumFiller(engine, number, "", config.spectrum.n_bins)
    filler.add(update)
    filler.close_run([], end_ns=elapsed_ns)
    with session_scope(engine) as session:
        end_run(session, number)
        if quality != "unchecked":
            set_quality(session, number, quality, "test")


def test_nudaq_analysis_reads_runs_from_the_database(db_engine, db_url, tmp_path, capsys):
    from daq.cli import main

    rng = np.random.default_rng(41)
    on = simulate(2900.0, 196.3, 4.0, rng)
    off = simulate(0.0, 52.1, 0.0, rng)
    _store_run(db_engine, 1, on, on=True, quality="good")
    _store_run(db_engine, 2, off, on=False, quality="good")
    _store_run(db_engine, 3, simulate(0.0, 20.0, 0.0, rng, cpd=30.0), on=False, quality="bad")
    _store_run(db_engine, 4, simulate(0.0, 20.0, 0.0, rng, cpd=30.0), on=False)

    plot = tmp_path / "analysis.png"
    assert main(["analysis", "--db", db_url, "--json", "--plot", str(plot)]) == 0
    out = json.loads(capsys.readouterr().out)
    direct = analyse(on, off, resolution_keV=(0.6, 0.028)).to_json()
    assert out["runs"] == [1, 2]
    assert out["mu_nu2_1e-20"]["value"] == pytest.approx(direct["mu_nu2_1e-20"]["value"], rel=1e-4)
    assert out["mu_nu2_1e-20"]["value"] == pytest.approx(16.0, abs=3 * out["mu_nu2_1e-20"]["error"])
    assert out["exposure_kg_day"]["on"] == pytest.approx(direct["exposure_kg_day"]["on"], rel=1e-6)
    assert out["background_cpd"]["value"] == pytest.approx(
        1.0, abs=3 * out["background_cpd"]["error"]
    )
    for key in ("limit_90_muB", "expected_limit_90_muB", "live_fraction"):
        assert np.isfinite(out[key])
    assert plot.stat().st_size > 10_000 and plot.read_bytes()[:4] == b"\x89PNG"

    # The unchecked run 4 joins with --quality usable, the bad run 3 only with --quality all.
    assert main(["analysis", "--db", db_url, "--json", "--quality", "usable"]) == 0
    assert json.loads(capsys.readouterr().out)["runs"] == [1, 2, 4]
    assert main(["analysis", "--db", db_url, "--json", "--quality", "all"]) == 0
    all_runs = json.loads(capsys.readouterr().out)
    assert all_runs["runs"] == [1, 2, 3, 4] and all_runs["background_cpd"]["value"] > 5.0

    # User errors: one line on stderr, exit code 2, no traceback.
    for argv, message in [
        (["--runs", "99"], "run 99 is not in the database"),
        (["--runs", "4"], "none of the selected runs is good (runs by quality: 1 unchecked)"),
        (["--runs", "1"], "no reactor OFF data"),
        (["--window", "40:20"], "empty energy window"),
        (["--window", "12.1:60"], "not a stored bin edge"),
        (["--plot", str(tmp_path / "x.jpg")], "extension"),
    ]:
        assert main(["analysis", "--db", db_url, *argv]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and "nan" not in err.lower()


def test_live_analysis_appends_history_rows(db_engine):
    from sqlalchemy import select

    from daq.core.config import Config
    from daq.store.models import AnalysisHistory
    from daq.store.session import session_scope
    from online.analysis.live import record_live_analysis

    rng = np.random.default_rng(42)
    _store_run(db_engine, 1, simulate(2900.0, 30.0, 0.0, rng), on=True)
    partial = record_live_analysis(db_engine, Config(), 1)
    assert partial["exposure_on_kg_day"] == pytest.approx(1.06 * 30.0 * 0.97, rel=0.01)
    assert partial["exposure_off_kg_day"] == 0.0
    assert partial["live_fraction"] == pytest.approx(0.97, abs=0.005)
    assert partial["background_cpd"] == pytest.approx(1.0, abs=4 * partial["background_cpd_error"])
    assert "limit_90_muB" not in partial

    _store_run(db_engine, 2, simulate(0.0, 10.0, 0.0, rng), on=False)
    full = record_live_analysis(db_engine, Config(), 2)
    assert full["exposure_off_kg_day"] > 0 and full["limit_90_muB"] > 0
    assert full["accidental_ac"] == pytest.approx(0.04, abs=0.005)
    with session_scope(db_engine, readonly=True) as session:
        rows = session.scalars(select(AnalysisHistory).order_by(AnalysisHistory.id)).all()
        assert [r.run_number for r in rows] == [1, 2]
        assert rows[0].limit_90_muB is None and rows[1].limit_90_muB == pytest.approx(
            full["limit_90_muB"]
        )


def test_nudaq_analysis_on_a_database_without_tables(tmp_path, capsys):
    from daq.cli import main

    assert main(["analysis", "--db", f"sqlite:///{tmp_path / 'empty.sqlite'}"]) == 2
    err = capsys.readouterr().err
    assert "cannot use the database" in err and "Traceback" not in err
