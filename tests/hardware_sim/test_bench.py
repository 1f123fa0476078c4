"""``nudaq bench``: its table, and a clear line when a baseline's package is missing."""

from __future__ import annotations

import importlib.util

from daq.cli import main
from hardware_sim.bench.run import print_table


def test_missing_baseline_package_is_one_line_naming_the_extra(monkeypatch, capsys):
    """On an install without the bench extra (no pandas) the command says what to install."""
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "pandas" else find_spec(name, *a),
    )
    assert main(["bench", "--quick"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "pandas" in err and ".[bench]" in err


QUICK = {  # the figures of a quick run (made up here)
    "zmq_ceiling_pulses_per_s": 200e6,
    "zmq_ceiling_tcp_pulses_per_s": 250e6,
    "kernel_pulses_per_s": {"stress": 600e6, "realistic": 800e6},
    "searchsorted_pulses_per_s": {"stress": 30e6, "realistic": 200e6},
    "merge_asof_pulses_per_s": {"stress": 40e6, "realistic": 160e6},
    "replay_pulses": 10_000_000,
    "replay_pulses_per_s": 20e6,
    "replay_built_pulses_per_s": 30e6,
    "replay_command_pulses_per_s": 3e6,
    "builder_peak_rss_mb": 250.0,
    "builder_peak_rss_mb_tenth": 240.0,
    "replay_tenth_pulses": 1_000_000,
}


def test_bench_table_prints_each_figure_beside_its_baseline(capsys):
    """The table of ``nudaq bench`` for a quick and a full run (figures made up here)."""
    quick = QUICK
    full = quick | {
        "replay_long_pulses": 100_000_000,
        "replay_long_pulses_per_s": 32e6,
        "builder_peak_rss_mb_long": 252.0,
        "live_max_zero_loss_pulses_per_s": 1.5e6,
        "long_exposure_s": {"on": 20.0, "off": 5.0, "analysis": 0.3, "runs": 250},
    }
    print_table(quick)
    short = capsys.readouterr().out
    assert "20.0x" in short and "15.0x" in short  # stress: kernel / searchsorted, merge_asof
    assert "100,000,000" not in short and "live" not in short
    print_table(full)
    out = capsys.readouterr().out
    assert "100,000,000" in out and "32.00 M/s" in out and "1.05" in out  # 252 / 240
    assert "1,000,000" in out  # the memory baseline, named by its size
    assert "1,500,000" in out and "5.00" in out  # live against the 300 000 target
