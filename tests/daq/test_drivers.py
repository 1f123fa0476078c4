"""Front-end and slow-control drivers over real bytes: TCP sockets and ptys, with line faults."""

from __future__ import annotations

import time

import numpy as np
import process_bench
import pytest
from frontend_stub import StubFrontend
from process_bench import missing_runs, sim_faults, sim_truth

from daq.core.config import Config
from daq.core.errors import ProtocolError
from daq.drivers.listmode import EndFrameLost, FrontendDriver
from daq.formats.protocol import FRAME_END, SYNC

crate_factory = process_bench.crate_factory


@pytest.fixture(params=["tcp", "pty"])
def transport(request):
    return request.param


def open_pair(transport: str, **stub_options) -> tuple[StubFrontend, FrontendDriver]:
    stub = StubFrontend(transport=transport, **stub_options)
    return stub, FrontendDriver(stub.url, timeout_s=1.0)


def read_for(driver: FrontendDriver, seconds: float) -> list:
    frames = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        frames += driver.read_frames(0.02)
    return frames


def test_text_commands(transport):
    stub, driver = open_pair(transport)
    try:
        assert driver.identify() == "NUDAQ,STUB,0001,1.0"
        driver.configure(thr=120, FRAME_MS=5)
        assert driver.settings() == {"THR": 120, "FRAME_MS": 5, "RTRATE": 0}
        before = stub.clock()
        assert before <= driver.clock() <= stub.clock()
        with pytest.raises(ProtocolError, match=f"{driver.url}: CONF NOPE 1: device refused"):
            driver.configure(nope=1)
    finally:
        driver.close()
        stub.close()


def test_garbled_reply_names_device_and_command():
    stub, driver = open_pair("tcp", garble_replies=True)
    try:
        with pytest.raises(ProtocolError) as err:
            driver.identify()
        assert driver.url in str(err.value) and "*IDN?" in str(err.value)
    finally:
        driver.close()
        stub.close()


def noise_and_damage(seed: int):
    """A mangler: noise between frames everywhere, and every 7th frame damaged on the line."""
    rng = np.random.default_rng(seed)
    truth = {"noise_bytes": 0, "damaged": set()}

    def mangle(counter: int, data: bytes) -> bytes:
        if data[4] == FRAME_END:
            return data
        noise = rng.integers(0, 256, int(rng.integers(0, 40)), dtype=np.uint8).tobytes()
        assert SYNC not in noise
        truth["noise_bytes"] += len(noise)
        if counter % 7 == 3:
            truth["damaged"].add(counter)
            cut = int(rng.integers(0, len(data)))
            if counter % 2:
                data = data[:cut] + data[cut + 1 :]  # a dropped byte
            else:
                data = bytearray(data)
                data[cut] ^= 1 << int(rng.integers(0, 8))  # a flipped bit
                data = bytes(data)
        return noise + data

    return mangle, truth


def test_frames_bit_exact_through_noise_and_drops(transport):
    """Every undamaged frame arrives bit-exact; every damaged one is counted as missing."""
    mangle, truth = noise_and_damage(1)
    stub, driver = open_pair(transport, rate_hz=20_000, frame_ms=5, mangle=mangle)
    try:
        t_start = driver.start()
        frames = read_for(driver, 1.0)
        rest, end = driver.stop()
        frames += rest
    finally:
        driver.close()
        stub.close()
    sent = [f for f in stub.data_frames if f.counter not in truth["damaged"]]
    assert len(truth["damaged"]) >= 10 and len(sent) >= 100
    assert [f.counter for f in frames] == [f.counter for f in sent]
    for got, want in zip(frames, sent, strict=True):
        assert (got.watermark_ns, got.dead_ns) == (want.watermark_ns, want.dead_ns)
        assert got.pulses.tobytes() == want.pulses.tobytes()
    assert end.kind == FRAME_END and end.counter == stub.sent[-1].counter
    assert t_start < frames[0].watermark_ns <= end.watermark_ns
    stats = driver.stats
    assert stats.missing_frames == len(truth["damaged"])
    assert stats.frames == len(sent) + 1
    assert stats.pulses == sum(len(f.pulses) for f in sent)
    assert stats.skipped_bytes >= truth["noise_bytes"]


