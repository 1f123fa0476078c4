"""A test bench for nudaq processes: a fake run control and a fake builder around one process,
and the simulated hardware (hardware_sim) they talk to, in this process or in its own."""

from __future__ import annotations

import json
import select
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import zmq

from daq.core.config import Config
from daq.core.records import PULSE_DTYPE
from daq.formats.protocol import FRAME_DATA
from daq.formats.wire import Batch, decode


@pytest.fixture
def data_dir():
    """A short data directory (ipc socket paths must stay under ~100 characters)."""
    path = Path(tempfile.mkdtemp(prefix="nq", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


class Bench:
    """A nudaq process wired to a fake run control (ROUTER) and a fake builder (PULL).

    ``python -m daq.processes <service> --url <url> --config <config> --data-dir <data_dir>
    *args``.
    """

    def __init__(self, data_dir: Path, url: str, config: Config, name: str, service: str, *args):
        self.config = config
        self.name = name
        self.data_dir = data_dir
        (data_dir / "sockets").mkdir(exist_ok=True)
        self.ctx = zmq.Context()
        self.router = self.ctx.socket(zmq.ROUTER)
        self.router.bind(config.endpoint("transitions", data_dir))
        self.pull = self.ctx.socket(zmq.PULL)
        self.pull.setsockopt(zmq.RCVHWM, 1)
        self.pull.bind(config.endpoint("builder_data", data_dir))
        config_file = data_dir / "config.json"
        config_file.write_text(config.snapshot())
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "daq.processes", service, "--url", url]
            + ["--config", str(config_file)]
            + ["--data-dir", str(data_dir), *args],
            stderr=subprocess.PIPE,
            text=True,
        )
        self.batches: list[tuple[float, Batch]] = []
        self._id = 0
        hello = self.recv_control(20)
        assert hello["type"] == "hello" and hello["name"] == self.name

    def recv_control(self, timeout_s: float) -> dict:
        assert self.router.poll(int(timeout_s * 1000)), f"no message from {self.name}"
        identity, payload = self.router.recv_multipart()
        assert identity.decode() == self.name
        return json.loads(payload)

    def transition(self, kind: str, timeout_s: float = 20, **fields) -> dict:
        """Send a transition; collect batches while waiting for the acknowledgement."""
        self._id += 1
        message = {"type": kind, "id": self._id, **fields}
        self.router.send_multipart([self.name.encode(), json.dumps(message).encode()])
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.collect(0.05)
            if self.router.poll(0):
                ack = self.recv_control(0)
                assert ack["type"] == "ack" and ack["id"] == self._id, ack
                return ack
        raise AssertionError(f"no acknowledgement of {kind}; {self.diagnose()}")

    def collect(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            if not self.pull.poll(max(0, int(left * 1000))):
                return
            self.batches.append((time.monotonic(), decode(self.pull.recv_multipart())))

    def collect_until(self, kind: int, timeout_s: float = 20) -> None:
        deadline = time.monotonic() + timeout_s
        while not self.batches or self.batches[-1][1].kind != kind:
            assert time.monotonic() < deadline, f"no batch of kind {kind}; {self.diagnose()}"
            self.collect(0.05)

    def diagnose(self) -> str:
        """What the process said: its exit status, stderr when it ended, its log."""
        code = self.proc.poll()
        stderr = self.proc.stderr.read() if code is not None else ""
        return f"exit status {code}\nstderr:\n{stderr}\nlog:\n{self.log()}"

    def log(self) -> str:
        return (self.data_dir / "logs" / f"{self.name}.log").read_text()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self.proc.stderr.close()
        self.ctx.destroy(0)


class SimProcess:
    """The simulated crate (service ``sim``) in its own process: the device URLs and, after
    close, the ground truth it wrote to ``sim_dir``."""

    def __init__(self, config: Config, data_dir: Path) -> None:
        config_file = data_dir / "sim-config.json"
        config_file.write_text(config.snapshot())
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "daq.processes", "sim", "--config", str(config_file)]
            + ["--data-dir", str(data_dir)],
            stdout=subprocess.PIPE,
            text=True,
        )
        ready, _, _ = select.select([self.proc.stdout], [], [], 30)
        assert ready, "the simulated crate printed no URLs within 30 s"
        self.urls = json.loads(self.proc.stdout.readline())
        self.sim_dir = data_dir / "sim"

    def close(self) -> None:
        """SIGTERM: the simulator flushes its ground truth and exits."""
        if self.proc.poll() is None:
            self.proc.terminate()
        assert self.proc.wait(20) == 0
        self.proc.stdout.close()


@pytest.fixture
def crate_factory(tmp_path):
    """Start the simulated hardware for a configuration; stopped after the test."""
    crates = []

    def make(config: Config) -> SimProcess:
        crates.append(SimProcess(config, tmp_path))
        return crates[-1]

    yield make
    for crate in crates:
        crate.close()


@pytest.fixture
def sim_crate(tmp_path):
    """Start the simulated hardware in this process (hardware_sim.crate.SimCrate serving its
    lines in a thread) with its in-memory ground truth (``record``); stopped after the test.

    Act on it while it runs through ``crate.call``, ``crate.hold_silent``, ``crate.drop_line``.
    """
    from hardware_sim.crate import SimCrate

    crates = []

    def make(config: Config):
        crates.append(SimCrate(config, tmp_path / f"crate{len(crates)}", record=True).start())
        return crates[-1]

    yield make
    for crate in crates:
        crate.close()


def sent_frames(crate, name: str) -> list:
    """Every frame the in-process crate's device ``name`` sent so far (hardware_sim.devices
    .SentFrame: as encoded, and whether it was delivered, damaged or lost)."""
    return crate.call(lambda: list(crate.device(name).frames))


def delivered_pulses(frames: list) -> np.ndarray:
    """The pulses of the DATA frames that reached the host intact, in order."""
    parts = [f.pulses for f in frames if f.kind == FRAME_DATA and f.delivered]
    return np.concatenate(parts) if parts else np.zeros(0, PULSE_DTYPE)


def sim_truth(crate, stream: int, t_from: int, t_to: int) -> np.ndarray:
    """The pulses the simulated front-end recorded in [t_from, t_to) (stops the simulator:
    a SimProcess or an in-process crate)."""
    from hardware_sim.generator import to_pulses
    from hardware_sim.truth import TRUTH_FILE, read_truth

    crate.close()
    rows = read_truth(crate.sim_dir / TRUTH_FILE)
    keep = (rows["stream"] == stream) & rows["recorded"]
    keep &= (rows["t_ns"] >= t_from) & (rows["t_ns"] < t_to)
    return to_pulses(rows[keep])


def sim_faults(crate, device: str) -> dict[str, int]:
    """What the simulator injected on a device's line (stops the simulator)."""
    from hardware_sim.truth import FAULTS_FILE, read_fault_counts

    crate.close()
    return read_fault_counts(crate.sim_dir / FAULTS_FILE)[device]


def missing_runs(got: np.ndarray, truth: np.ndarray) -> int:
    """Number of contiguous stretches of ``truth`` (in time order) that ``got`` lacks.

    Every pulse of ``got`` must be in ``truth``. A frame lost on the line removes one
    contiguous stretch, so a reader that loses nothing else shows at most one stretch per
    lost frame.
    """
    received = set(got.tolist())
    assert received <= set(truth.tolist()), "pulses that the simulator never recorded"
    lacking = np.array([row not in received for row in truth.tolist()], dtype=np.int8)
    return int(np.count_nonzero(np.diff(np.r_[0, lacking]) == 1))
