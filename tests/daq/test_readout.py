"""The readout process against hardware_sim's simulated front-ends, a fake run control and a
PULL socket (real bytes), checked against the devices' ground truth."""

from __future__ import annotations

import os
import signal
import time
from itertools import pairwise

import numpy as np
import process_bench
import psutil
import pytest
from process_bench import Bench, delivered_pulses, missing_runs, sent_frames, sim_faults, sim_truth

from daq.core.config import Config
from daq.core.records import FLAG_RT, Loss, Stream, stream_by_name
from daq.formats.protocol import FRAME_END
from daq.formats.wire import KIND_BOR, KIND_DATA, KIND_EOR, Batch

data_dir = process_bench.data_dir
crate_factory = process_bench.crate_factory
sim_crate = process_bench.sim_crate

ADC_DEAD_NS = 1000


def busy_hpge(rate_hz: float) -> Config:
    """A configuration whose HPGe ADC sees about rate_hz pulses/s: the flat continuum alone
    (no veto partners, X-ray lines or random triggers), with a 1 us ADC dead time."""
    config = Config()
    sim = config.sim
    sim.compton_factor = sim.cosmic_factor = 0.0
    sim.xray_lines = []
    sim.adc_dead_time_ns = ADC_DEAD_NS
    sim.flat_cpd = rate_hz * 86400 / (config.detector.mass_kg * sim.continuum_max_keV)
    config.frontends.hpge.rt_rate_hz = 0.0
    return config


@pytest.fixture
def bench_factory(data_dir, sim_crate):
    """Factory: a readout of ``stream`` on an in-process crate (``bench.crate``, its device
    ``bench.device``), with frontends.<stream> settings overridden."""
    benches = []

    def make(config: Config, stream="hpge", send_hwm=200, **frontend) -> Bench:
        config.network.send_hwm = send_hwm
        for key, value in {"batch_ms": 20, "heartbeat_ms": 100, **frontend}.items():
            setattr(getattr(config.frontends, stream), key, value)
        crate = sim_crate(config)
        name = f"readout-{stream}"
        bench = Bench(data_dir, crate.urls[stream], config, name, "readout", "--stream", stream)
        bench.crate, bench.device, bench.stream = crate, crate.device(stream), stream
        benches.append(bench)
        return bench

    yield make
    for bench in benches:
        bench.close()


def received(batches: list[Batch]) -> np.ndarray:
    return np.concatenate([b.pulses for b in batches])


def check_sequence(batches: list[Batch], run: int, stream: Stream = Stream.HPGE) -> None:
    """BOR first, then DATA, EOR last; seq counts up from 0; watermarks never go back."""
    assert [b.kind for b in batches] == [KIND_BOR] + [KIND_DATA] * (len(batches) - 2) + [KIND_EOR]
    assert [b.seq for b in batches] == list(range(len(batches)))
    assert all(b.run == run and b.stream == stream for b in batches)
    marks = [b.watermark_ns for b in batches]
    assert marks == sorted(marks)
    for b in batches:
        if len(b.pulses):
            assert b.pulses["t_ns"].max() < b.watermark_ns


def check_batches_against_frames(batches: list[Batch], frames: list) -> None:
    """Batch by batch against the frames the device delivered: a batch holds exactly the
    pulses sent in [previous watermark, its watermark) and the dead time of the frames that
    end in (previous watermark, its watermark]; a batch dropped in the readout holds none,
    counts them in ``dropped`` and declares its whole span a gap (Loss.OVERFLOW)."""
    assert all(f.delivered for f in frames)
    sent = delivered_pulses(frames)
    marks = np.array([f.watermark_ns for f in frames])
    dead = np.array([f.dead_ns for f in frames])
    for prev, batch in pairwise(batches):
        lo, hi = np.searchsorted(sent["t_ns"], [prev.watermark_ns, batch.watermark_ns])
        if batch.dropped:
            assert len(batch.pulses) == 0 and batch.dropped == hi - lo
            assert (batch.gap, batch.covered_from_ns) == (Loss.OVERFLOW, batch.watermark_ns)
            assert batch.dead_ns == 0
        else:
            assert batch.gap == Loss.NONE
            assert batch.pulses.tobytes() == sent[lo:hi].tobytes()
            inside = (marks > prev.watermark_ns) & (marks <= batch.watermark_ns)
            assert batch.dead_ns == dead[inside].sum()


def declared_gaps(batches: list[Batch], reason: Loss) -> int:
    """The time (ns) the batches declare lost for one reason: from the previous batch's
    watermark to the batch's covered_from_ns."""
    return sum(
        min(b.covered_from_ns, b.watermark_ns) - prev.watermark_ns
        for prev, b in pairwise(batches)
        if b.gap == reason
    )