def test_quiet_line_abandons_a_bogus_length(transport):
    """A frame whose length field was corrupted must not swallow the END frame after it."""
    stub = None

    def corrupt_length(counter: int, data: bytes) -> bytes:
        if counter != 3:
            return data
        stub.paused.set()
        return data[:6] + (4000).to_bytes(2, "little") + data[8:]

    stub, driver = open_pair(transport, mangle=corrupt_length)
    try:
        driver.start()
        frames = read_for(driver, 0.3)
        rest, end = driver.stop()
    finally:
        driver.close()
        stub.close()
    assert [f.counter for f in frames + rest] == [0, 1, 2]
    assert end.counter == 4
    assert driver.stats.missing_frames == 1
    assert driver.stats.bad_headers + driver.stats.crc_errors >= 1


def test_lost_end_frame_is_an_error_carrying_the_data(transport):
    stub, driver = open_pair(transport, drop_end=True)
    try:
        driver.start()
        read_for(driver, 0.1)
        stub.paused.set()
        time.sleep(0.05)
        with pytest.raises(EndFrameLost, match="STOP") as err:
            driver.stop()
        assert driver.lost_end_frames == 1
        assert all(f.kind != FRAME_END for f in err.value.frames)
        assert driver.identify().startswith("NUDAQ")  # back in text mode
    finally:
        driver.close()
        stub.close()


def test_lost_line_then_reconnect_and_restart():
    stub, driver = open_pair("tcp", frame_ms=5)
    try:
        driver.start()
        assert read_for(driver, 0.1)
        stub.disconnect()
        with pytest.raises(ProtocolError, match="line lost"):
            read_for(driver, 1.0)
        driver.reconnect()
        assert driver.identify().startswith("NUDAQ")
        driver.start()
        frames = read_for(driver, 0.1)
        _, end = driver.stop()
    finally:
        driver.close()
        stub.close()
    assert frames[0].counter == 0 and end.counter == len(frames)
    assert driver.stats.missing_frames == 0
    assert len(stub.start_times) == 2


def test_commands_refused_while_running():
    stub, driver = open_pair("tcp")
    try:
        driver.start()
        with pytest.raises(ProtocolError, match="running"):
            driver.clock()
        driver.stop()
    finally:
        driver.close()
        stub.close()


def test_unreachable_device_names_its_url():
    with pytest.raises(ProtocolError, match="socket://127.0.0.1:9: cannot open"):
        FrontendDriver("socket://127.0.0.1:9", timeout_s=0.5)


def test_against_the_simulated_crate(transport, crate_factory):
    """hardware_sim's AC digitizer with line faults: every damaged frame is a counted gap,
    every pulse that arrives is one the crate recorded, bit for bit."""
    config = Config()
    config.sim.transport = transport
    config.sim.acv_singles_hz = 30_000
    faults = config.sim.faults.acv
    # about 30 damaged frames a second: at least 3 in a second is certain (P(<3) ~ 1e-10)
    faults.noise_bytes_per_s, faults.dropped_bytes_per_s, faults.corrupt_frames_per_s = 200, 15, 15
    crate = crate_factory(config)
    driver = FrontendDriver(crate.urls["acv"])  # the first reply waits for numba to compile
    try:
        assert driver.identify().startswith("NUDAQ,ACV-DIGI,")
        driver.configure(THR=0, FRAME_MS=10)
        assert driver.settings() == {"THR": 0, "FRAME_MS": 10}
        t_start = driver.start()
        frames = read_for(driver, 1.0)
        rest, end = driver.stop()
    finally:
        driver.close()
    frames += rest
    injected = sim_faults(crate, "acv")
    truth = sim_truth(crate, 1, t_start, end.watermark_ns)
    got = np.concatenate([f.pulses for f in frames])
    assert injected["damaged_frames"] >= 3
    assert driver.stats.missing_frames == injected["damaged_frames"]
    assert driver.stats.skipped_bytes >= injected["noise_bytes"]
    assert 1 <= missing_runs(got, truth) <= injected["damaged_frames"]
