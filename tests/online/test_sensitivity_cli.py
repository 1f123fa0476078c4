"""``nudaq sensitivity``: the planning tool, in-process and as a real console command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from daq.cli import main

ROOT = Path(__file__).resolve().parents[2]


def run_json(capsys, *argv):
    assert main(["sensitivity", "--json", *argv]) == 0
    return json.loads(capsys.readouterr().out)


def test_kuo_sheng_defaults(capsys):
    out = run_json(capsys)
    assert 1.0e-10 < out["expected_limit_90_muB"] < 2.0e-10  # TEXONO published 1.3e-10
    assert out["sigma_mu_nu2_1e-20"] == pytest.approx(
        out["expected_limit_mu_nu2_1e-20"] / 1.645, rel=1e-3
    )
    assert out["exposure_kg_day"]["on"] == pytest.approx(1.06 * 4712 / 24)
    assert out["exposure_kg_day"]["off"] == pytest.approx(1.06 * 1250 / 24)
    assert out["mm_sm_ratio_at_limit"] > 1.0


def test_scaling_through_the_command_line(capsys):
    ref = run_json(capsys, "--mass-kg", "1", "--on-hours", "1000", "--off-hours", "1000")
    more_bkg = run_json(
        capsys,
        "--mass-kg",
        "1",
        "--on-hours",
        "1000",
        "--off-hours",
        "1000",
        "--background-cpd",
        "4",
    )
    farther = run_json(
        capsys, "--mass-kg", "1", "--on-hours", "1000", "--off-hours", "1000", "--distance-m", "56"
    )
    r = ref["expected_limit_mu_nu2_1e-20"]
    assert more_bkg["expected_limit_mu_nu2_1e-20"] == pytest.approx(2 * r)
    assert farther["expected_limit_mu_nu2_1e-20"] == pytest.approx(4 * r)


def test_toy_median_agrees(capsys):
    out = run_json(capsys, "--toys", "300", "--seed", "3")
    assert out["toys"]["median_limit_90_muB"] == pytest.approx(
        out["expected_limit_90_muB"], rel=0.06
    )


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--mass-kg", "-1"], "mass (kg) must be positive"),
        (["--on-hours", "0"], "ON time (days) must be positive"),
        (["--off-hours", "-3"], "OFF time (days) must be positive"),
        (["--background-cpd", "nan"], "background (cpd) must be positive"),
        (["--window-keV", "60:12"], "empty energy window"),
        (["--window-keV", "abc"], "window must be LO:HI"),
        (["--power-GW", "0"], "thermal power (MW) must be positive"),
    ],
)
def test_invalid_input_is_one_clear_line(capsys, argv, message):
    assert main(["sensitivity", "--json", *argv]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert message in captured.err and "Traceback" not in captured.err


def test_console_command_runs_as_a_process():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    ok = subprocess.run(
        [sys.executable, "-m", "daq.cli", "sensitivity", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["expected_limit_90_muB"] > 0
    bad = subprocess.run(
        [sys.executable, "-m", "daq.cli", "sensitivity", "--mass-kg", "-2"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert bad.returncode == 2
    assert bad.stderr.strip() == "nudaq sensitivity: error: mass (kg) must be positive, got -2"
