"""The simulated devices over real TCP sockets and ptys, checked against the ground truth."""

from __future__ import annotations

import json
import select
import signal
import subprocess
import sys
import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest
import serial
from sim_host import Host, closed_truth, pulse_fields, quiet_config, recorded

from daq.core.config import Faults, ReactorPeriod
from daq.core.records import Stream
from daq.formats.protocol import FRAME_DATA, FRAME_END, MAX_RECORDS
from hardware_sim.devices import SlowControlDevice
from hardware_sim.generator import Origin
from hardware_sim.truth import read_fault_counts, read_truth

TRANSPORTS = ["tcp", "pty"]
S = 10**9


def check_frames(host: Host, t_start: int) -> None:
    """Counters from 0 without gaps, watermarks rising, each frame's pulses in its interval."""
    frames = host.frames
    assert [f.counter for f in frames] == list(range(len(frames)))
    assert [f.kind for f in frames] == [FRAME_DATA] * (len(frames) - 1) + [FRAME_END]
    previous = t_start
    for f in frames:
        assert f.watermark_ns >= previous
        assert len(f.pulses) <= MAX_RECORDS
        if len(f.pulses):
            assert f.pulses["t_ns"].min() >= previous and f.pulses["t_ns"].max() < f.watermark_ns
        previous = f.watermark_ns
    stats = host.decoder.stats
    assert (stats.crc_errors, stats.bad_headers, stats.missing_frames) == (0, 0, 0)
    assert stats.skipped_bytes == 0


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_text_commands(transport, make_crate, host_factory):
    crate = make_crate(quiet_config(transport=transport))
    for name, model in [("hpge", "HPGE-ADC"), ("acv", "ACV-DIGI"), ("crv", "CRV-DIGI")]:
        host = host_factory(crate.urls[name])
        assert host.ask("*IDN?").startswith(f"OK NUDAQ,{model},")
        conf = dict(kv.split("=") for kv in host.ask("CONF?").split()[1:])
        assert {"THR", "FRAME_MS"} <= set(conf) and ("RTRATE" in conf) == (name == "hpge")
        assert host.ask("CONF", "THR", 7) == "OK"
        assert "THR=7" in host.ask("CONF?")
        for bad in [("CONF", "THR", -1), ("CONF", "FRAME_MS", 0), ("CONF", "THR"), ("FOO",)]:
            assert host.ask(*bad).startswith("ERR "), bad
        assert host.ask("CONF", "RTRATE", 1).startswith("OK" if name == "hpge" else "ERR ")
        assert host.ask("STOP").startswith("ERR ")
        t = int(host.ask("CLOCK?").split()[1])
        assert crate.t0_ns < t <= crate.now_ns()
    sc = host_factory(crate.urls["slowcontrol"])
    assert sc.ask("*IDN?").startswith("OK NUDAQ,SLOWCTRL,")
    assert sc.ask("START").startswith("ERR ")
    values = dict(kv.split("=") for kv in sc.ask("READ?").split()[1:])
    assert set(values) == {"t_ns", "power_MW", "hv_V", "ln2_pct", "temp_C"}
    assert float(values["power_MW"]) == pytest.approx(2900, rel=0.03)
    assert float(values["hv_V"]) == pytest.approx(3000, abs=5)
    assert 30 <= float(values["ln2_pct"]) <= 95


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_runs_deliver_exactly_the_recorded_pulses(transport, make_crate, host_factory):
    """Three streams at once; big frames split at MAX_RECORDS; THR; HPGe dead time per frame."""
    crate = make_crate(quiet_config(transport=transport, speed=100.0, acv_singles_hz=1000.0))
    hosts = {name: host_factory(crate.urls[name]) for name in ("hpge", "acv", "crv")}
    assert hosts["hpge"].ask("CONF", "RTRATE", 200) == "OK"
    assert hosts["acv"].ask("CONF", "FRAME_MS", 100) == "OK"
    assert hosts["crv"].ask("CONF", "THR", 1500) == "OK"
    starts = {name: host.start() for name, host in hosts.items()}
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:
        for host in hosts.values():
            host.read_for(0.02)
    ends = {name: host.stop().watermark_ns for name, host in hosts.items()}
    truth = closed_truth(crate)
    for name, host in hosts.items():
        check_frames(host, starts[name])
        want = recorded(truth, Stream[name.upper()], starts[name], ends[name])
        if name == "crv":
            want = want[want["adc"] >= 1500]
        assert len(want) > 100, name
        assert np.array_equal(host.pulses(), pulse_fields(want)), name
    assert max(len(f.pulses) for f in hosts["acv"].frames) == MAX_RECORDS
    hpge = hosts["hpge"]
    rt = recorded(truth, Stream.HPGE, starts["hpge"], ends["hpge"])
    assert (rt["origin"] == Origin.RT).sum() == pytest.approx(
        200 * (ends["hpge"] - starts["hpge"]) / S, rel=0.1
    )
    triggers = truth["t_ns"][(truth["stream"] == Stream.HPGE) & truth["recorded"]]
    d = crate.config.sim.adc_dead_time_ns
    dead = np.minimum(triggers + d, ends["hpge"]) - np.maximum(triggers, starts["hpge"])
    assert sum(f.dead_ns for f in hpge.frames) == dead[dead > 0].sum()


