"""``nudaq status`` shows each stream's dead or blind time and the exposure's share."""

from __future__ import annotations

from daq.commands.status import render


def test_status_shows_uncovered_time_per_stream(capsys):
    monitor = {
        "pulses": {"hpge": 10, "acv": 20, "crv": 30},
        "rates_hz": {"hpge": 1.0, "acv": 2.0, "crv": 3.0},
        "lost": {"hpge": 0, "acv": 4, "crv": 0},
        "uncovered_s": {"hpge": 0.0, "acv": 1.25, "crv": 0.5},
        "elapsed_s": 100.0,
        "live_time_s": 98.0,
        "exposure_uncovered_s": 1.75,
        "dead_fraction": 0.02,
    }
    render({"run": 3, "state": "running", "monitor": monitor, "processes": ["builder"]})
    out = capsys.readouterr().out
    assert "dead / blind (s)" in out
    assert "1.250" in out and "0.500" in out
    assert "exposure 98.00% of the elapsed time (1.750 s uncovered" in out
