"""Alarm logic: the Poisson rate test, the other conditions, and their record in SQL."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import zmq
from sqlalchemy import select

from daq.control.runcontrol import request
from daq.core.config import Alarm as AlarmConfig
from daq.core.config import Config
from daq.store.models import Alarm, LogbookEntry
from daq.store.session import session_scope
from online.monitoring.alarms import (
    AlarmEvaluator,
    Condition,
    Observation,
    PoissonRateTest,
    sync_alarms,
)
from online.monitoring.monitor import Monitor

P_VALUE = 1e-4
WINDOW_S = 60.0


def feed(test: PoissonRateTest, rng, rate_hz: float, seconds: int, start_s: float, count: int):
    """Poisson counts at rate_hz, one sample per second; returns (verdicts, end time, count)."""
    verdicts = []
    for k in range(seconds):
        count += int(rng.poisson(rate_hz))
        t = start_s + k + 1
        test.update(t, count)
        verdicts.append(test.check(t))
    return verdicts, start_s + seconds, count


def test_low_rate_counter_alarms_on_significant_silence_not_on_quiet_seconds():
    """0.05 Hz (a candidate-like stream): many silent seconds never alarm; a silence alarms
    once exp(-r s) < p, i.e. after s = ln(1/p) / r = 184 s, not much earlier or later."""
    rate = 0.05
    rng = np.random.default_rng(7)
    test = PoissonRateTest(WINDOW_S, P_VALUE)
    verdicts, t, n = feed(test, rng, rate, 3 * 3600, 0.0, 0)
    quiet_seconds = sum(1 for k in range(1, len(verdicts)) if verdicts[k] is None)
    assert quiet_seconds > 3 * 3600 * 0.9  # most seconds see no count at all ...
    assert all(v is None for v in verdicts)  # ... and none of them alarmed
    fired_at = None
    for k in range(1, 400):
        test.update(t + k, n)  # the stream falls silent
        if test.check(t + k) is not None:
            fired_at = k
            break
    expected = np.log(1 / P_VALUE) / rate
    assert fired_at is not None and 0.8 * expected < fired_at < 1.25 * expected + 2
    kind, text = test.check(t + fired_at)
    assert kind == "low" and "0 counts" in text


def test_high_rate_counter_alarms_within_the_window_when_it_halves_or_doubles():
    rng = np.random.default_rng(3)
    test = PoissonRateTest(WINDOW_S, P_VALUE)
    verdicts, t, n = feed(test, rng, 1000.0, 900, 0.0, 0)
    assert all(v is None for v in verdicts)
    # a 3 % dip for 30 s: 900 counts missing against a spread of sqrt(30000) = 173
    verdicts, _, _ = feed(test, rng, 970.0, 30, t, n)
    assert any(v is not None and v[0] == "low" for v in verdicts)
    test.reset()
    _, t, n = feed(test, rng, 1000.0, 900, 0.0, 0)
    verdicts, _, _ = feed(test, rng, 2000.0, 3, t, n)
    assert verdicts[-1] is not None and verdicts[-1][0] == "high"


def test_rate_test_needs_a_reference_and_restarts_with_the_counter():
    test = PoissonRateTest(WINDOW_S, P_VALUE)
    for k in range(30):  # shorter than the window: no reference, no verdict
        test.update(float(k), 0)
        assert test.check(float(k)) is None
    rng = np.random.default_rng(1)
    _, t, n = feed(test, rng, 100.0, 300, 30.0, 0)
    test.update(t + 1, 5)  # the counter went down: a new run
    assert len(test.samples) == 1 and test.check(t + 1) is None


def observation(**fields) -> Observation:
    base = {"time_s": 0.0, "state": "idle", "processes": ["builder", "slowcontrol"]}
    return Observation(**{**base, **fields})


def names(conditions: list[Condition]) -> list[str]:
    return [c.name for c in conditions]


def test_environment_thresholds_from_the_configuration():
    cfg = AlarmConfig(hv_min_V=2500, ln2_low_pct=20, disk_low_GB=1.0)
    ev = AlarmEvaluator(cfg, ("builder", "slowcontrol"))
    assert ev.evaluate(observation(hv_V=3000, ln2_pct=50, disk_free_GB=100)) == []
    active = ev.evaluate(observation(hv_V=2400, ln2_pct=19.5, disk_free_GB=0.5))
    assert names(active) == ["disk_low", "hv_low", "ln2_low"]
    hv = next(c for c in active if c.name == "hv_low")
    assert hv.severity == "critical" and "2400 V" in hv.message and "2500 V" in hv.message


def test_process_down_after_the_startup_grace_and_run_control_unreachable():
    ev = AlarmEvaluator(AlarmConfig(), ("builder", "slowcontrol", "readout-hpge"), 30.0)
    assert ev.evaluate(observation(time_s=0.0)) == []  # just started: processes still joining
    assert names(ev.evaluate(observation(time_s=31.0))) == ["process_down:readout-hpge"]
    assert names(ev.evaluate(observation(time_s=32.0, state="unreachable"))) == ["runcontrol"]
    error = ev.evaluate(observation(time_s=33.0, state="error", error="builder died"))
    assert "builder died" in error[0].message


def running(t: float, **fields) -> Observation:
    return observation(time_s=t, state="running", run=5, processes=["builder"], **fields)


def test_silent_horizon_and_rising_losses():
    cfg = AlarmConfig(silent_stream_s=10, rate_window_s=60)
    ev = AlarmEvaluator(cfg, ("builder",))
    for t in range(0, 10):
        active = ev.evaluate(running(t, progress={"horizon": 1000 * t}, lost={"acv": 0}))
        assert active == []
    for t in range(10, 19):  # the horizon stops at 9000
        assert ev.evaluate(running(t, progress={"horizon": 9000}, lost={"acv": 0})) == []
    active = ev.evaluate(running(19, progress={"horizon": 9000}, lost={"acv": 3}))
    assert names(active) == ["lost:acv", "silent:horizon"]
    assert names(ev.evaluate(running(78, progress={"horizon": 9001}, lost={"acv": 3}))) == [
        "lost:acv"
    ]
    assert ev.evaluate(running(80, progress={"horizon": 9002}, lost={"acv": 3})) == []


def test_a_new_run_restarts_the_rate_history():
    ev = AlarmEvaluator(AlarmConfig(rate_window_s=60, rate_p_value=1e-4), ("builder",))
    rng = np.random.default_rng(5)
    n = 0
    for t in range(700):
        n += int(rng.poisson(500))
        assert ev.evaluate(running(float(t), counters={"acv": n})) == []
    active = ev.evaluate(running(700.0, counters={"acv": n}))  # one second with no counts
    assert names(active) == ["rate_low:acv"]
    ev.evaluate(observation(time_s=701.0))  # run ended
    nxt = observation(time_s=702.0, state="running", run=6, processes=["builder"])
    nxt.counters = {"acv": 0}
    assert ev.evaluate(nxt) == []


def test_sync_raises_once_clears_and_logs(db_engine):
    hv = Condition("hv_low", "critical", "HPGe HV 2000 V < 2500 V")
    ln2 = Condition("ln2_low", "warning", "LN2 level 10 % < 20 %")
    with session_scope(db_engine) as session:
        raised, cleared = sync_alarms(session, [hv, ln2], run_number=3)
    assert [a.name for a in raised] == ["hv_low", "ln2_low"] and cleared == []
    with session_scope(db_engine) as session:
        raised, cleared = sync_alarms(session, [hv], run_number=3)
    assert raised == [] and [a.name for a in cleared] == ["ln2_low"]
    with session_scope(db_engine) as session:
        raised, _ = sync_alarms(session, [hv, ln2], run_number=3)  # ln2 low again: a new alarm
    assert [a.name for a in raised] == ["ln2_low"]
    with session_scope(db_engine, readonly=True) as session:
        alarms = session.scalars(select(Alarm).order_by(Alarm.id)).all()
        entries = session.scalars(select(LogbookEntry).order_by(LogbookEntry.id)).all()
    assert [(a.name, a.cleared_utc is None) for a in alarms] == [
        ("hv_low", True),
        ("ln2_low", False),
        ("ln2_low", True),
    ]
    assert [e.text.split(":")[0] for e in entries] == [
        "alarm raised",
        "alarm raised",
        "alarm cleared",
        "alarm raised",
    ]
    assert all(e.automatic and e.run_number == 3 for e in entries)


@pytest.mark.parametrize("p_value", [1e-3, 1e-6])
def test_silence_threshold_follows_the_configured_p_value(p_value):
    rate = 0.2
    rng = np.random.default_rng(11)
    test = PoissonRateTest(WINDOW_S, p_value)
    _, t, n = feed(test, rng, rate, 1800, 0.0, 0)
    k = 1
    while test.check(t + k) is None:
        test.update(t + k, n)
        k += 1
    assert k == pytest.approx(np.log(1 / p_value) / rate, rel=0.3)


def test_monitor_records_alarms_of_a_live_system(db_engine, data_dir, run_control):
    """The monitor against a real run control and a builder-like snapshot publisher: a frozen
    data horizon raises silent:horizon (and the impossible disk threshold disk_low) in SQL
    with logbook entries; the horizon moving again clears it."""
    config = Config()
    config.alarms.silent_stream_s = 1.0
    config.alarms.disk_low_GB = 1e9
    pub = zmq.Context.instance().socket(zmq.PUB)
    pub.setsockopt(zmq.LINGER, 0)
    pub.bind(config.endpoint("monitor", data_dir))
    run = request(config, data_dir, "start")["run"]
    monitor = Monitor(config, data_dir, db_engine)  # the live analysis is not due for 60 s

    def step(horizon_ns: int) -> list[str]:
        snapshot = {
            "time": time.time(),
            "state": "running",
            "run": run,
            "pulses": {"hpge": 1, "acv": 2, "crv": 3},
            "lost": {"hpge": 0, "acv": 0, "crv": 0},
            "events": {"candidate": 0},
            "horizon_ns": horizon_ns,
        }
        pub.send_string(json.dumps(snapshot))
        time.sleep(0.15)
        return [c.name for c in monitor.step()]

    try:
        seen = [step(1000) for _ in range(12)]
        assert "silent:horizon" not in seen[0] and "silent:horizon" in seen[-1]
        assert all("disk_low" in names for names in seen)
        moving = [step(2000 + k) for k in range(2)]
        assert "silent:horizon" not in moving[-1]
    finally:
        monitor.close()
        pub.close()
    with session_scope(db_engine, readonly=True) as session:
        alarms = {a.name: a for a in session.scalars(select(Alarm))}
        texts = session.scalars(select(LogbookEntry.text).where(LogbookEntry.automatic)).all()
    assert set(alarms) == {"disk_low", "silent:horizon"}
    assert alarms["silent:horizon"].cleared_utc is not None
    assert alarms["disk_low"].cleared_utc is None and alarms["disk_low"].severity == "warning"
    assert sum(t.startswith("alarm raised") for t in texts) == 2
    assert sum(t.startswith("alarm cleared") for t in texts) == 1
