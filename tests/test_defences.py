"""The builder's defences through real processes (nudaq up --sim): a flood of junk messages,
a message far over the size limit and a forged future message, each during a run of the real
readouts."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import psutil
import pytest
import zmq
from sqlalchemy import select

from daq.core.config import Config
from daq.core.records import DATA_STREAM_NAMES as READOUTS
from daq.core.records import PULSE_DTYPE, Stream
from daq.formats.rawfile import RawReader
from daq.formats.wire import (
    HEADER,
    KIND_DATA,
    REFUSALS,
    REFUSED_AHEAD_OF_CLOCK,
    Batch,
    send_batch,
)
from daq.processes.builder import max_message_bytes
from daq.store.models import Run, StreamStat
from daq.store.session import make_engine
from tests.processes import NUDAQ, start_up, stop_up

pytestmark = pytest.mark.slow

JUNK_MESSAGES = 100_000
OVERSIZED_PULSES = 32 * 1024 * 1024  # 512 MB of pulse records
RSS_MARGIN_BYTES = 64 * 1024 * 1024
LOG_GROWTH_LIMIT_BYTES = 4096


@dataclass
class System:
    """A running ``nudaq up --sim``: its data directory, the builder process, its snapshots."""

    data_dir: Path
    up: subprocess.Popen
    builder: psutil.Process
    monitor: zmq.Socket
    stderr: list[str] = field(default_factory=list)
    last: dict = field(default_factory=dict)

    @property
    def builder_log(self) -> Path:
        return self.data_dir / "logs" / "builder.log"

    def snapshot(self, predicate: Callable[[dict], object], timeout_s: float, what: str) -> dict:
        """The first builder monitor snapshot published from now on that satisfies predicate
        (those queued in the subscriber since the last call are stale)."""
        now = time.time()
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            if self.monitor.poll(int(1000 * left), zmq.POLLIN):
                self.last = json.loads(self.monitor.recv())
                if self.last["time"] >= now and predicate(self.last):
                    return self.last
        raise AssertionError(
            f"timed out waiting for {what}; last snapshot {self.last}\n{self.console_tail()}"
        )

    def console_tail(self, lines: int = 20) -> str:
        """The last lines the system wrote to its console (warnings and errors)."""
        return "".join(self.stderr[-lines:])

    def running_run(self) -> dict:
        """A snapshot of an open run with pulses of every readout (starting one if idle)."""
        idle = self.snapshot(lambda s: s["state"] in ("idle", "running"), 30, "a snapshot")
        if idle["state"] == "idle":
            out = nudaq("run", "start", "--data-dir", str(self.data_dir))
            assert out.returncode == 0, out.stderr
        return self.snapshot(
            lambda s: s["state"] == "running" and all(s["pulses"].get(n) for n in READOUTS),
            60,
            "a running run with pulses of every readout",
        )

    def stop_run(self) -> dict:
        out = nudaq("run", "stop", "--json", "--data-dir", str(self.data_dir))
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)["summary"]

    def pulses(self) -> dict[str, int]:
        return self.snapshot(lambda s: s["state"] == "running", 10, "a snapshot")["pulses"]


def nudaq(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*NUDAQ, *args], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def system() -> Iterator[System]:
    """``nudaq up --sim`` at 5x speed (one per module: each test takes a run of its own),
    its stderr read all along so that no child ever blocks on a full pipe."""
    data_dir = Path(tempfile.mkdtemp(prefix="nqd", dir="/tmp"))  # ipc paths stay short
    up = start_up(data_dir, "--speed", "5", stdout=subprocess.DEVNULL)
    ctx = zmq.Context()
    monitor = ctx.socket(zmq.SUB)
    monitor.setsockopt(zmq.SUBSCRIBE, b"")
    monitor.setsockopt(zmq.LINGER, 0)
    monitor.connect(Config().endpoint("monitor", data_dir))
    stderr: list[str] = []
    reader = threading.Thread(target=lambda: stderr.extend(up.stderr), daemon=True)
    reader.start()
    try:
        builder = wait_for_builder(up)
        running = System(data_dir, up, builder, monitor, stderr)
        running.snapshot(  # the run that nudaq up begins by itself
            lambda s: s["state"] == "running" and all(s["pulses"].get(n) for n in READOUTS),
            90,
            "the first run with pulses of every readout",
        )
        yield running
    finally:
        stop_up(up)
        reader.join(10)
        monitor.close()
        ctx.term()
        shutil.rmtree(data_dir, ignore_errors=True)


def wait_for_builder(up: subprocess.Popen, timeout_s: float = 60) -> psutil.Process:
    """The builder among the processes of ``nudaq up``, once it is started."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert up.poll() is None, "nudaq up ended before the builder started"
        for child in psutil.Process(up.pid).children(recursive=True):
            try:
                if "builder" in child.cmdline():
                    return child
            except psutil.NoSuchProcess:
                pass
        time.sleep(0.2)
    raise AssertionError("no builder process")


