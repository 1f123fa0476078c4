"""Front-end drivers over real bytes (TCP sockets and ptys) against hardware_sim's simulated
front-ends, with line faults, checked against the devices' ground truth (the frames they sent,
the pulses the crate recorded)."""

from __future__ import annotations

import time

import numpy as np
import process_bench
import pytest
from process_bench import delivered_pulses, sent_frames, sim_faults, sim_truth

from daq.core.config import Config
from daq.core.errors import ProtocolError
from daq.core.records import Stream
from daq.drivers.listmode import EndFrameLost, FrontendDriver
from daq.formats.protocol import FRAME_DATA, FRAME_END, frame_size
from hardware_sim.devices import FIRMWARE

sim_crate = process_bench.sim_crate


@pytest.fixture(params=["tcp", "pty"])
def transport(request):
    return request.param


def crate_config(transport: str = "tcp", **sim) -> Config:
    """The default configuration on ``transport`` lines; ``sim`` overrides sim.* keys."""
    config = Config()
    config.sim.transport = transport
    for key, value in sim.items():
        setattr(config.sim, key, value)
    return config


def read_for(driver: FrontendDriver, seconds: float) -> list:
    frames = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        frames += driver.read_frames(0.02)
    return frames


def read_until(driver: FrontendDriver, done, timeout_s: float = 20) -> list:
    """Frames read until ``done(frames)`` is true (fails after timeout_s)."""
    frames: list = []
    deadline = time.monotonic() + timeout_s
    while not done(frames):
        assert time.monotonic() < deadline, f"gave up after {len(frames)} frames"
        frames += driver.read_frames(0.02)
    return frames


def assert_same_frames(got: list, want: list) -> None:
    """Decoded frames equal to the device's ground truth, field by field, pulses bit for bit."""
    assert [f.counter for f in got] == [f.counter for f in want]
    for g, w in zip(got, want, strict=True):
        assert (g.kind, g.watermark_ns, g.dead_ns) == (w.kind, w.watermark_ns, w.dead_ns)
        assert g.pulses.tobytes() == w.pulses.tobytes()


def test_text_commands(transport, sim_crate):
    config = crate_config(transport)
    crate = sim_crate(config)
    device = crate.device("hpge")
    driver = FrontendDriver(crate.urls["hpge"])
    try:
        assert driver.identify() == f"NUDAQ,HPGE-ADC,{device.serial},{FIRMWARE}"
        driver.configure(thr=120, FRAME_MS=5)
        settings = {"THR": 120, "FRAME_MS": 5, "RTRATE": config.sim.rt_rate_hz}
        assert driver.settings() == settings
        assert crate.call(lambda: dict(device.settings)) == settings
        before = crate.now_ns()
        assert before <= driver.clock() <= crate.now_ns()
        with pytest.raises(ProtocolError, match=f"{driver.url}: CONF NOPE 1: device refused"):
            driver.configure(nope=1)
    finally:
        driver.close()
    assert device.commands == [
        "*IDN?",
        "CONF THR 120",
        "CONF FRAME_MS 5",
        "CONF?",
        "CLOCK?",
        "CONF NOPE 1",
    ]


def test_garbled_reply_names_device_and_command(sim_crate):
    config = crate_config()
    config.sim.faults.hpge.reply_noise_bytes = 8
    crate = sim_crate(config)
    driver = FrontendDriver(crate.urls["hpge"])
    try:
        with pytest.raises(ProtocolError) as err:
            driver.identify()
    finally:
        driver.close()
    assert driver.url in str(err.value) and "*IDN?" in str(err.value)
    assert sim_faults(crate, "hpge")["garbled_replies"] == 1


def test_frames_bit_exact_through_noise_and_drops(transport, sim_crate):
    """Line noise, dropped bytes and flipped bits on the AC line: every undamaged frame arrives
    bit-exact, every damaged one is counted as missing, every byte that is not part of a good
    frame (the noise included) is counted as skipped, and the frames hold exactly the pulses
    the crate recorded."""
    config = crate_config(transport, acv_singles_hz=20_000)
    faults = config.sim.faults.acv
    # a frame covering dt s is damaged with probability 1 - exp(-30 dt): over the 1.5 s run,
    # 5 ms frames give ~45 damaged ones, and even 50 ms frames (a crawling machine) ~23 of 30:
    # fewer than 10 is out of reach (P < 1e-5)
    faults.noise_bytes_per_s, faults.dropped_bytes_per_s, faults.corrupt_frames_per_s = 2000, 15, 15
    crate = sim_crate(config)
    device = crate.device("acv")
    driver = FrontendDriver(crate.urls["acv"])
    try:
        driver.configure(FRAME_MS=5)
        line_before = crate.call(lambda: device.line_bytes)
        t_start = driver.start()
        frames = read_for(driver, 1.5)
        rest, end = driver.stop()
        frames += rest
    finally:
        driver.close()
    sent = sent_frames(crate, "acv")
    data = [f for f in sent if f.kind == FRAME_DATA]
    good = [f for f in data if f.delivered]
    damaged = [f for f in data if f.damaged]
    assert len(damaged) >= 10 and len(good) >= 20
    assert not any(f.lost for f in sent) and len(good) + len(damaged) == len(data)
    assert_same_frames(frames, good)
    assert sent[-1].kind == FRAME_END and sent[-1].delivered
    assert_same_frames([end], sent[-1:])
    assert all(f.start_ns == t_start for f in sent) and device.starts == [t_start]
    assert t_start <= frames[0].watermark_ns <= end.watermark_ns
    stats = driver.stats
    assert stats.missing_frames == len(damaged)
    assert stats.frames == len(good) + 1
    assert stats.pulses == sum(len(f.pulses) for f in good)
    injected = sim_faults(crate, "acv")  # stops the crate
    assert injected["damaged_frames"] == len(damaged)
    assert stats.skipped_bytes >= injected["noise_bytes"] > 0
    on_line = sent[-1].line_end - line_before - len(f"OK {t_start}\n")
    good_bytes = sum(frame_size(len(f.pulses)) for f in [*good, sent[-1]])
    assert stats.skipped_bytes == on_line - good_bytes
    truth = sim_truth(crate, Stream.ACV, t_start, end.watermark_ns)
    assert np.concatenate([f.pulses for f in data]).tobytes() == truth.tobytes()
    assert np.concatenate([f.pulses for f in frames]).tobytes() == delivered_pulses(sent).tobytes()


