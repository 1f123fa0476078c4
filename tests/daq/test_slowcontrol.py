"""Slow control against hardware_sim's slow-control device: driver, readings in SQL, the
REACTOR stream and its ON/OFF flag, checked against the device's true values."""

from __future__ import annotations

import time

import numpy as np
import process_bench
from process_bench import Bench
from sqlalchemy import select

from daq.build.reactor import reactor_pulse
from daq.core.config import Config
from daq.core.records import FLAG_REACTOR_ON, Stream
from daq.drivers.slowcontrol_device import QUANTITIES, Reading, SlowControlDriver
from daq.formats.protocol import parse_keyvalues, parse_reply
from daq.formats.wire import KIND_BOR, KIND_DATA, KIND_EOR
from daq.store.models import SlowControlReading
from daq.store.session import make_engine
from hardware_sim.devices import FIRMWARE, HV_NOISE_V, POWER_NOISE, TEMP_NOISE_C, ReadingRecord

data_dir = process_bench.data_dir
crate_factory = process_bench.crate_factory
sim_crate = process_bench.sim_crate

SIGMAS = 6
"""Readings are checked within 6 standard deviations of their noise (P(fail) ~ 2e-9 each)."""


def replied(truth: ReadingRecord) -> dict[str, float]:
    """The values of the device's reply line."""
    values = parse_keyvalues(parse_reply(truth.reply.encode()))
    return {key: float(value) for key, value in values.items() if key != "t_ns"}


def check_reading(reading: Reading, truth: ReadingRecord) -> None:
    """A reading is the device's reply, and that reply is the truth up to its noise (and the
    rounding of its digits)."""
    assert reading.t_ns == truth.t_ns
    assert {q: getattr(reading, q) for q in QUANTITIES} == replied(truth)
    assert abs(reading.power_MW - truth.power_MW) <= SIGMAS * POWER_NOISE * truth.power_MW + 5e-4
    assert abs(reading.hv_V - truth.hv_V) <= SIGMAS * HV_NOISE_V + 5e-3
    assert abs(reading.ln2_pct - truth.ln2_pct) <= 5e-3 + 1e-9
    assert abs(reading.temp_C - truth.temp_C) <= SIGMAS * TEMP_NOISE_C + 5e-3


def test_driver_reads_and_sets_power(sim_crate):
    config = Config()
    crate = sim_crate(config)
    device = crate.slowcontrol
    driver = SlowControlDriver(crate.urls["slowcontrol"])
    try:
        assert driver.identify() == f"NUDAQ,SLOWCTRL,{device.serial},{FIRMWARE}"
        before = crate.now_ns()
        reading = driver.read()
        assert before <= reading.t_ns <= crate.now_ns()
        truth = device.readings[-1]
        assert (truth.power_MW, truth.hv_V) == (config.sim.reactor[0].power_MW, config.sim.hv_V)
        check_reading(reading, truth)
        driver.set("power", 0.5)
        assert device.commands[-1] == "CONF POWER 0.5"
        reading = driver.read()
        assert device.readings[-1].power_MW == 0.5
        check_reading(reading, device.readings[-1])
    finally:
        driver.close()
    assert device.commands == ["*IDN?", "READ?", "CONF POWER 0.5", "READ?"]


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


def test_process_records_and_feeds_the_reactor_stream(data_dir, sim_crate):
    """Readings in SQL between and during runs; the REACTOR stream follows the power."""
    config = Config()
    config.slowcontrol.poll_interval_s = 0.1
    config.reactor.on_threshold_MW = 100.0
    db_url = f"sqlite:///{data_dir / 'nudaq.sqlite'}"
    crate = sim_crate(config)
    device = crate.slowcontrol
    url = crate.urls["slowcontrol"]
    bench = Bench(data_dir, url, config, "slowcontrol", "slowcontrol", "--db", db_url)
    try:
        rows = wait_for_rows(db_url, 8)  # recorded before any run
        assert {(r.quantity, r.unit) for r in rows} == {
            ("power_MW", "MW"),
            ("hv_V", "V"),
            ("ln2_pct", "%"),
            ("temp_C", "degC"),
        }
        ack = bench.transition("begin", run=11)
        assert ack["ok"], ack
        bench.collect(0.5)
        crate.call(lambda: device.set_power(50.0))  # the reactor trips
        bench.collect(0.5)
        crate.call(lambda: device.set_power(2875.5))
        bench.collect(0.5)
        ack = bench.transition("end", run=11)
        bench.collect_until(KIND_EOR)
        n_rows = len(stored(db_url))
        wait_for_rows(db_url, n_rows + 8)  # and recording goes on after the run
        assert bench.transition("exit")["ok"]
        assert bench.proc.wait(10) == 0
    finally:
        bench.close()
    truth = {r.t_ns: r for r in device.readings}
    sql: dict[int, dict[str, float]] = {}
    for row in stored(db_url):
        sql.setdefault(row.clock_ns, {})[row.quantity] = row.value
    assert len(sql) == len(truth)  # every reading the device gave is in SQL, as it gave it
    for t_ns, values in sql.items():
        assert values == replied(truth[t_ns])
        check_reading(Reading(t_ns=t_ns, **values), truth[t_ns])
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
    assert power_kW == [round(sql[x]["power_MW"] * 1000) for x in t]  # the reading, in kW
    on = [bool(b.pulses["flags"][0] & FLAG_REACTOR_ON) for b in data]
    assert on == [p >= 100_000 for p in power_kW]
    true_MW = [truth[x].power_MW for x in t]
    changes = [true_MW[0]] + [b for a, b in zip(true_MW, true_MW[1:], strict=False) if a != b]
    assert changes == [2900.0, 50.0, 2875.5]
    assert on == [p >= config.reactor.on_threshold_MW for p in true_MW]
    assert 10 <= len(data) <= 25


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