def junk(i: int) -> list[bytes]:
    """Undecodable messages of several kinds: one part, a short header, a bad magic."""
    return [[b"x"], [b"short", b"junk"], [b"\xff" * HEADER.size, b""]][i % 3]


def rejected_in_log(text: str) -> int:
    """Rejections the builder's log tells of: full lines plus the counts of summary lines."""
    full = text.count("rejected an undecodable message")
    more = sum(map(int, re.findall(r"(\d+) more rejected undecodable messages", text)))
    return full + more


def sql_rejected(data_dir: Path, run: int) -> int | None:
    engine = make_engine(f"sqlite:///{data_dir / 'nudaq.sqlite'}")
    try:
        with engine.connect() as conn:
            return conn.scalar(
                select(StreamStat.rejected_messages)
                .join(Run, Run.id == StreamStat.run_id)
                .where(Run.number == run, StreamStat.stream == "undecodable")
            )
    finally:
        engine.dispose()


def test_a_junk_flood_is_counted_in_a_few_log_lines_and_building_goes_on(system):
    start = system.running_run()
    run = start["run"]
    log_before = system.builder_log.stat().st_size
    ctx = zmq.Context.instance()
    push = ctx.socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 5000)
    push.connect(Config().endpoint("builder_data", system.data_dir))
    t0 = time.monotonic()
    for i in range(JUNK_MESSAGES):
        push.send_multipart(junk(i))
    counted = system.snapshot(
        lambda s: s.get("rejected_messages", 0) >= JUNK_MESSAGES, 30, "every junk rejected"
    )
    flood_s = time.monotonic() - t0
    push.close()  # only now: libzmq drops what a closed sender still had queued
    assert counted["rejected_messages"] == JUNK_MESSAGES

    after = counted["pulses"]
    later = system.snapshot(
        lambda s: all(s["pulses"].get(n, 0) > after[n] for n in READOUTS),
        30,
        "pulses of every readout built after the flood",
    )
    log_growth = system.builder_log.stat().st_size - log_before
    summary = system.stop_run()
    closed_growth = system.builder_log.stat().st_size - log_before
    print(
        f"junk flood: {JUNK_MESSAGES} messages in {flood_s:.1f} s; builder.log"
        f" +{log_growth} B by the end of the flood, +{closed_growth} B with the run's close"
    )

    assert log_growth < LOG_GROWTH_LIMIT_BYTES
    assert summary["run"] == run and summary["rejected_messages"] == JUNK_MESSAGES
    assert not summary["eor_timeout"]
    for name in READOUTS:
        assert summary["pulses"][name] >= later["pulses"][name] > after[name]
    assert sql_rejected(system.data_dir, run) == JUNK_MESSAGES
    log_text = system.builder_log.read_bytes()[log_before:].decode()
    assert rejected_in_log(log_text) == JUNK_MESSAGES  # the close wrote the untold rest
    assert sum("undecodable" in line for line in system.stderr) < 10
    assert system.builder.is_running(), system.console_tail()


