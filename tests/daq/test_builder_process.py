"""The builder as a real OS process, driven through its real sockets by a fake run control."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import zmq

from daq.core.config import Config
from daq.core.records import FLAG_REACTOR_ON, FLAG_RT, PULSE_DTYPE, Stream
from daq.formats.wire import (
    HEADER,
    KIND_BOR,
    KIND_DATA,
    KIND_EOR,
    MAGIC,
    VERSION,
    Batch,
    send_batch,
)

RUN = 1
T_STOP = 1_000_000
DEAD_NS = 1_000
# HPGe pulses (adc 1000 = 10 keV) and the veto pulses around them (windows: AC +-1000 ns,
# CRV [t - 5000, t + 1000] ns, AC threshold 50):
GE_T = [100_000, 200_000, 300_000, 400_000, 500_000, 600_000, 800_000, 900_000]
GE_RT = [400_000, 500_000]
AC_T = [100_500, 299_000, 500_900, 598_999, 900_000]  # tags 100k, 300k, RT 500k; 599k misses
AC_ADC = [80, 80, 80, 80, 10]  # the pulse at 900k is below threshold
CRV_T = [196_000, 300_900, 894_999]  # tags 200k, 300k; 895k misses 900k by 1 ns
REACTOR_OFF_AT = 700_000
EXPECTED_EVENTS = {"all": 6, "ac": 2, "crv": 2, "candidate": 3, "rt": 2, "uncovered": 0}


def pulses(t, adc=1000, flags=0) -> np.ndarray:
    p = np.zeros(len(t), PULSE_DTYPE)
    p["t_ns"], p["adc"], p["flags"] = t, adc, flags
    return p


def stream_batches(stream: Stream, data: np.ndarray, edges: list[int], **extra) -> list[Batch]:
    """BOR at 0, a DATA batch per interval (the first carries the ``extra`` header counts),
    EOR."""
    empty = pulses([])
    out = [Batch(KIND_BOR, int(stream), RUN, 0, 0, empty)]
    bounds = [0, *edges, T_STOP]
    for seq, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:], strict=True), start=1):
        sel = data[(data["t_ns"] >= lo) & (data["t_ns"] < hi)]
        out.append(Batch(KIND_DATA, int(stream), RUN, seq, hi, sel, **(extra if seq == 1 else {})))
    out.append(Batch(KIND_EOR, int(stream), RUN, len(bounds), T_STOP, empty))
    return out


def run_batches() -> dict[Stream, list[Batch]]:
    ge = pulses(GE_T, flags=np.where(np.isin(GE_T, GE_RT), FLAG_RT, 0))
    hpge = stream_batches(Stream.HPGE, ge, [250_000, 650_000], dead_ns=DEAD_NS)
    hpge[1], hpge[2] = hpge[2], hpge[1]  # out of order on the wire: the builder reorders
    return {
        Stream.HPGE: hpge,
        Stream.ACV: stream_batches(Stream.ACV, pulses(AC_T, AC_ADC), [300_000], dropped=2),
        Stream.CRV: stream_batches(Stream.CRV, pulses(CRV_T), [500_000], lost_frames=1),
        Stream.REACTOR: stream_batches(
            Stream.REACTOR,
            pulses([0, REACTOR_OFF_AT], adc=[2_900_000, 0], flags=[FLAG_REACTOR_ON, 0]),
            [],
        ),
    }


def malformed_messages() -> list[list[bytes]]:
    def header(stream: int, n: int) -> bytes:
        return HEADER.pack(MAGIC, VERSION, KIND_DATA, stream, 0, 0, RUN, n, 99, 0, 0, 0, 0, 0)

    three = pulses([1, 2, 3]).tobytes()
    return [
        [header(int(Stream.HPGE), 5), three],  # header says 5 records, payload has 3
        [header(9, 3), three],  # unknown stream
        [b"x"],  # one part only
    ]


class FakeRunControl:
    """The run-control end of the transition channel (a ROUTER), as run control binds it."""

    def __init__(self, ctx: zmq.Context, endpoint: str) -> None:
        self.router = ctx.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.LINGER, 0)
        self.router.bind(endpoint)
        self.next_id = 1

    def receive(self, timeout_s: float) -> dict:
        if not self.router.poll(int(timeout_s * 1000), zmq.POLLIN):
            raise AssertionError(f"nothing from the builder within {timeout_s} s")
        identity, payload = self.router.recv_multipart()
        assert identity == b"builder"
        return json.loads(payload)

    def transition(self, kind: str, timeout_s: float = 20.0, **fields) -> dict:
        message = {"type": kind, "id": self.next_id, **fields}
        self.next_id += 1
        self.router.send_multipart([b"builder", json.dumps(message).encode()])
        ack = self.receive(timeout_s)
        assert ack["type"] == "ack" and ack["id"] == message["id"], ack
        return ack


@pytest.fixture
def system():
    """A data dir (short: ipc paths), an SQLite database with run 1, run control, the builder."""
    from daq.store.runs import create_run
    from daq.store.session import make_engine, session_scope, upgrade_database

    data_dir = Path(tempfile.mkdtemp(prefix="nqb", dir="/tmp"))
    config = Config()
    config.builder.ac_threshold_adc = 50
    config.builder.commit_interval_s = 0.2
    config.builder.drain_timeout_s = 2.0  # a run cut short by SIGTERM waits this for its EORs
    config_path = data_dir / "config.json"
    config_path.write_text(config.snapshot())
    db_url = f"sqlite:///{data_dir / 'nudaq.sqlite'}"
    engine = make_engine(db_url)
    upgrade_database(engine)
    with session_scope(engine) as session:
        create_run(session, RUN, config)
    (data_dir / "sockets").mkdir()
    ctx = zmq.Context()
    rc = FakeRunControl(ctx, config.endpoint("transitions", data_dir))
    proc = subprocess.Popen(
        [sys.executable, "-m", "daq.processes", "builder", "--config", str(config_path)]
        + ["--data-dir", str(data_dir), "--db", db_url],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        hello = rc.receive(30)
        assert hello["type"] == "hello" and hello["pid"] == proc.pid
        yield config, data_dir, engine, ctx, rc, proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        proc.stderr.close()
        ctx.destroy(linger=0)
        engine.dispose()
        shutil.rmtree(data_dir, ignore_errors=True)


def push_socket(ctx: zmq.Context, config: Config, data_dir: Path) -> zmq.Socket:
    sock = ctx.socket(zmq.PUSH)
    sock.setsockopt(zmq.LINGER, 5000)
    sock.connect(config.endpoint("builder_data", data_dir))
    return sock


def wait_snapshot(monitor: zmq.Socket, predicate, timeout_s: float = 5.0) -> dict:
    """The first monitoring snapshot that satisfies predicate."""
    deadline = time.monotonic() + timeout_s
    while monitor.poll(max(0, int(1000 * (deadline - time.monotonic()))), zmq.POLLIN):
        snapshot = json.loads(monitor.recv())
        if predicate(snapshot):
            return snapshot
    raise AssertionError("no matching monitoring snapshot")


def raw_file_of(engine, run: int) -> str | None:
    """The raw file SQL links to the run (stored with its close)."""
    from sqlalchemy import select

    from daq.store.models import Run

    with engine.connect() as conn:
        return conn.scalar(select(Run.raw_file).where(Run.number == run))


def test_a_synthetic_run_through_the_builder_process(system):
    config, data_dir, engine, ctx, rc, proc = system
    monitor = ctx.socket(zmq.SUB)
    monitor.setsockopt(zmq.SUBSCRIBE, b"")
    monitor.connect(config.endpoint("monitor", data_dir))
    batches = run_batches()
    pushes = {s: push_socket(ctx, config, data_dir) for s in batches}
    # sent before the begin-of-run: must wait in ZeroMQ, not be lost
    send_batch(pushes[Stream.REACTOR], batches[Stream.REACTOR][0])
    ack = rc.transition("begin", run=RUN)
    assert ack["ok"], ack
    assert wait_snapshot(monitor, lambda s: s["run"] == RUN and s["state"] == "running")
    for part in range(2):  # first half of every stream, the malformed messages, the rest
        for stream, stream_batches_ in batches.items():
            start = 1 if stream == Stream.REACTOR and part == 0 else 0
            half = len(stream_batches_) // 2
            for batch in stream_batches_[start:half] if part == 0 else stream_batches_[half:]:
                send_batch(pushes[stream], batch)
        if part == 0:
            for message in malformed_messages():
                pushes[Stream.HPGE].send_multipart(message)
    ack = rc.transition("end", run=RUN)
    assert ack["ok"], ack
    summary = ack["info"]
    assert summary["run"] == RUN and summary["reactor"] == "on"
    assert summary["events"] == EXPECTED_EVENTS
    assert summary["pulses"] == {"hpge": len(GE_T), "acv": len(AC_T), "crv": len(CRV_T)}
    assert summary["lost"] == {"hpge": 0, "acv": 2, "crv": 1}
    assert summary["rejected_messages"] == len(malformed_messages())
    # the run's edges are blind (the CRV window reaches 5 us before every veto's start, the AC
    # and CRV windows 1 us past their stop); the HPGe dead time is a fraction of the covered
    # time of its state: 1 us in the 650 us of the two batches ending while the reactor is on
    covered_on, covered_off = REACTOR_OFF_AT - 5_000, T_STOP - REACTOR_OFF_AT - 1_000
    live_on = covered_on - covered_on * DEAD_NS // 650_000
    assert summary["live_time_s_by_reactor"] == {"on": live_on / 1e9, "off": covered_off / 1e9}
    assert summary["exposure_uncovered_s"] == pytest.approx(6e-6)
    assert not summary["eor_timeout"]
    assert Path(summary["raw_file"]).exists()

    # what storage holds: spectra, exposure, the raw file with every decoded message
    from sqlalchemy import func, select

    from daq.formats.rawfile import RawReader
    from daq.store.models import Exposure, Run, SpectrumBin, StreamStat

    stored_at = time.monotonic() + 10  # the close is a queued write of the builder
    while not raw_file_of(engine, RUN):
        assert time.monotonic() < stored_at, "the close of the run was not stored within 10 s"
        time.sleep(0.05)
    with engine.connect() as conn:
        counts = dict(
            conn.execute(
                select(SpectrumBin.category, func.sum(SpectrumBin.counts)).group_by(
                    SpectrumBin.category
                )
            ).all()
        )
        elapsed = dict(conn.execute(select(Exposure.reactor, Exposure.elapsed_ns)).all())
        rejected = conn.scalar(select(func.sum(StreamStat.rejected_messages)))
        raw_file = conn.scalar(select(Run.raw_file).where(Run.number == RUN))
    assert counts | {"uncovered": 0} == EXPECTED_EVENTS  # no bins of an empty spectrum
    assert elapsed == {"on": REACTOR_OFF_AT, "off": T_STOP - REACTOR_OFF_AT}
    assert rejected == len(malformed_messages())
    assert raw_file == summary["raw_file"]
    recorded = list(RawReader(raw_file).iter_batches())
    assert len(recorded) == sum(len(b) for b in batches.values())

    idle = wait_snapshot(monitor, lambda s: s["state"] == "idle")
    assert idle["last"]["events"] == EXPECTED_EVENTS

    assert rc.transition("exit")["ok"]
    assert proc.wait(10) == 0


def test_sigterm_closes_the_open_run_and_exits_cleanly(system):
    config, data_dir, engine, ctx, rc, proc = system
    assert rc.transition("begin", run=RUN)["ok"]
    push = push_socket(ctx, config, data_dir)
    for batch in run_batches()[Stream.HPGE][:2]:  # no EOR anywhere: the run is cut short
        send_batch(push, batch)
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0, proc.stderr.read()
    from sqlalchemy import select

    from daq.store.models import Run

    with engine.connect() as conn:
        raw_file = conn.scalar(select(Run.raw_file).where(Run.number == RUN))
    assert raw_file and Path(raw_file).stat().st_size > 0