def restart_gaps(frames: list, starts: list[int]) -> int:
    """The time a readout declares lost for its restarts: from the last watermark it had (the
    last frame delivered since the previous START, or that START) to each new START."""
    gaps = 0
    for before, start in pairwise(starts):
        marks = [f.watermark_ns for f in frames if f.delivered and f.start_ns == before]
        gaps += start - max([before, *marks])
    return gaps


def wait_for(bench: Bench, done, timeout_s: float = 20) -> None:
    """Collect batches until done() is true."""
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, bench.diagnose()
        bench.collect(0.05)


def test_run_at_100k_pulses_per_second(bench_factory):
    """begin -> BOR, data batches, heartbeats when quiet, end -> EOR; every pulse once, in order,
    with its frame's dead time (that of the pulses below THR too)."""
    config = busy_hpge(125_000)  # 111k triggers/s through the 1 us dead time, 90 % above THR
    thr = 10_000  # 100 keV
    bench = bench_factory(config, threshold_adc=thr)
    crate, device = bench.crate, bench.device
    ack = bench.transition("begin", run=7)
    assert ack["ok"], ack
    cpu_before = psutil.Process(bench.proc.pid).cpu_times()
    bench.collect(1.0)
    cpu = psutil.Process(bench.proc.pid).cpu_times()

    def below_thr() -> int:  # in the crate's loop: from t_generated on, every pulse is below
        config.sim.flat_cpd *= 20  # THR (the ADC still triggers: dead time, no pulses sent)
        config.sim.continuum_max_keV /= 20
        return crate.t_generated_ns

    t_quiet = crate.call(below_thr)

    wait_for(bench, lambda: bench.batches[-1][1].watermark_ns > t_quiet)
    quiet_from = len(bench.batches)
    bench.collect(0.6)
    ack = bench.transition("end", run=7)
    bench.collect_until(KIND_EOR)
    batches = [b for _, b in bench.batches]
    check_sequence(batches, 7)
    assert device.commands == [
        "*IDN?",
        f"CONF THR {thr}",
        "CONF FRAME_MS 20",
        "CONF RTRATE 0.0",
        "START",
        "STOP",
    ]
    assert device.settings == {"THR": thr, "FRAME_MS": 20, "RTRATE": 0.0}
    frames = sent_frames(crate, "hpge")
    assert batches[0].watermark_ns == device.starts[0] == frames[0].start_ns
    end = frames[-1]
    assert end.kind == FRAME_END and batches[-1].watermark_ns == end.watermark_ns
    pulses = received(batches)
    assert pulses.tobytes() == delivered_pulses(frames).tobytes()
    assert len(pulses) > 80_000
    check_batches_against_frames(batches, frames)
    assert sum(b.dead_ns for b in batches) == sum(f.dead_ns for f in frames)
    assert sum(b.lost_frames + b.dropped for b in batches) == 0
    assert ack["ok"] and ack["info"] == {
        "pulses": len(pulses),
        "lost_frames": 0,
        "dropped": 0,
        "crc_errors": 0,
        "skipped_bytes": 0,
    }
    quiet = bench.batches[quiet_from:-1]
    assert len(quiet) >= 4 and all(len(b.pulses) == 0 for _, b in quiet)
    assert sum(b.dead_ns for _, b in quiet) > 0
    gaps = np.diff([t for t, _ in quiet])
    assert gaps.max() < 0.1 + 0.15  # heartbeat_ms plus scheduling jitter
    cpu_s = (cpu.user + cpu.system) - (cpu_before.user + cpu_before.system)
    print(f"readout CPU at 100k pulses/s: {cpu_s:.0%} of one core")
    assert bench.transition("exit")["ok"]
    assert bench.proc.wait(10) == 0
    # the pulses are the ones the crate recorded above THR, the dead time that of the ADC
    t0, t1 = batches[0].watermark_ns, batches[-1].watermark_ns
    truth = sim_truth(crate, Stream.HPGE, t0 - ADC_DEAD_NS, t1)
    assert truth[(truth["t_ns"] >= t0) & (truth["adc"] >= thr)].tobytes() == pulses.tobytes()
    t = truth["t_ns"]
    adc_dead = np.minimum(t + ADC_DEAD_NS, t1) - np.maximum(t, t0)
    assert sum(b.dead_ns for b in batches) == adc_dead[adc_dead > 0].sum()


def drain_run(bench: Bench, run: int, stream: Stream = Stream.HPGE) -> tuple[dict, list[Batch]]:
    ack = bench.transition("end", timeout_s=40, run=run)
    bench.collect_until(KIND_EOR)
    batches = [b for _, b in bench.batches]
    check_sequence(batches, run, stream)
    return ack, batches


