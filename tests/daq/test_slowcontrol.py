"""Slow control: driver, readings in SQL, the REACTOR stream and its ON/OFF flag."""

from __future__ import annotations

import time

import numpy as np
import process_bench
from frontend_stub import StubFrontend
from process_bench import Bench
from sqlalchemy import select

from daq.build.reactor import reactor_pulse
from daq.core.config import Config
from daq.core.records import FLAG_REACTOR_ON, Stream
from daq.drivers.slowcontrol_device import SlowControlDriver
from daq.formats.wire import KIND_BOR, KIND_DATA, KIND_EOR
from daq.store.models import SlowControlReading
from daq.store.session import make_engine

data_dir = process_bench.data_dir
crate_factory = process_bench.crate_factory


def test_driver_reads_and_sets_power():
    stub = StubFrontend(settings={"POWER": "2900.0"})
    driver = SlowControlDriver(stub.url, timeout_s=1.0)
    try:
        assert driver.identify().startswith("NUDAQ,")
        before = stub.clock()
        reading = driver.read()
        assert before <= reading.t_ns <= stub.clock()
        assert (reading.power_MW, reading.hv_V, reading.ln2_pct, reading.temp_C) == (
            2900.0,
            3000.0,
            80.5,
            21.25,
        )
        driver.set("power", 0.5)
        assert stub.commands[-1] == "CONF POWER 0.5"
        assert driver.read().power_MW == 0.5
    finally:
        driver.close()
        stub.close()


def test_reactor_flag_at_the_threshold():
    on = [reactor_pulse(5, p, 100.0)[0] for p in (99.999, 100.0, 2900.0)]
    assert [p["flags"] & FLAG_REACTOR_ON for p in on] == [0, FLAG_REACTOR_ON, FLAG_REACTOR_ON]
    assert [int(p["adc"]) for p in on] == [99_999, 100_000, 2_900_000]
    assert all(p["t_ns"] == 5 for p in on)


def stored(db_url: str) -> list[SlowControlReading]:
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(select(SlowControlReading).order_by(SlowControlReading.id)))
    finally:
        engine.dispose()


def wait_for_rows(db_url: str, n: int, timeout_s: float = 10) -> list:
    deadline = time.monotonic() + timeout_s
    while len(rows := stored(db_url)) < n:
        assert time.monotonic() < deadline, f"only {len(rows)} slow-control rows"
        time.sleep(0.05)
    return rows


def test_process_records_and_feeds_the_reactor_stream(data_dir):
    """Readings in SQL between and during runs; the REACTOR stream follows the power."""
    config = Config()
    config.slowcontrol.poll_interval_s = 0.1
    config.reactor.on_threshold_MW = 100.0
    db_url = f"sqlite:///{data_dir / 'nudaq.sqlite'}"
    stub = StubFrontend(settings={"POWER": "2900.0"})
    bench = Bench(data_dir, stub.url, config, "slowcontrol", "slowcontrol", "--db", db_url)
    try:
        rows = wait_for_rows(db_url, 8)  # recorded before any run
        assert {(r.quantity, r.unit) for r in rows} == {
            ("power_MW", "MW"),
            ("hv_V", "V"),
            ("ln2_pct", "%"),
            ("temp_C", "degC"),
        }
        assert {r.value for r in rows if r.quantity == "power_MW"} == {2900.0}
        ack = bench.transition("begin", run=11)
        assert ack["ok"], ack
        bench.collect(0.5)
        stub.settings["POWER"] = "50.0"  # the reactor trips
        bench.collect(0.5)
        stub.settings["POWER"] = "2875.5"
        bench.collect(0.5)
        ack = bench.transition("end", run=11)
        bench.collect_until(KIND_EOR)
        n_rows = len(stored(db_url))
        wait_for_rows(db_url, n_rows + 8)  # and recording goes on after the run
        assert bench.transition("exit")["ok"]
        assert bench.proc.wait(10) == 0
    finally:
        bench.close()
        stub.close()
    batches = [b for _, b in bench.batches]
    assert [b.kind for b in batches] == [KIND_BOR] + [KIND_DATA] * (len(batches) - 2) + [KIND_EOR]
    assert [b.seq for b in batches] == list(range(len(batches)))
    assert all(b.stream == Stream.REACTOR and b.run == 11 for b in batches)
    data = batches[1:-1]
    assert all(len(b.pulses) == 1 for b in data)
    assert ack["ok"] and ack["info"]["readings"] == len(data)
    t = [int(b.pulses["t_ns"][0]) for b in data]
    assert batches[0].watermark_ns == t[0]
    assert [b.watermark_ns for b in data] == [x + 1 for x in t]
    assert batches[-1].watermark_ns == t[-1] + 1
    assert t == sorted(t) and len(set(t)) == len(t)
    power_kW = [int(b.pulses["adc"][0]) for b in data]
    on = [bool(b.pulses["flags"][0] & FLAG_REACTOR_ON) for b in data]
    assert on == [p >= 100_000 for p in power_kW]
    changes = [power_kW[0]] + [b for a, b in zip(power_kW, power_kW[1:], strict=False) if a != b]
    assert changes == [2_900_000, 50_000, 2_875_500]
    assert 10 <= len(data) <= 25
    sql_power = {r.clock_ns: r.value for r in stored(db_url) if r.quantity == "power_MW"}
    assert all(sql_power[x] * 1000 == p for x, p in zip(t, power_kW, strict=True))


def test_reactor_flag_follows_conf_power_on_the_simulated_crate(data_dir, crate_factory):
    """hardware_sim's slow-control box: a reactor trip (CONF POWER 0) and restart show up as
    OFF and ON readings of the REACTOR stream; the readings are in SQL."""
    config = Config()
    config.sim.reactor[0].power_MW = 2900.0
    config.slowcontrol.poll_interval_s = 0.1
    crate = crate_factory(config)
    url = crate.urls["slowcontrol"]
    db_url = f"sqlite:///{data_dir / 'nudaq.sqlite'}"
    bench = Bench(data_dir, url, config, "slowcontrol", "slowcontrol", "--db", db_url)
    try:
        assert bench.transition("begin", run=2)["ok"]
        for power in (0.0, 2900.0):  # a second client takes the line; slow control reconnects
            bench.collect(0.5)
            shifter = SlowControlDriver(url)
            shifter.set("POWER", power)
            shifter.close()
        bench.collect(0.5)
        ack = bench.transition("end", run=2)
        bench.collect_until(KIND_EOR)
    finally:
        bench.close()
    data = [b for _, b in bench.batches if b.kind == KIND_DATA]
    assert ack["ok"] and ack["info"]["readings"] == len(data)
    power_MW = np.array([b.pulses["adc"][0] / 1000 for b in data])
    on = np.array([bool(b.pulses["flags"][0] & FLAG_REACTOR_ON) for b in data])
    assert np.array_equal(on, power_MW >= config.reactor.on_threshold_MW)
    states = [int(x) for x in on[np.r_[True, on[1:] != on[:-1]]]]
    assert states == [1, 0, 1]
    assert np.all(np.abs(power_MW[on] - 2900) < 2900 * 0.03) and np.all(power_MW[~on] == 0)
    sql = {r.clock_ns: r.value for r in stored(db_url) if r.quantity == "power_MW"}
    assert all(
        sql[int(b.pulses["t_ns"][0])] == round(p, 3) for b, p in zip(data, power_MW, strict=True)
    )
