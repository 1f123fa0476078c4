"""The numba kernels against plain-numpy references."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daq.core.records import TAG_AC, TAG_CRV, TAG_REACTOR_ON, TAG_RT, Category
from daq.kernels.histogram import calibrate, fill_histogram
from daq.kernels.tagging import tag_window, tag_window_search, tag_window_sweep

KERNELS = [tag_window, tag_window_sweep, tag_window_search]


def reference_tags(ge_t, veto_t, before_ns, after_ns):
    """Is any veto time in [t - before, t + after]? by two searchsorted calls."""
    lo = np.searchsorted(veto_t, ge_t - before_ns, side="left")
    hi = np.searchsorted(veto_t, ge_t + after_ns, side="right")
    return hi > lo


def times(values) -> np.ndarray:
    return np.sort(np.asarray(values, dtype=np.int64))


@pytest.mark.parametrize("kernel", KERNELS)
def test_window_edges_are_inclusive(kernel):
    ge = times([1000, 5000, 9000])
    # veto exactly at t - before, exactly at t + after, one ns outside each
    assert kernel(ge, times([1000 - 100]), 100, 50).tolist() == [True, False, False]
    assert kernel(ge, times([5000 + 50]), 100, 50).tolist() == [False, True, False]
    assert kernel(ge, times([9000 - 101]), 100, 50).tolist() == [False, False, False]
    assert kernel(ge, times([9000 + 51]), 100, 50).tolist() == [False, False, False]


@pytest.mark.parametrize("kernel", KERNELS)
def test_equal_times_and_empty_inputs(kernel):
    ge = times([10, 10, 10, 20])
    assert kernel(ge, times([10]), 0, 0).tolist() == [True, True, True, False]
    assert kernel(ge, times([]), 5, 5).tolist() == [False] * 4
    assert kernel(times([]), times([1, 2, 3]), 5, 5).tolist() == []
    assert kernel(times([]), times([]), 5, 5).tolist() == []


@pytest.mark.parametrize("kernel", KERNELS)
def test_asymmetric_window_direction(kernel):
    """CRV pulses precede their HPGe pulse: [t - pre, t + post] must not be mirrored."""
    ge = times([10_000])
    assert kernel(ge, times([10_000 - 4_000]), 5_000, 1_000).tolist() == [True]
    assert kernel(ge, times([10_000 + 4_000]), 5_000, 1_000).tolist() == [False]


@pytest.mark.parametrize("n_ge, n_veto", [(50, 20_000), (20_000, 50), (5_000, 5_000)])
def test_random_against_reference(n_ge, n_veto):
    rng = np.random.default_rng(n_ge + n_veto)
    ge = times(rng.integers(0, 10_000_000, n_ge))
    veto = times(rng.integers(0, 10_000_000, n_veto))
    expected = reference_tags(ge, veto, 1000, 300)
    for kernel in KERNELS:
        np.testing.assert_array_equal(kernel(ge, veto, 1000, 300), expected)


def test_bursts_across_lane_boundaries():
    """The sweep's lanes start mid-array: equal HPGe times, bursts and gaps of the veto
    stream that straddle the lane starts must not change a tag."""
    rng = np.random.default_rng(3)
    ge = times(np.repeat(rng.integers(0, 1_000_000, 700), rng.integers(1, 5, 700)))
    bursts = rng.integers(0, 1_000_000, 40)
    veto = times((bursts[:, None] + rng.integers(0, 3000, (40, 60))).ravel())
    for before, after in [(0, 0), (1000, 300), (5000, 1000)]:
        expected = reference_tags(ge, veto, before, after)
        for kernel in KERNELS:
            np.testing.assert_array_equal(kernel(ge, veto, before, after), expected)


@settings(max_examples=300, deadline=None)
@given(
    ge=st.lists(st.integers(-50, 50), max_size=40),
    veto=st.lists(st.integers(-60, 60), max_size=40),
    before=st.integers(0, 20),
    after=st.integers(0, 20),
)
def test_property_matches_reference(ge, veto, before, after):
    ge_t, veto_t = times(ge), times(veto)
    expected = reference_tags(ge_t, veto_t, before, after)
    for kernel in KERNELS:
        np.testing.assert_array_equal(kernel(ge_t, veto_t, before, after), expected)


def test_calibration_per_channel_and_unknown_channel():
    adc = np.array([100, 100, 2000, 7], dtype=np.uint32)
    channel = np.array([0, 1, 1, 5], dtype=np.uint16)
    gain = np.array([0.01, 0.02])
    offset = np.array([0.5, -1.0])
    energy, bad = calibrate(adc, channel, gain, offset)
    assert bad == 1
    np.testing.assert_allclose(energy[:3], [0.5 + 1.0, -1.0 + 2.0, -1.0 + 40.0])
    assert np.isnan(energy[3])


def reference_hist(energy, tags, width, n_bins):
    hist = np.zeros((2, len(Category), n_bins), dtype=np.int64)
    ok = ~np.isnan(energy)
    b = np.clip(np.floor(energy[ok] / width), 0, n_bins - 1).astype(int)
    tg = tags[ok]
    state = (tg & TAG_REACTOR_ON != 0).astype(int)
    rt = tg & TAG_RT != 0
    ac = tg & TAG_AC != 0
    crv = tg & TAG_CRV != 0
    for cat, sel in [
        (Category.RT, rt),
        (Category.ALL, ~rt),
        (Category.AC, ~rt & ac),
        (Category.CRV, ~rt & crv),
        (Category.CANDIDATE, ~rt & ~ac & ~crv),
    ]:
        np.add.at(hist, (state[sel], int(cat), b[sel]), 1)
    return hist


def test_histogram_against_reference_with_overflow_and_nan():
    rng = np.random.default_rng(7)
    n = 20_000
    energy = rng.uniform(-5.0, 130.0, n)
    energy[::97] = np.nan
    energy[5] = 0.0
    energy[6] = 100.0  # exactly the upper edge: overflow bin
    tags = rng.integers(0, 16, n).astype(np.uint8)
    hist = np.zeros((2, len(Category), 500), dtype=np.int64)
    skipped = fill_histogram(hist, energy, tags, 0.2)
    assert skipped == np.isnan(energy).sum()
    np.testing.assert_array_equal(hist, reference_hist(energy, tags, 0.2, 500))
    # the clamped bins really collect under/overflow
    assert hist[:, Category.ALL, 0].sum() >= ((energy < 0) & (tags & TAG_RT == 0)).sum()
    assert hist[:, Category.ALL, -1].sum() >= ((energy > 100) & (tags & TAG_RT == 0)).sum()