def test_a_512_MB_message_is_refused_unallocated_and_the_run_ends_normally(system):
    start = system.running_run()
    run = start["run"]
    limit = max_message_bytes(Config().builder.max_batch_pulses)
    assert OVERSIZED_PULSES * PULSE_DTYPE.itemsize > 100 * limit
    rss_before = system.builder.memory_info().rss
    log_before = system.builder_log.stat().st_size
    rejected_before = start["rejected_messages"]

    # A well-formed message of the HPGe stream of this run: a header that says 32 M records
    # and their 512 MB (untouched zero pages: the sender does not hold them either).
    pulses = np.zeros(OVERSIZED_PULSES, PULSE_DTYPE)
    ctx = zmq.Context.instance()
    push = ctx.socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 0)
    push.connect(Config().endpoint("builder_data", system.data_dir))
    sender_events = push.get_monitor_socket(zmq.EVENT_DISCONNECTED)
    batch = Batch(
        kind=KIND_DATA, stream=int(Stream.HPGE), run=run, seq=1, watermark_ns=0, pulses=pulses
    )
    send_batch(push, batch)
    disconnected = sender_events.poll(20_000, zmq.POLLIN)

    rss_peak = rss_before
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline and system.builder.is_running():
        try:
            rss_peak = max(rss_peak, system.builder.memory_info().rss)
        except psutil.NoSuchProcess:
            break
        time.sleep(0.05)
    push.disable_monitor()
    sender_events.close(0)
    push.close(0)
    del batch, pulses
    print(
        f"512 MB message: builder RSS {rss_before / 2**20:.1f} MB before,"
        f" {rss_peak / 2**20:.1f} MB at most after (limit {limit} B per part)"
    )

    assert system.builder.is_running(), system.console_tail()
    assert disconnected, "the builder did not drop the sender of the oversized message"
    assert rss_peak < rss_before + RSS_MARGIN_BYTES
    after = system.pulses()
    later = system.snapshot(
        lambda s: all(s["pulses"].get(n, 0) > after[n] for n in READOUTS),
        30,
        "pulses of every readout built after the oversized message",
    )
    log_text = system.builder_log.read_bytes()[log_before:].decode()
    assert "a data sender was disconnected" in log_text and f"{limit}-byte limit" in log_text

    summary = system.stop_run()
    assert summary["run"] == run and not summary["eor_timeout"]
    assert summary["rejected_messages"] == rejected_before  # never received, so never decoded
    for name in READOUTS:
        assert summary["pulses"][name] >= later["pulses"][name] > after[name]
    assert system.builder.is_running(), system.console_tail()


FORGED_AHEAD = 100
"""How far ahead of the AC stream the forged message's seq is (batches; within the pending
window, so the builder holds it until its turn)."""


def last_seq(raw_file: Path, stream: Stream) -> int:
    """The highest seq of a stream in a raw pulses file still being written."""
    reader = RawReader(raw_file)
    return max(b.seq for b in reader.iter_batches() if b.stream == stream)


def test_a_forged_future_message_leaves_the_veto_working(system):
    """An AC message with seq +100 and a watermark one hour of DAQ time ahead (well inside
    builder.max_lead_s; 2^61 ns is refused the same way) takes one batch's slot as blind time
    when its turn comes, and the AC veto goes on tagging (it used to reject every genuine
    batch after it as behind, and the candidates grew fourfold). The live builder refuses it
    as ahead of the DAQ clock and records the refusal with the batch in the raw file."""
    start = system.running_run()
    run = start["run"]
    raw_file = system.data_dir / "raw" / f"run{run:06d}.pulses.arrow"
    system.snapshot(lambda s: s["events"]["ac"] > 0, 30, "AC-tagged events")
    seq = last_seq(raw_file, Stream.ACV) + FORGED_AHEAD
    before = system.snapshot(lambda s: True, 10, "a snapshot")
    watermark = before["horizon_ns"] + 3600 * 10**9
    push = zmq.Context.instance().socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 2000)
    push.connect(Config().endpoint("builder_data", system.data_dir))
    send_batch(
        push, Batch(KIND_DATA, int(Stream.ACV), run, seq, watermark, np.zeros(0, PULSE_DTYPE))
    )
    push.close()
    # the genuine AC stream reaches the forged seq (20 batches per wall second); from then on
    # the old builder took no AC batch: no AC pulse was built and no event AC-tagged again
    due = system.snapshot(
        lambda s: last_seq(raw_file, Stream.ACV) > seq + 5, 90, "the AC stream past the forgery"
    )
    later = system.snapshot(
        lambda s: (
            s["pulses"]["acv"] > due["pulses"]["acv"] and s["events"]["ac"] > due["events"]["ac"]
        ),
        60,
        "AC pulses built and events AC-tagged after the forged seq",
    )
    summary = system.stop_run()
    print(
        f"forged future AC message (1 h ahead): AC-tagged events {before['events']['ac']}"
        f" when sent, {due['events']['ac']} when due, {summary['events']['ac']} at the end"
    )
    assert summary["run"] == run
    reason = f"acv: refused by the live builder: {REFUSALS[REFUSED_AHEAD_OF_CLOCK]}"
    assert summary["rejections"].get(reason) == 1, summary["rejections"]
    assert 0 < summary["gaps_s"]["acv"]["rejected"] < 1.0  # one batch's slot, a fraction of 1 s
    assert summary["pulses"]["acv"] >= later["pulses"]["acv"] > due["pulses"]["acv"]
    flagged = [b for b in RawReader(raw_file).iter_batches() if b.refusal]
    assert [(b.stream, b.seq, b.kind, b.watermark_ns) for b in flagged] == [
        (Stream.ACV, seq, KIND_DATA | REFUSED_AHEAD_OF_CLOCK, watermark)
    ]
    assert system.builder.is_running(), system.console_tail()
