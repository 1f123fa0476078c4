"""Expected rates of the rate alarms from the configuration and from earlier good runs in SQL."""

from __future__ import annotations

import math

import pytest

from daq.core.config import Alarm as AlarmConfig
from daq.core.config import Config
from daq.store.models import Exposure, StreamStat
from daq.store.runs import create_run, end_run, get_run, set_quality
from daq.store.session import session_scope
from online.monitoring.expected import ExpectedRate, configured, from_good_runs

S = 1_000_000_000  # ns per s


def add_run(session, number: int, quality: str, ended: bool, scale: int) -> None:
    """A run of 2000 s (1500 s reactor ON, 500 s OFF) whose counts grow with scale; a replay
    of it under another tag that must not count."""
    create_run(session, number, Config())
    if ended:
        end_run(session, number)
    if quality != "unchecked":
        set_quality(session, number, quality, "test")
    run = get_run(session, number)
    for tag in ("", "replay-x"):
        for reactor, elapsed, uncovered, candidates in (("on", 1500, 10, 30), ("off", 500, 0, 10)):
            session.add(
                Exposure(
                    run_id=run.id,
                    tag=tag,
                    reactor=reactor,
                    elapsed_ns=elapsed * S,
                    uncovered_ns=uncovered * S,
                    events_candidate=candidates * scale,
                )
            )
        for stream, pulses, uncovered in (("hpge", 400, 10), ("acv", 2_000_000, 20), ("crv", 0, 0)):
            session.add(
                StreamStat(
                    run_id=run.id,
                    tag=tag,
                    stream=stream,
                    pulses=pulses * scale,
                    uncovered_ns=uncovered * S,
                )
            )


def test_rates_of_the_newest_good_runs_before_the_current_one(db_engine):
    """Counts over covered seconds, summed over the newest reference_runs good ended runs
    below the current run: not bad or unchecked runs, not an open run, not replays."""
    with session_scope(db_engine) as session:
        add_run(session, 1, "good", True, 100)  # too old with reference_runs = 2
        add_run(session, 2, "good", True, 1)
        add_run(session, 3, "bad", True, 100)
        add_run(session, 4, "unchecked", True, 100)
        add_run(session, 5, "good", True, 2)
        add_run(session, 6, "good", False, 100)  # still open
        add_run(session, 8, "good", True, 100)  # after the current run
    config = AlarmConfig(reference_runs=2, rate_window_s=60.0)
    with session_scope(db_engine, readonly=True) as session:
        rates = from_good_runs(session, 7, config)
    assert set(rates) == {"hpge", "acv", "candidate"}  # the CRV counted nothing
    source = "good runs 2, 5"
    hpge = 400 * 3, 2 * (2000 - 10)  # runs 2 and 5: scales 1 and 2
    acv = 2_000_000 * 3, 2 * (2000 - 20)
    candidate = 40 * 3, 2 * (2000 - 10)
    for name, (counts, seconds) in {"hpge": hpge, "acv": acv, "candidate": candidate}.items():
        spread = math.sqrt(counts)
        assert rates[name] == ExpectedRate(
            (counts - spread) / seconds, (counts + spread) / seconds, source
        )
        assert rates[name].rate_hz == pytest.approx(counts / seconds)


def test_too_little_history_gives_no_rate(db_engine):
    """Fewer than 25 counts, or less than ten rate windows of time: measured in the run."""
    with session_scope(db_engine) as session:
        add_run(session, 1, "good", True, 1)
    with session_scope(db_engine, readonly=True) as session:
        assert set(from_good_runs(session, 2, AlarmConfig(rate_window_s=60.0))) == {
            "hpge",
            "acv",
            "candidate",
        }
        assert from_good_runs(session, 2, AlarmConfig(rate_window_s=300.0)) == {}
        assert from_good_runs(session, 2, AlarmConfig(reference_runs=0)) == {}
        assert from_good_runs(session, 1, AlarmConfig()) == {}  # nothing before run 1


def test_configured_rates_and_unknown_ones():
    config = AlarmConfig()
    assert configured(config) == {}  # every expected rate unknown (0) by default
    config.expected_hz.acv = 1000.0
    config.expected_hz.candidate = 0.015
    assert configured(config) == {
        "acv": ExpectedRate(1000.0, 1000.0, "configured"),
        "candidate": ExpectedRate(0.015, 0.015, "configured"),
    }