def test_backpressure_queues_without_loss(bench_factory):
    """Nobody pulls for a while: batches wait in the readout and all arrive later, in order."""
    bench = bench_factory(busy_hpge(50_000), send_hwm=1, batch_ms=10)
    assert bench.transition("begin", run=1)["ok"]
    time.sleep(1.0)  # the PULL side holds one message, the readout queues the rest
    ack, batches = drain_run(bench, 1)
    frames = sent_frames(bench.crate, "hpge")
    pulses = received(batches)
    assert pulses.tobytes() == delivered_pulses(frames).tobytes()
    assert len(pulses) > 40_000
    check_batches_against_frames(batches, frames)
    assert ack["info"]["dropped"] == 0 and ack["info"]["pulses"] == len(pulses)
    assert "the builder pushes back: queueing batches" in bench.log()


def test_backpressure_overflow_drops_are_counted_exactly(bench_factory):
    """A full readout buffer drops the newest pulses: counted, and their span is dead time."""
    bench = bench_factory(busy_hpge(50_000), batch_ms=10, buffer_pulses=1000)
    assert bench.transition("begin", run=2)["ok"]
    time.sleep(1.0)  # nobody pulls
    ack, batches = drain_run(bench, 2)
    frames = sent_frames(bench.crate, "hpge")
    sent = delivered_pulses(frames)
    got = received(batches)
    dropped = sum(b.dropped for b in batches)
    assert dropped > 1000 and ack["info"]["dropped"] == dropped  # far beyond the buffer
    assert len(got) + dropped == len(sent)
    check_batches_against_frames(batches, frames)
    assert declared_gaps(batches, Loss.OVERFLOW) > 0
    assert sum(b.dead_ns for b in batches if not b.dropped) < sum(f.dead_ns for f in frames)


def test_lost_line_reconnects_and_counts_the_gap(bench_factory):
    """The device server drops the line: the readout reconnects, restarts, counts the gap."""
    bench = bench_factory(busy_hpge(5_000), timeout_s=2.0, frame_ms=10)
    crate, device = bench.crate, bench.device
    assert bench.transition("begin", run=3)["ok"]
    bench.collect(0.3)
    crate.drop_line("hpge")
    wait_for(bench, lambda: len(device.starts) >= 2)
    bench.collect(0.3)
    ack, batches = drain_run(bench, 3)
    frames = sent_frames(crate, "hpge")
    assert received(batches).tobytes() == delivered_pulses(frames).tobytes()
    delivered_dead = sum(f.dead_ns for f in frames if f.delivered)
    gap = restart_gaps(frames, device.starts)
    assert sum(b.dead_ns for b in batches) == delivered_dead
    assert gap > 0 and declared_gaps(batches, Loss.RECONNECT) == gap
    assert ack["info"]["lost_frames"] == 0
    assert "lost" in bench.log() and "restarted" in bench.log()


def test_silent_device_is_restarted(bench_factory):
    """A device that stops sending for longer than timeout_s is reconnected and restarted."""
    bench = bench_factory(busy_hpge(1_000), timeout_s=0.5, frame_ms=10)
    crate, device = bench.crate, bench.device
    assert bench.transition("begin", run=4)["ok"]
    crate.hold_silent("hpge")
    wait_for(bench, lambda: len(device.starts) >= 2)
    crate.hold_silent("hpge", False)
    bench.collect(0.2)
    _, batches = drain_run(bench, 4)
    frames = sent_frames(crate, "hpge")
    assert received(batches).tobytes() == delivered_pulses(frames).tobytes()
    assert len(frames) > 5 and all(f.delivered for f in frames)
    gap = restart_gaps(frames, device.starts)
    assert sum(b.dead_ns for b in batches) == sum(f.dead_ns for f in frames)
    assert gap > 0 and declared_gaps(batches, Loss.RECONNECT) == gap
    assert "silent for" in bench.log()


def test_dead_device_exits_3_with_a_clear_message(bench_factory):
    bench = bench_factory(busy_hpge(1_000), timeout_s=1.0, frame_ms=10)
    assert bench.transition("begin", run=5)["ok"]
    bench.collect(0.2)
    bench.crate.close()  # every line closed for good
    assert bench.proc.wait(20) == 3
    stderr = bench.proc.stderr.read()
    url = bench.crate.urls["hpge"]
    assert f"device {url} unreachable" in stderr and "giving up" in stderr
    bench.collect(0.2)
    batches = [b for _, b in bench.batches]
    frames = bench.device.frames
    assert len(frames) > 5
    assert received(batches).tobytes() == delivered_pulses(frames).tobytes()


