"""``nudaq status`` shows each stream's dead or blind time and the exposure's share, and
rates (there and in the status line of ``nudaq up``) to three significant digits."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from daq.commands.status import format_rate, render
from daq.commands.up import _status_line


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


@pytest.mark.parametrize(
    "hz,text",
    [
        (0.0, "0"),
        (0.2, "0.200"),
        (0.0123, "0.0123"),
        (5.0, "5.00"),
        (9.996, "10.0"),
        (12.34, "12.3"),
        (99.96, "100"),
        (250.4, "250"),
        (12345.6, "12346"),
    ],
)
def test_rates_keep_three_significant_digits(hz, text):
    assert format_rate(hz) == text


def test_status_and_up_show_a_sub_hz_rate_with_its_decimals(capsys):
    monitor = {"rates_hz": {"hpge": 0.2, "acv": 1000.0, "crv": 312.25}, "reactor": "on"}
    render({"run": 1, "state": "running", "monitor": monitor, "processes": []})
    hpge = next(line for line in capsys.readouterr().out.splitlines() if "hpge" in line)
    assert "0.200" in hpge
    rc = SimpleNamespace(
        snapshots=SimpleNamespace(latest=monitor),
        machine=SimpleNamespace(run=1, state=SimpleNamespace(value="running")),
    )
    assert "hpge 0.200 Hz acv 1000 Hz crv 312 Hz" in _status_line(rc)


def test_the_status_names_restarted_processes_and_how_they_last_ended():
    from daq.commands.status import supervision_line

    supervision = {
        "builder": {"pid": 10, "running": True, "restarts": 0, "last_exit": ""},
        "readout-acv": {
            "pid": 11,
            "running": True,
            "restarts": 2,
            "last_exit": "was killed by signal 9 (SIGKILL)",
        },
        "monitor": {"pid": 12, "running": False, "restarts": 0, "last_exit": "exited with code 1"},
    }
    assert supervision_line(supervision) == (
        "restarted: monitor 0x (last exited with code 1; restarting),"
        " readout-acv 2x (last was killed by signal 9 (SIGKILL))"
    )
    assert supervision_line({"builder": supervision["builder"]}) == ""
