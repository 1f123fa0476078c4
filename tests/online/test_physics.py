"""online.physics against numbers computed here independently, from cited constants.

References: Vogel & Engel, PRD 39 (1989) 3378 (cross sections); TEXONO, PRD 75 (2007)
012001 and PRL 90 (2003) 131802 (Kuo-Sheng flux 6.4e12 cm^-2 s^-1 at 2.9 GW, 28 m);
Huber, PRC 84 (2011) 024617 and Mueller, PRC 83 (2011) 054615 (spectrum fits);
Ma et al., PRC 88 (2013) 014605 (energy per fission); CODATA 2018 and PDG constants.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.integrate import quad

from online import physics

# Constants typed in from CODATA 2018 / PDG, not taken from the module under test.
ME = 0.51099895  # MeV
ALPHA = 1 / 137.035999084
HBARC_MEV_CM = 197.3269804e-13
GF = 1.1663787e-11  # MeV^-2
S2W = 0.2386
KS_POWER_MW, KS_DISTANCE_M = 2900.0, 28.0


def mm_xsec(e, t, mu_1e10):
    """Vogel & Engel Eq. (2): pi alpha^2 / m_e^2 mu^2 (1/T - 1/E), in cm^2/MeV."""
    return np.pi * ALPHA**2 * HBARC_MEV_CM**2 / ME**2 * (mu_1e10 * 1e-10) ** 2 * (1 / t - 1 / e)


def sm_xsec_antinue(e, t):
    """Chiral form (2 G_F^2 m_e / pi)[g_R^2 + g_L^2 (1-y)^2 - g_L g_R m_e T/E^2] for anti-nu_e e,
    g_L = 1/2 + sin^2, g_R = sin^2 (nu_e e has g_L and g_R swapped; Vogel & Engel Eq. 1)."""
    g_l, g_r = 0.5 + S2W, S2W
    bracket = g_r**2 + g_l**2 * (1 - t / e) ** 2 - g_l * g_r * ME * t / e**2
    return 2 * GF**2 * ME / np.pi * HBARC_MEV_CM**2 * bracket


def test_constants():
    assert physics.PI_RE2_CM2 == pytest.approx(2.495e-25, rel=1e-3)
    assert physics.SM_SCALE_CM2_PER_MEV == pytest.approx(4.31e-45, rel=2e-3)
    assert physics.N_E_PER_KG_GE == pytest.approx(2.65e26, rel=2e-3)


def test_flux_at_kuo_sheng_matches_texono():
    """TEXONO quotes 6.4e12 cm^-2 s^-1 for 2.9 GW at 28 m."""
    phi = physics.flux_cm2_s(KS_POWER_MW, KS_DISTANCE_M)
    assert phi == pytest.approx(6.4e12, rel=0.03)
    # Independently: P / E_f * n_nu / (4 pi L^2), E_f from Ma 2013 with the KS fractions,
    # n_nu ~ 6.0 fission products + 1.2 from U-238 capture (physics.md).
    e_f = 0.55 * 202.36 + 0.07 * 205.99 + 0.32 * 211.12 + 0.06 * 214.26
    fissions = 2.9e9 / (e_f * 1.602176634e-13)
    expected = fissions * 7.2 / (4 * np.pi * 2800.0**2)
    assert phi == pytest.approx(expected, rel=0.02)
    assert physics.neutrinos_per_fission() == pytest.approx(7.2, abs=0.1)


def test_flux_scales_with_power_over_distance_squared():
    phi = physics.flux_cm2_s(KS_POWER_MW, KS_DISTANCE_M)
    assert physics.flux_cm2_s(2 * KS_POWER_MW, 2 * KS_DISTANCE_M) == pytest.approx(phi / 2)
    assert physics.flux_cm2_s(0.0, KS_DISTANCE_M) == 0.0
    e = np.linspace(0.0, 10.0, 20001)
    integral = np.trapezoid(physics.flux_spectrum(e, KS_POWER_MW, KS_DISTANCE_M), e)
    assert integral == pytest.approx(phi, rel=2e-3)


def test_spectrum_above_2_mev_is_huber_mueller():
    """Huber 2011 Table III / Mueller 2011 exp-polynomials, as published."""
    huber_u235 = (4.367, -4.577, 2.100, -0.5294, 0.06186, -0.002777)
    for e in (2.5, 4.0, 6.0):
        expected = np.exp(sum(a * e**k for k, a in enumerate(huber_u235)))
        assert physics.fission_spectrum(np.array(e), "U235") == pytest.approx(expected, rel=1e-9)


def test_low_energy_model_is_continuous_and_normalised():
    for iso in physics.ISOTOPES:
        below = physics.fission_spectrum(np.array(2.0 - 1e-9), iso)
        above = physics.fission_spectrum(np.array(2.0 + 1e-9), iso)
        assert below == pytest.approx(above, rel=1e-6)
        total = quad(lambda e, i=iso: physics.fission_spectrum(np.array(e), i), 0, 10, limit=200)
        assert total[0] == pytest.approx(physics.NU_PER_FISSION[iso], rel=2e-3)
        assert physics.fission_spectrum(np.array(1e-3), iso) < 1e-4  # allowed-beta E^2 start


def test_capture_beta_spectra_are_unit_normalised_up_to_q():
    for q, z, a in physics.CAPTURE_BETAS:
        e = np.linspace(0.0, q, 20001)
        area = np.trapezoid(physics.beta_antineutrino_spectrum(e, q, z, a), e)
        assert area == pytest.approx(1.0, rel=1e-3)
        assert physics.beta_antineutrino_spectrum(np.array(q * 1.01), q, z, a) == 0.0


def test_kinematic_limits():
    # T_max = 2E^2/(m_e + 2E): 1 MeV -> 2/(0.511 + 2) MeV
    assert physics.t_max_mev(1.0) == pytest.approx(2.0 / (ME + 2.0))
    # E_min(T) inverts T_max
    for t in (0.001, 0.01, 0.06, 1.0):
        assert physics.t_max_mev(physics.e_nu_min_mev(t)) == pytest.approx(t, rel=1e-12)
    # A 10 keV recoil needs E >= (T + sqrt(T^2 + 2 m_e T))/2 = 55.8 keV
    assert physics.e_nu_min_mev(0.010) == pytest.approx(0.0558, abs=1e-4)
    e = 1.0
    tmax = physics.t_max_mev(e)
    assert physics.dsigma_dT_mm(e, tmax * 1.001, 1.0) == 0.0
    assert physics.dsigma_dT_sm(e, tmax * 1.001) == 0.0
    assert physics.dsigma_dT_mm(e, tmax * 0.999, 1.0) > 0.0


@pytest.mark.parametrize("e,t", [(0.5, 0.01), (1.0, 0.01), (1.0, 0.1), (3.0, 0.05), (5.0, 1.0)])
def test_cross_sections_at_points(e, t):
    assert physics.dsigma_dT_mm(e, t, 1.0) == pytest.approx(mm_xsec(e, t, 1.0), rel=1e-6)
    assert physics.dsigma_dT_sm(e, t) == pytest.approx(sm_xsec_antinue(e, t), rel=1e-6)


def test_cross_section_magnitudes():
    # MM at E = 1 MeV, T = 10 keV, mu = 1e-10: 2.495e-25 * 1e-20 * (100 - 1) /MeV
    assert physics.dsigma_dT_mm(1.0, 0.01, 1.0) == pytest.approx(2.47e-43, rel=5e-3)
    # SM anti-nu_e at T << E: 4.31e-45 [(g_V-g_A)^2 + (g_V+g_A)^2] ~ 1.04e-44 cm^2/MeV
    assert physics.dsigma_dT_sm(3.0, 1e-4) == pytest.approx(4.31e-45 * (0.228 + 2.178), rel=5e-3)
    # Total cross sections for E >> m_e: (G_F^2 m_e E / 2 pi)(a + c/3) with a, c the constant
    # and (1-y)^2 coefficients: ~4.1e-45 E/MeV for anti-nu_e e, ~9.7e-45 E/MeV for nu_e e
    # (the sign flip g_A -> -g_A swaps a and c).
    e = 50.0
    t = np.linspace(0.0, physics.t_max_mev(e), 200001)[1:]
    anti = np.trapezoid(physics.dsigma_dT_sm(e, t), t) / e
    nue = np.trapezoid(physics.dsigma_dT_sm(e, t, antineutrino=False), t) / e
    assert anti == pytest.approx(4.31e-45 * (4 * S2W**2 + (1 + 2 * S2W) ** 2 / 3), rel=0.01)
    assert nue == pytest.approx(4.31e-45 * ((1 + 2 * S2W) ** 2 + 4 * S2W**2 / 3), rel=0.01)


def _direct_rate(xsec, t_kev):
    """N_e int phi(E) dsigma/dT dE by quadrature, in counts per kg keV day."""
    t = t_kev * 1e-3
    e_min = physics.e_nu_min_mev(t)

    def f(e):
        return physics.flux_spectrum(np.array(e), KS_POWER_MW, KS_DISTANCE_M) * xsec(e, t)

    pts = [p for p in (0.7217, 1.2616, 2.0) if p > e_min]
    val = quad(f, e_min, 10.0, points=pts, limit=400)[0]
    return val * 2.6533e26 * 1e-3 * 86400


@pytest.mark.parametrize("t_kev", [3.0, 12.0, 40.0, 150.0])
def test_recoil_rates_match_direct_integration(t_kev):
    mm = physics.mm_rate_per_kg_keV_day(np.array([t_kev]), 1.0, KS_POWER_MW, KS_DISTANCE_M)[0]
    sm = physics.sm_rate_per_kg_keV_day(np.array([t_kev]), KS_POWER_MW, KS_DISTANCE_M)[0]
    assert mm == pytest.approx(_direct_rate(lambda e, t: mm_xsec(e, t, 1.0), t_kev), rel=2e-3)
    assert sm == pytest.approx(_direct_rate(sm_xsec_antinue, t_kev), rel=2e-3)


def test_mm_rate_is_about_ne_phi_pi_re2_mu2_over_t():
    """For T << E: dR/dT ~ N_e phi pi r_e^2 mu^2 / T (physics.md); 0.037 cpd at 10 keV."""
    t = np.array([10.0, 20.0])
    rate = physics.mm_rate_per_kg_keV_day(t, 1.0, KS_POWER_MW, KS_DISTANCE_M)
    approx = 2.65e26 * 6.4e12 * 2.495e-25 * 1e-20 / (t * 1e-3) * 1e-3 * 86400
    assert rate == pytest.approx(approx, rel=0.03)
    assert physics.mm_rate_per_kg_keV_day(t, 2.0, KS_POWER_MW, KS_DISTANCE_M) == pytest.approx(
        4 * rate
    )
    assert np.all(physics.mm_rate_per_kg_keV_day(t, 1.0, 0.0, KS_DISTANCE_M) == 0.0)
    assert physics.mm_rate_per_kg_keV_day(np.array([0.0, -1.0]), 1.0, 2900, 28).tolist() == [0, 0]


def test_mm_over_sm_large_at_10_keV_and_falling():
    t = np.array([10.0, 30.0, 100.0, 300.0, 1000.0])
    ratio = physics.mm_rate_per_kg_keV_day(t, 1.0, 2900, 28) / physics.sm_rate_per_kg_keV_day(
        t, 2900, 28
    )
    assert ratio[0] > 15
    assert np.all(np.diff(ratio) < 0)
    window = physics.mm_sm_ratio(1.0, (12.0, 60.0))
    assert ratio[1] < window < ratio[0] * 1.3
    assert physics.mm_sm_ratio(2.0, (12.0, 60.0)) == pytest.approx(4 * window)


def test_counts_in_bins_integrates_and_folds_resolution():
    edges = np.arange(12.0, 61.0, 1.0)
    flat = physics.counts_in_bins(edges, lambda t: np.ones_like(t))
    assert flat == pytest.approx(np.ones(48))
    mm = physics.counts_in_bins(edges, lambda t: 1.0 / t)
    assert mm == pytest.approx(np.log(edges[1:] / edges[:-1]), rel=1e-5)
    folded = physics.counts_in_bins(edges, lambda t: 1.0 / t, resolution_keV=(0.6, 0.028))
    assert folded[5:-5] == pytest.approx(mm[5:-5], rel=2e-3)  # smooth shape barely changes
    # A narrow line at 30 keV comes out with FWHM sqrt(a^2 + b E).
    fine = np.arange(25.0, 35.0, 0.01)
    line = physics.counts_in_bins(
        fine, lambda t: np.where(np.abs(t - 30.0) < 0.01, 50.0, 0.0), resolution_keV=(0.6, 0.028)
    )
    centres = 0.5 * (fine[1:] + fine[:-1])
    mean = np.sum(centres * line) / line.sum()
    sigma = np.sqrt(np.sum((centres - mean) ** 2 * line) / line.sum())
    assert line.sum() == pytest.approx(1.0, rel=1e-3)
    assert sigma * 2.3548 == pytest.approx(np.sqrt(0.36 + 0.028 * 30), rel=0.01)


def test_invalid_reactor_inputs():
    with pytest.raises(ValueError):
        physics.flux_cm2_s(-1.0, 28.0)
    with pytest.raises(ValueError):
        physics.flux_cm2_s(2900.0, 0.0)
    with pytest.raises(ValueError):
        physics.ReactorModel(fission_fractions=(0.5, 0.5, 0.5, 0.0))
