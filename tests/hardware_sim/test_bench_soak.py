"""The soak of ``nudaq bench``: the slope fit on synthetic RSS samples, its rows in the table,
its options, and the soak itself on a real system for a few seconds."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import psutil
import pytest

from daq.cli import main
from hardware_sim.bench import soak
from hardware_sim.bench.run import print_table
from hardware_sim.bench.soak import SIGNIFICANT, fit_slope, memory_trend
from hardware_sim.commands.bench import SOAK_MINUTES, SOAK_SPEED
from tests.hardware_sim.test_bench import QUICK

T = np.arange(0.0, 600.0, 2.0)
"""Ten minutes of samples, one every 2 s (wall s)."""
HOURS = T / 3600


def test_a_flat_series_has_no_slope_and_no_error():
    s = fit_slope(T, np.full(len(T), 250.0))
    assert s.mb_per_h == 0 and s.se_mb_per_h == 0 and s.samples == len(T)


def test_a_steady_growth_is_recovered_exactly():
    s = fit_slope(T, 120.0 + 3.0 * HOURS)
    assert s.mb_per_h == pytest.approx(3.0, rel=1e-9)
    assert s.se_mb_per_h == pytest.approx(0, abs=1e-6)


def test_a_noisy_growth_is_recovered_within_its_standard_error():
    """White noise: the error is the textbook one, and the truth lies within it."""
    sigma, truth = 0.3, 2.0
    pulls = []
    for seed in range(200):
        rng = np.random.default_rng(seed)
        s = fit_slope(T, 100.0 + truth * HOURS + rng.normal(0, sigma, len(T)))
        pulls.append((s.mb_per_h - truth) / s.se_mb_per_h)
    textbook = sigma / np.sqrt(np.sum((HOURS - HOURS.mean()) ** 2))
    assert s.se_mb_per_h == pytest.approx(textbook, rel=0.15)
    assert abs(np.mean(pulls)) < 0.25 and np.std(pulls) == pytest.approx(1, abs=0.15)


def test_correlated_residuals_widen_the_error():
    """A random walk on a steady growth: the error counts the effective samples."""
    rng = np.random.default_rng(3)
    y = 100.0 + 1.0 * HOURS + np.cumsum(rng.normal(0, 0.01, len(T)))
    s = fit_slope(T, y)
    assert s.effective_samples < len(T) / 10
    res = y - np.polyval(np.polyfit(HOURS, y, 1), HOURS)
    naive = np.sqrt(res @ res / (len(T) - 2) / np.sum((HOURS - HOURS.mean()) ** 2))
    assert s.se_mb_per_h > 3 * naive


def test_a_single_step_is_not_growth():
    """One step of RSS in the middle of a half, the worst case: below SIGNIFICANT."""
    y = np.where(T < 300, 200.0, 201.0)
    for half in (slice(0, 150), slice(150, 300)):
        step = np.where(T < T[half][75], 200.0, 201.0)
        s = fit_slope(T[half], step[half])
        assert 0 < s.mb_per_h < SIGNIFICANT * s.se_mb_per_h
    assert memory_trend(T, y, 0.0)["verdict"] == "flat"  # a step between the halves


def test_too_few_samples_is_an_error():
    with pytest.raises(ValueError, match="3 samples"):
        fit_slope(T[:2], np.ones(2))


def test_the_verdict_tells_flat_settling_and_growing_apart():
    """After a warm-up with a large jump: flat, a cache filling up to its size by the middle
    of the soak (settling), a leak."""
    rng = np.random.default_rng(5)
    noise = rng.normal(0, 0.02, len(T))
    warm = np.where(T < 60, 50.0, 150.0)  # what the warm-up holds stays out of the fits
    flat = memory_trend(T, warm + noise, 60.0)
    filling = 10.0 * (T.clip(60, 330) - 60) / 3600  # 10 MB/h until the halves meet at 330 s
    settling = memory_trend(T, warm + filling + noise, 60.0)
    leak = memory_trend(T, warm + 6.0 * HOURS + noise, 60.0)
    assert flat["verdict"] == "flat" and abs(flat["slope"]["mb_per_h"]) < 1
    assert settling["verdict"] == "settling"
    assert settling["first_half"]["mb_per_h"] > 5 * abs(settling["second_half"]["mb_per_h"])
    assert leak["verdict"] == "growing"
    for part in ("slope", "first_half", "second_half"):
        s = leak[part]
        assert abs(s["mb_per_h"] - 6.0) < 3 * s["se_mb_per_h"]
    assert leak["slope"]["samples"] == np.sum(T >= 60)
    assert leak["rss_warm_mb"] == pytest.approx(150, abs=0.1)
    assert leak["rss_end_mb"] == pytest.approx(150 + 6.0 * HOURS[-1], abs=0.1)


def test_samples_of_a_process_that_was_away_are_left_out():
    y = 100.0 + 4.0 * HOURS
    y[100:110] = np.nan  # being restarted: no process to read
    trend = memory_trend(T, y, 0.0)
    assert trend["slope"]["samples"] == len(T) - 10
    assert trend["slope"]["mb_per_h"] == pytest.approx(4.0)


def _slope(mb_per_h: float, se: float) -> dict:
    return {"mb_per_h": mb_per_h, "se_mb_per_h": se, "samples": 120, "effective_samples": 40.0}


SOAK = {
    "seconds": 600.0,
    "speed": 10.0,
    "warmup_s": 120.0,
    "sample_s": 2.0,
    "simulated_s": 6000.0,
    "pulses": 7_654_321,
    "lost": 0,
    "live_analyses": 9,
    "alarms": [],
    "web": {"requests": 250, "errors": 0, "events": 590},
    "restarts": {"builder": 0, "monitor": 1},
    "processes": {
        "builder": {
            "rss_warm_mb": 315.2,
            "rss_end_mb": 315.3,
            "slope": _slope(0.31, 0.52),
            "first_half": _slope(0.45, 0.9),
            "second_half": _slope(0.12, 0.8),
            "verdict": "flat",
        },
        "monitor": {
            "rss_warm_mb": 154.9,
            "rss_end_mb": 160.0,
            "slope": _slope(7.5, 0.4),
            "first_half": _slope(7.25, 0.6),
            "second_half": _slope(7.75, 0.7),
            "verdict": "growing",
        },
    },
}


def test_the_table_shows_a_row_per_process_beside_its_halves(capsys):
    print_table(QUICK | {"soak": SOAK})
    out = capsys.readouterr().out
    assert "10.0" in out and "10x" in out and "7,654,321" in out  # length, speed, pulses
    assert "9 live" in out and "monitor 1" in out  # analyses; the restart named
    assert "+0.31 ± 0.52" in out and "+0.45 ± 0.90" in out and "+0.12 ± 0.80" in out
    assert "+7.50 ± 0.40" in out and "growing" in out and "flat" in out
    assert "315 MB" in out and "155 MB" in out  # the scale: RSS at warm-up
    print_table({"soak": SOAK})  # --only soak: the soak's rows alone
    alone = capsys.readouterr().out
    assert "+7.50 ± 0.40" in alone and "replay" not in alone


def test_soak_options(capsys):
    assert main(["bench", "--quick", "--only", "soak"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--quick" in err
    with pytest.raises(SystemExit) as exit_:
        main(["bench", "--only", "soak", "--soak-minutes", "0.1"])
    assert exit_.value.code == 2
    assert "--soak-minutes: must be at least 0.5 minutes" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["bench", "--soak-speed", "-1"])
    assert "--soak-speed: must be a positive speed-up" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["bench", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert f"(default {SOAK_MINUTES:g})" in text and f"(default {SOAK_SPEED:g})" in text


@pytest.mark.slow
def test_the_soak_samples_every_process_of_a_running_system(monkeypatch):
    """A 10-s soak of a real nudaq up --sim: every process sampled, the run's pulses counted,
    the web read, nothing restarted, nothing left behind."""
    made = []
    mkdtemp = tempfile.mkdtemp
    monkeypatch.setattr(
        tempfile, "mkdtemp", lambda **kw: made.append(Path(mkdtemp(**kw))) or made[-1]
    )
    r = soak.soak(10.0, 10.0, warmup_s=2.0, sample_s=0.5)
    names = {"sim", "builder", "slowcontrol", "web", "monitor", "up"}
    names |= {f"readout-{s}" for s in ("hpge", "acv", "crv")}
    assert set(r["processes"]) == names
    for trend in r["processes"].values():
        assert trend["rss_warm_mb"] > 0 and trend["rss_end_mb"] > 0
        assert trend["verdict"] in ("flat", "settling", "growing")
        halves = trend["first_half"]["samples"] + trend["second_half"]["samples"]
        assert halves == trend["slope"]["samples"] >= 6
        assert np.isfinite(trend["slope"]["mb_per_h"])
    assert r["pulses"] > 0 and r["simulated_s"] > 0
    assert set(r["restarts"]) == names - {"up"} and not any(r["restarts"].values())
    assert r["web"]["events"] > 0 and r["web"]["requests"] > r["web"]["errors"]
    assert not made[0].exists()  # the data directory removed, no process of it left
    assert not [
        p
        for p in psutil.process_iter(["cmdline"])
        if str(made[0]) in " ".join(p.info["cmdline"] or [])
    ]
