"""The whole system through real processes: nudaq up --sim, spectra, failures."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import zmq

from daq.core.config import Config
from tests.processes import NUDAQ, start_up

pytestmark = pytest.mark.slow


@pytest.fixture
def data_dir():
    """A short data directory (ipc socket paths must stay under ~100 characters)."""
    path = Path(tempfile.mkdtemp(prefix="nq", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def nudaq(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*NUDAQ, *args], capture_output=True, text=True, timeout=timeout)


def write_config(data_dir: Path, config: Config) -> Path:
    path = data_dir / "test-config.json"
    path.write_text(config.snapshot())
    return path


def test_one_run_summary_and_spectra(data_dir):
    """The acceptance run: summary with pulses on all streams, RT as configured, nothing lost.

    The random-trigger rate is raised from its default (0.1 Hz, with physics HPGe pulses about
    5 in 30 s: none at all in 1% of runs) so that HPGe pulses are certain and the RT count is a
    real test of the configured rate."""
    speed = 20.0
    config = Config()
    config.frontends.hpge.rt_rate_hz = 2.0
    out = nudaq(
        "up",
        "--sim",
        "--config",
        str(write_config(data_dir, config)),
        "--duration",
        "30",
        "--speed",
        str(speed),
        "--json",
        "--data-dir",
        str(data_dir),
    )
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["run"] == 1 and summary["reactor"] == "on"
    for stream in ("hpge", "acv", "crv"):
        assert summary["pulses"][stream] > 0, stream
        assert summary["lost"][stream] == 0, stream
    # The run lasts the 30 s asked for, plus what stopping takes (DAQ time runs 20x wall
    # time, so 2 s of a loaded machine's transitions are 40 s); dead time is small.
    elapsed, live = summary["elapsed_s"], summary["live_time_s"]
    assert 0.95 * 30 <= elapsed < 30 + 2.0 * speed
    assert 0.9 * elapsed < live <= elapsed
    expected_rt = config.frontends.hpge.rt_rate_hz * live
    assert abs(summary["events"]["rt"] - expected_rt) < 5 * np.sqrt(expected_rt) + 1
    assert Path(summary["raw_file"]).exists()
    for category in ("all", "ac", "crv", "candidate", "rt"):
        spec = nudaq(
            "spectra", "--data-dir", str(data_dir), "--run", "1", "--category", category, "--json"
        )
        assert spec.returncode == 0, spec.stderr
        body = json.loads(spec.stdout)
        assert sum(body["counts"]) == summary["events"][category], category
        assert len(body["bin_edges_keV"]) == len(body["counts"]) + 1
        assert body["live_time_s"] == pytest.approx(live)


def test_unknown_run_is_a_clear_error(data_dir):
    made = nudaq("sim", "generate", "--hours", "1", "--reactor", "on", "--data-dir", str(data_dir))
    assert made.returncode == 0, made.stderr
    out = nudaq("spectra", "--data-dir", str(data_dir), "--run", "99", "--json")
    assert out.returncode != 0
    assert "99" in out.stderr and "Traceback" not in out.stderr


def test_empty_database_is_a_clear_error(data_dir):
    out = nudaq("spectra", "--data-dir", str(data_dir), "--run", "1", "--json")
    assert out.returncode != 0
    assert "database" in out.stderr and "Traceback" not in out.stderr


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def running_status(data_dir: Path) -> dict | None:
    out = nudaq("status", "--json", "--data-dir", str(data_dir), timeout=20)
    if out.returncode != 0:
        return None
    status = json.loads(out.stdout)
    return status if status["state"] == "running" else None


def test_status_and_run_control(data_dir):
    """Shifter commands on a live system."""
    up = start_up(data_dir, "--speed", "5")
    try:
        status = wait_for(lambda: running_status(data_dir), 90, "a running system")
        assert status["run"] == 1
        assert {"builder", "readout-hpge", "readout-acv", "readout-crv"} <= set(status["processes"])
        power = wait_for(
            lambda: ((running_status(data_dir) or {}).get("monitor") or {}).get("power_MW"),
            30,
            "the reactor power in the status",
        )
        assert power == pytest.approx(Config().sim.reactor[0].power_MW, rel=0.05)
        # Rates are per second of DAQ time: the physical rates, at 5x speed too.
        acv_hz = Config().sim.acv_singles_hz
        wait_for(
            lambda: (
                0.8 * acv_hz
                < ((running_status(data_dir) or {}).get("monitor") or {})
                .get("rates_hz", {})
                .get("acv", 0)
                < 1.25 * acv_hz
            ),
            30,
            f"an AC rate near {acv_hz} Hz",
        )
        stop = nudaq("run", "stop", "--json", "--data-dir", str(data_dir))
        assert stop.returncode == 0, stop.stderr
        assert json.loads(stop.stdout)["summary"]["run"] == 1
        again = nudaq("run", "stop", "--data-dir", str(data_dir))
        assert again.returncode == 2 and "cannot stop while idle" in again.stderr
        start = nudaq("run", "start", "--comment", "second", "--data-dir", str(data_dir))
        assert start.returncode == 0 and "run 2 started" in start.stdout
    finally:
        if up.poll() is None:
            up.send_signal(signal.SIGINT)
            up.wait(30)


def test_malformed_message_is_counted_and_the_run_goes_on(data_dir):
    up = start_up(data_dir, "--speed", "5")
    try:
        wait_for(lambda: running_status(data_dir), 90, "a running system")
        ctx = zmq.Context.instance()
        push = ctx.socket(zmq.PUSH)
        push.setsockopt(zmq.LINGER, 2000)
        push.connect(Config().endpoint("builder_data", data_dir))
        push.send_multipart([b"not a header", b"junk"])
        push.send_multipart([b"x"])
        push.close()

        def acv_pulses() -> int:
            return (
                ((running_status(data_dir) or {}).get("monitor") or {})
                .get("pulses", {})
                .get("acv", 0)
            )

        before = acv_pulses()
        wait_for(lambda: acv_pulses() > before + 1000, 30, "AC pulses built after the junk")
        stop = nudaq("run", "stop", "--json", "--data-dir", str(data_dir))
        assert stop.returncode == 0, stop.stderr
        summary = json.loads(stop.stdout)["summary"]
        assert summary["rejected_messages"] == 2
        assert summary["pulses"]["acv"] > before + 1000
    finally:
        up.send_signal(signal.SIGINT)
        up.communicate(timeout=60)
    assert up.returncode == 0
    assert os.path.exists(data_dir / "logs" / "builder.log")