def test_quiet_line_abandons_a_bogus_length(transport, sim_crate):
    """A frame whose length field was corrupted must not swallow the END frame after it."""
    crate = sim_crate(crate_config(transport))
    device = crate.device("hpge")

    def corrupt_length(frame, data: bytes) -> bytes:  # in the crate's loop
        if frame.counter != 3:
            return data
        device.hold_silent()  # nothing follows it until STOP
        return data[:6] + (4000).to_bytes(2, "little") + data[8:]

    crate.call(lambda: setattr(device, "line_hook", corrupt_length))
    driver = FrontendDriver(crate.urls["hpge"])
    try:
        driver.start()
        frames = read_until(driver, lambda _: device.silent)
        frames += read_for(driver, 0.3)
        rest, end = driver.stop()
    finally:
        driver.close()
    sent = sent_frames(crate, "hpge")
    assert sent[3].damaged and all(f.delivered for f in sent if f.counter != 3)
    assert_same_frames(frames + rest, [f for f in sent if f.kind == FRAME_DATA and f.counter != 3])
    assert sent[-1].kind == FRAME_END and end.counter == sent[-1].counter > 3
    assert driver.stats.missing_frames == 1
    assert driver.stats.bad_headers + driver.stats.crc_errors >= 1


def test_lost_end_frame_is_an_error_carrying_the_data(transport, sim_crate):
    config = crate_config(transport)
    config.sim.faults.crv.end_frame_loss = 1.0
    crate = sim_crate(config)
    driver = FrontendDriver(crate.urls["crv"], timeout_s=2.0)
    try:
        driver.start()
        frames = read_until(driver, lambda got: len(got) >= 3)
        with pytest.raises(EndFrameLost, match="STOP") as err:
            driver.stop()
        assert driver.lost_end_frames == 1
        assert all(f.kind != FRAME_END for f in err.value.frames)
        assert driver.identify().startswith("NUDAQ,CRV-DIGI,")  # back in text mode
    finally:
        driver.close()
    sent = sent_frames(crate, "crv")
    assert sent[-1].kind == FRAME_END and sent[-1].lost
    assert_same_frames(frames + err.value.frames, sent[:-1])
    assert sim_faults(crate, "crv")["lost_end_frames"] == 1


def test_lost_line_then_reconnect_and_restart(sim_crate):
    crate = sim_crate(crate_config("tcp"))
    device = crate.device("acv")
    driver = FrontendDriver(crate.urls["acv"])
    try:
        driver.configure(FRAME_MS=5)
        driver.start()
        read_until(driver, lambda got: len(got) >= 1)
        crate.drop_line("acv")
        with pytest.raises(ProtocolError, match="line lost"):
            read_for(driver, 10.0)
        driver.reconnect()
        assert driver.identify().startswith("NUDAQ,ACV-DIGI,")
        t_start = driver.start()
        frames = read_until(driver, lambda got: len(got) >= 3)
        rest, end = driver.stop()
    finally:
        driver.close()
    assert device.starts[1] == t_start and len(device.starts) == 2
    sent = [f for f in sent_frames(crate, "acv") if f.start_ns == t_start]
    assert_same_frames(frames + rest + [end], sent)
    assert frames[0].counter == 0 and end.counter == len(frames + rest)
    assert driver.stats.missing_frames == 0


def test_commands_refused_while_running(sim_crate):
    crate = sim_crate(crate_config())
    driver = FrontendDriver(crate.urls["hpge"])
    try:
        driver.start()
        with pytest.raises(ProtocolError, match="running"):
            driver.clock()
        driver.stop()
    finally:
        driver.close()
    assert crate.device("hpge").commands == ["START", "STOP"]


def test_unreachable_device_names_its_url():
    with pytest.raises(ProtocolError, match="socket://127.0.0.1:9: cannot open"):
        FrontendDriver("socket://127.0.0.1:9", timeout_s=0.5)