def test_reactor_schedule_and_power_trip(make_crate, host_factory):
    """READ? gives the scheduled power; CONF POWER 0 trips it: no signal generated after."""
    crate = make_crate(quiet_config(speed=20.0, mu_nu_1e10=300.0))
    sc = host_factory(crate.urls["slowcontrol"])

    def power() -> float:
        return float(sc.ask("READ?").split()[2].split("=")[1])

    assert power() == pytest.approx(2900, rel=0.03)
    time.sleep(1.0)
    assert sc.ask("CONF", "POWER", 0) == "OK"
    t_trip = int(sc.ask("CLOCK?").split()[1])
    assert power() == 0.0
    assert sc.ask("CONF", "HV", 0) == "OK"
    assert "hv_V=0.00" in sc.ask("READ?")
    time.sleep(0.5)
    truth = closed_truth(crate)
    signal_t = truth["t_ns"][truth["origin"] == Origin.SIGNAL]
    assert len(signal_t) > 10
    assert signal_t.max() < t_trip
    assert truth["t_ns"].max() > t_trip + 5 * S


def test_reactor_schedule_in_simulated_seconds():
    sim = quiet_config().sim
    sim.reactor = [ReactorPeriod(start_s=100, power_MW=0), ReactorPeriod(start_s=0, power_MW=2900)]
    clock = SimpleNamespace(t0_ns=7 * S, t_generated_ns=7 * S, now_ns=lambda: 7 * S)
    device = SlowControlDevice(sim, clock, line=None, seed=1)
    assert device.power_MW(7 * S) == 2900 and device.power_MW(7 * S + 99 * S) == 2900
    assert device.power_MW(7 * S + 100 * S) == 0
    assert device.ln2_pct(7 * S) == 95 and device.ln2_pct(7 * S + 86400 * S) == 85


def test_faults_counted_and_good_frames_bit_exact(make_crate, host_factory):
    faults = Faults(noise_bytes_per_s=50, dropped_bytes_per_s=0.5, corrupt_frames_per_s=1.0)
    config = quiet_config(speed=20.0, acv_singles_hz=2000.0)
    config.sim.faults.acv = faults
    crate = make_crate(config)
    host = host_factory(crate.urls["acv"])
    t_start = host.start()
    host.read_for(2.0)
    end = host.stop()
    truth = closed_truth(crate)
    counts = read_fault_counts(crate.sim_dir / "faults.json")["acv"]
    stats = host.decoder.stats
    assert counts["damaged_frames"] >= 10 and counts["corrupted_frames"] >= 5
    assert counts["noise_bytes"] > 100 and counts["dropped_bytes"] > 0
    assert stats.missing_frames == counts["damaged_frames"]
    assert stats.frames + stats.missing_frames == end.counter + 1
    assert stats.crc_errors + stats.bad_headers > 0
    assert stats.skipped_bytes >= counts["noise_bytes"]
    want = recorded(truth, Stream.ACV, t_start, end.watermark_ns)
    frames = host.frames
    for prev, frame in zip([None, *frames[:-1]], frames, strict=True):
        before = want[want["t_ns"] < frame.watermark_ns]
        if prev is not None and prev.counter == frame.counter - 1:
            exact = before[before["t_ns"] >= prev.watermark_ns]
        elif frame.counter == 0:
            exact = before[before["t_ns"] >= t_start]
        else:
            exact = before[len(before) - len(frame.pulses) :]
        assert np.array_equal(frame.pulses, pulse_fields(exact)), frame.counter