def test_sigterm_while_running_ends_the_run(bench_factory):
    bench = bench_factory(busy_hpge(2_000), frame_ms=10)
    assert bench.transition("begin", run=6)["ok"]
    bench.collect(0.3)
    os.kill(bench.proc.pid, signal.SIGTERM)
    bench.collect_until(KIND_EOR)
    assert bench.proc.wait(10) == 0
    batches = [b for _, b in bench.batches]
    check_sequence(batches, 6)
    frames = sent_frames(bench.crate, "hpge")
    assert received(batches).tobytes() == delivered_pulses(frames).tobytes()
    check_batches_against_frames(batches, frames)
    assert bench.device.commands[-1] == "STOP"


def crate_run(data_dir, crate_factory, config: Config, stream: str, seconds: float, **frontend):
    """One run of a readout on the simulated crate: (ack, batches, crate)."""
    for key, value in {"batch_ms": 20, "heartbeat_ms": 100, **frontend}.items():
        setattr(getattr(config.frontends, stream), key, value)
    crate = crate_factory(config)
    name = f"readout-{stream}"
    bench = Bench(data_dir, crate.urls[stream], config, name, "readout", "--stream", stream)
    try:
        assert bench.transition("begin", run=1)["ok"]
        bench.collect(seconds)
        ack, batches = drain_run(bench, 1, stream_by_name(stream))
        bench.log_text = bench.log()
    finally:
        bench.close()
    return ack, batches, crate, bench


def test_crate_hpge_with_stalls_arrives_complete(data_dir, crate_factory):
    """HPGe ADC of hardware_sim with random triggers and short stalls: nothing lost, RT as set,
    ADC dead time passed on."""
    config = Config()
    config.sim.faults.hpge.stall_every_s, config.sim.faults.hpge.stall_s = 0.5, 0.2
    ack, batches, crate, _ = crate_run(data_dir, crate_factory, config, "hpge", 1.5, rt_rate_hz=400)
    t0, t1 = batches[0].watermark_ns, batches[-1].watermark_ns
    truth = sim_truth(crate, Stream.HPGE, t0, t1)
    got = received(batches)
    assert sorted(got.tolist()) == sorted(truth.tolist())
    n_rt = int(np.count_nonzero(got["flags"] & FLAG_RT))
    expected = 400 * (t1 - t0) / 1e9
    assert abs(n_rt - expected) < 5 * np.sqrt(expected)
    dead = sum(b.dead_ns for b in batches)
    adc_dead = config.sim.adc_dead_time_ns
    assert abs(dead - len(got) * adc_dead) <= adc_dead
    assert sim_faults(crate, "hpge")["stalls"] >= 2
    assert ack["info"]["pulses"] == len(got) and ack["info"]["lost_frames"] == 0


def test_crate_line_faults_are_counted(data_dir, crate_factory):
    """Noise, dropped bytes and flipped bits on the AC line: every damaged frame is counted in
    the batches' lost_frames; every pulse that arrives is one the crate recorded."""
    config = Config()
    config.sim.acv_singles_hz = 20_000
    faults = config.sim.faults.acv
    # about 36 damaged frames in the run: at least 3 is certain (P(<3) ~ 1e-13)
    faults.noise_bytes_per_s, faults.dropped_bytes_per_s, faults.corrupt_frames_per_s = 100, 12, 12
    ack, batches, crate, _ = crate_run(data_dir, crate_factory, config, "acv", 1.5)
    injected = sim_faults(crate, "acv")
    truth = sim_truth(crate, Stream.ACV, batches[0].watermark_ns, batches[-1].watermark_ns)
    got = received(batches)
    assert injected["damaged_frames"] >= 3
    assert sum(b.lost_frames for b in batches) == injected["damaged_frames"]
    assert ack["info"]["lost_frames"] == injected["damaged_frames"]
    assert ack["info"]["skipped_bytes"] >= injected["noise_bytes"]
    assert 1 <= missing_runs(got, truth) <= injected["damaged_frames"]


def test_crate_disconnects_are_dead_time(data_dir, crate_factory):
    """The CRV line drops every 0.4 s of running: the readout reconnects and restarts each
    time, and the pulses it missed match the time it declared lost."""
    config = Config()
    rate = config.sim.crv_singles_hz = 20_000
    config.sim.faults.crv.disconnect_after_s = 0.4
    ack, batches, crate, bench = crate_run(data_dir, crate_factory, config, "crv", 2.0)
    truth = sim_truth(crate, Stream.CRV, batches[0].watermark_ns, batches[-1].watermark_ns)
    got = received(batches)
    assert sim_faults(crate, "crv")["disconnects"] >= 2
    assert bench.log_text.count("restarted") >= 2
    assert set(got.tolist()) <= set(truth.tolist())
    dead_s = declared_gaps(batches, Loss.RECONNECT) / 1e9
    missed = len(truth) - len(got)
    assert missed > 0 and abs(missed - rate * dead_s) < 5 * np.sqrt(rate * dead_s) + 5