def test_stalls_delay_but_lose_nothing(make_crate, host_factory):
    config = quiet_config(speed=20.0)
    config.sim.faults.crv = Faults(stall_every_s=4.0, stall_s=2.0)
    crate = make_crate(config)
    host = host_factory(crate.urls["crv"])
    t_start = host.start()
    host.read_for(1.5)
    end = host.stop()
    truth = closed_truth(crate)
    check_frames(host, t_start)
    want = recorded(truth, Stream.CRV, t_start, end.watermark_ns)
    assert np.array_equal(host.pulses(), pulse_fields(want))
    assert read_fault_counts(crate.sim_dir / "faults.json")["crv"]["stalls"] >= 3


def test_disconnect_then_reconnect(make_crate, host_factory):
    config = quiet_config(speed=20.0)
    config.sim.faults.crv = Faults(disconnect_after_s=4.0)
    crate = make_crate(config)
    host = host_factory(crate.urls["crv"])
    host.start()
    with pytest.raises(serial.SerialException):
        host.read_for(3.0)
    assert crate.fault_counts["crv"]["disconnects"] == 1
    again = host_factory(crate.urls["crv"])
    assert again.ask("*IDN?").startswith("OK NUDAQ,CRV-DIGI,")
    t_start = again.start()
    end = again.stop()
    assert end.counter == len(again.frames) - 1 and end.watermark_ns >= t_start
    assert again.frames[0].counter == 0
    third = host_factory(crate.urls["crv"])  # a new client replaces a live one
    assert third.ask("*IDN?").startswith("OK NUDAQ,CRV-DIGI,")


def test_module_entry_point(tmp_path):
    config = quiet_config(speed=10.0)
    path = tmp_path / "config.json"
    path.write_text(config.snapshot())
    sim = subprocess.Popen(
        [sys.executable, "-m", "daq.processes", "sim", "--config", str(path)]
        + ["--data-dir", str(tmp_path), "--reactor", "off", "--transport", "tcp"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        ready, _, _ = select.select([sim.stdout], [], [], 30)
        assert ready, "no JSON line within 30 s"
        urls = json.loads(sim.stdout.readline())
        assert set(urls) == {"hpge", "acv", "crv", "slowcontrol", "clock_t0_ns"}
        assert abs(urls["clock_t0_ns"] - time.time_ns()) < 60 * S
        sc = Host(urls["slowcontrol"])
        assert " power_MW=0.000 " in sc.ask("READ?")
        sc.close()
        time.sleep(0.3)
        sim.send_signal(signal.SIGTERM)
        out, err = sim.communicate(timeout=20)
    finally:
        if sim.poll() is None:
            sim.kill()
    assert sim.returncode == 0, err
    assert out == ""
    assert len(read_truth(tmp_path / "sim" / "truth.arrow")) > 0
    assert set(read_fault_counts(tmp_path / "sim" / "faults.json")) == {"hpge", "acv", "crv"}


def assert_frames_equal(got: list, want: list) -> None:
    """Decoded frames equal to a device's SentFrame records, pulses bit for bit."""
    assert [f.counter for f in got] == [f.counter for f in want]
    for g, w in zip(got, want, strict=True):
        assert (g.kind, g.watermark_ns, g.dead_ns) == (w.kind, w.watermark_ns, w.dead_ns)
        assert g.pulses.tobytes() == w.pulses.tobytes()


def test_recorded_frames_and_the_line_hook(make_crate, host_factory):
    """record=True: the frames sent with their fate (damaged or dropped by the line hook;
    line noise damages none) match what a host decodes; the commands and STARTs are logged."""
    config = quiet_config(speed=20.0, acv_singles_hz=2000.0)
    config.sim.faults.acv = Faults(noise_bytes_per_s=50)
    crate = make_crate(config, record=True)
    device = crate.devices[Stream.ACV]

    def hook(frame, data: bytes) -> bytes:
        if frame.counter == 5:
            return b""  # never sent
        if frame.counter == 6:
            return data[:-1]  # a byte short
        if frame.counter == 7:
            return b"\x00" * 30 + data  # noise in front: still intact
        return data

    crate.call(lambda: setattr(device, "line_hook", hook))
    host = host_factory(crate.urls["acv"])
    t_start = host.start()
    host.read_for(1.0)
    end = host.stop()
    truth = closed_truth(crate)
    sent = device.frames
    assert device.commands == ["START", "STOP"] and device.starts == [t_start]
    assert sent[5].lost and not sent[5].damaged and sent[6].damaged and sent[7].delivered
    assert_frames_equal(host.frames, [f for f in sent if f.delivered])
    assert [f.counter for f in sent if not f.delivered] == [5, 6]
    assert host.decoder.stats.missing_frames == 2
    assert host.decoder.stats.skipped_bytes >= crate.fault_counts["acv"]["noise_bytes"] + 30 > 30
    assert end.counter == sent[-1].counter and all(f.start_ns == t_start for f in sent)
    want = recorded(truth, Stream.ACV, t_start, end.watermark_ns)
    assert np.array_equal(np.concatenate([f.pulses for f in sent]), pulse_fields(want))


def test_dropped_line_loses_the_queued_frames(make_crate, host_factory):
    """A host that does not read: frames pile up in the device; when the device drops the line,
    the frames still queued are marked lost, and the host decodes exactly the others."""
    config = quiet_config(transport="pty", speed=20.0, acv_singles_hz=2000.0)
    crate = make_crate(config, record=True)
    device = crate.devices[Stream.ACV]
    host = host_factory(crate.urls["acv"])
    host.start()
    deadline = time.monotonic() + 20
    while crate.call(lambda: device.line.pending_out) < 100_000:
        assert time.monotonic() < deadline, "the pty never filled up"
        time.sleep(0.05)
    crate.drop_line("acv")
    assert not device.running
    host.read_for(1.0)
    sent = device.frames
    assert any(f.lost for f in sent) and not any(f.damaged for f in sent)
    assert_frames_equal(host.frames, [f for f in sent if f.delivered])
    assert host.frames[-1].counter + 1 == next(f.counter for f in sent if f.lost)


def test_silence_lost_end_frame_and_noisy_replies(make_crate, host_factory):
    """hold_silent holds the frames back without losing pulses; end_frame_loss loses the END
    frame (the device is back in text mode all the same); reply_noise_bytes garbles replies."""
    config = quiet_config(speed=20.0)
    config.sim.faults.crv = Faults(end_frame_loss=1.0)
    config.sim.faults.hpge = Faults(reply_noise_bytes=5)
    crate = make_crate(config, record=True)
    assert crate.call(threading.get_ident) != threading.get_ident()  # runs in the loop
    hpge = host_factory(crate.urls["hpge"])
    hpge.port.write(b"*IDN?\n")
    expected = f"OK NUDAQ,HPGE-ADC,{crate.devices[Stream.HPGE].serial},1.0\n".encode()
    assert hpge.port.read(5 + len(expected))[5:] == expected
    crv = host_factory(crate.urls["crv"])
    crate.hold_silent("crv")
    t_start = crv.start()
    crv.read_for(0.5)
    assert crv.frames == []
    crate.hold_silent("crv", False)
    crv.read_for(0.5)
    with pytest.raises(AssertionError, match="no END frame"):
        crv.stop(timeout_s=1.0)
    assert crv.ask("*IDN?").startswith("OK NUDAQ,CRV-DIGI,")
    t_end = crate.devices[Stream.CRV].frames[-1].watermark_ns
    truth = closed_truth(crate)
    sent = crate.devices[Stream.CRV].frames
    assert sent[-1].kind == FRAME_END and sent[-1].lost
    assert_frames_equal(crv.frames, sent[:-1])
    assert [f.counter for f in crv.frames] == list(range(len(sent) - 1))
    want = recorded(truth, Stream.CRV, t_start, t_end)
    assert len(want) > 50 and np.array_equal(crv.pulses(), pulse_fields(want))
    counts = read_fault_counts(crate.sim_dir / "faults.json")
    assert counts["crv"]["lost_end_frames"] == 1 and counts["hpge"]["garbled_replies"] == 1
