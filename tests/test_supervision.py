"""Unattended operation through real processes (``nudaq up --sim``): processes that die are
restarted and the run goes on, a crash loop stops the system cleanly with a critical alarm,
``nudaq up``'s own death takes its processes with it and the next start recovers the run it
left open, and a data directory takes one system at a time.

Each test checks the four things a fault must show: detected (the supervisor's log and
status), reported (logbook entries, alarms in SQL), recovered or stopped cleanly (the run goes
on, or is ended and linked to its raw file), nothing lost (SQL equals a replay of the raw
file; the losses of readouts and of the builder against the simulator's truth are in
tests/test_losses.py).
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import psutil
import pytest
from sqlalchemy import create_engine, text

from daq.core.config import Config
from daq.formats.rawfile import RawReader
from tests.processes import NUDAQ, scratch_data_dir
from tests.test_replay_system import stored

pytestmark = [pytest.mark.slow, pytest.mark.faults]

SPEED = 5.0


@pytest.fixture
def data_dir():
    """A short data directory; every process still running on it at the end is killed."""
    with scratch_data_dir("nqs") as path:
        yield path


def nudaq(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([*NUDAQ, *args], capture_output=True, text=True, timeout=timeout)


def up(
    data_dir: Path, config: Config | None = None, *args: str, speed: float = SPEED
) -> subprocess.Popen:
    """``nudaq up --sim`` at ``speed``, its console in ``<data dir>/up.err``."""
    data_dir.mkdir(exist_ok=True)
    path = data_dir / "test-config.json"
    path.write_text((config or Config()).snapshot())
    with open(data_dir / "up.err", "a") as err:
        return subprocess.Popen(
            [*NUDAQ, "up", "--sim", "--config", str(path), "--speed", str(speed), *args]
            + ["--data-dir", str(data_dir)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )


def status(data_dir: Path) -> dict:
    out = nudaq("status", "--json", "--data-dir", str(data_dir), timeout=30)
    return json.loads(out.stdout) if out.returncode == 0 else {}


def wait_for(predicate, timeout_s: float, what: str, process: subprocess.Popen | None = None):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None:
            assert process.poll() is None, f"nudaq up ended while waiting for {what}"
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def running(data_dir: Path, process: subprocess.Popen, run: int = 1) -> dict:
    """The status once run ``run`` is taking data on every stream."""
    return wait_for(
        lambda: (
            (s := status(data_dir)).get("state") == "running"
            and s.get("run") == run
            and all(
                (s.get("monitor") or {}).get("pulses", {}).get(n) for n in ("hpge", "acv", "crv")
            )
            and s
        ),
        90,
        f"run {run} taking data",
        process,
    )


def service(process: subprocess.Popen, name: str, stream: str | None = None) -> psutil.Process:
    """The process of a service under nudaq up (a readout: of one stream)."""
    for p in psutil.Process(process.pid).children(recursive=True):
        cmdline = p.cmdline()
        if "daq.processes" in cmdline and name in cmdline and (stream is None or stream in cmdline):
            return p
    raise AssertionError(f"no {name} {stream or ''} process")


def sql(data_dir: Path, query: str) -> list:
    engine = create_engine(f"sqlite:///{data_dir / 'nudaq.sqlite'}")
    try:
        with engine.connect() as conn:
            return conn.execute(text(query)).all()
    finally:
        engine.dispose()


def replayed(data_dir: Path, run: int, tmp_path: Path) -> dict:
    """What a replay of a run's raw file stores in a fresh database."""
    fresh = tmp_path / f"replay{run}.sqlite"
    work = Path(tempfile.mkdtemp(prefix="nqr", dir="/tmp"))
    try:
        out = nudaq(
            "replay",
            str(data_dir / "raw" / f"run{run:06d}.pulses.arrow"),
            "--db",
            f"sqlite:///{fresh}",
            "--data-dir",
            str(work),
            timeout=120,
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    assert out.returncode == 0, out.stderr
    return stored(fresh)


def of_run(tables: dict, run: int) -> dict:
    """The rows of one run of stored tables (tests.test_replay_system.stored)."""
    return {name: [row for row in rows if row[0] == run] for name, rows in tables.items()}


def test_dead_processes_come_back_and_the_run_goes_on(data_dir):
    """kill -9 of the monitor, the web server and slow control: each is restarted, run 1 goes
    on (slow control rejoins it: its absence is a restart gap of the reactor stream); then a
    readout stopped by SIGTERM ends its part of run 1, so run 1 ends and run 2 begins when it
    is back. Run control answers status requests while a stop waits for a held builder."""
    system = up(data_dir)
    try:
        first = running(data_dir, system)
        for name in ("monitor", "web", "slowcontrol"):
            old = service(system, name)
            old.kill()
            back = wait_for(
                lambda name=name: (
                    (s := status(data_dir)).get("supervision", {}).get(name, {}).get("restarts")
                    == 1
                    and s["supervision"][name]["running"]
                    and s
                ),
                30,
                f"{name} restarted",
                system,
            )
            assert back["run"] == 1 and back["state"] == "running"
            assert service(system, name).pid != old.pid
        wait_for(lambda: "slowcontrol" in status(data_dir).get("processes", []), 30, "slowcontrol")
        later = running(data_dir, system)
        assert later["monitor"]["pulses"]["acv"] > first["monitor"]["pulses"]["acv"]

        service(system, "readout", "crv").terminate()
        running(data_dir, system, run=2)

        # run control answers while a stop waits for a held builder: status, and busy
        builder = service(system, "builder")
        builder.suspend()
        stopping = subprocess.Popen(
            [*NUDAQ, "run", "stop", "--data-dir", str(data_dir)], stdout=subprocess.DEVNULL
        )
        wait_for(lambda: status(data_dir).get("state") == "stopping", 30, "a stop under way")
        busy = nudaq("run", "start", "--data-dir", str(data_dir))
        builder.resume()
        assert stopping.wait(60) == 0
        assert busy.returncode == 2 and "run control is busy (stopping)" in busy.stderr
    finally:
        system.send_signal(signal.SIGINT)
        code = system.wait(60)
    assert code == 0, (data_dir / "up.err").read_text()
    runs = dict(sql(data_dir, "SELECT number, state FROM runs"))
    assert runs == {1: "ended", 2: "ended"}
    gaps = sql(data_dir, "SELECT c.stream, c.reason FROM coverage_gaps c WHERE c.run_id = 1")
    assert ("reactor", "restart") in gaps
    logbook = [t for (t,) in sql(data_dir, "SELECT text FROM logbook")]
    for name in ("monitor", "web", "slowcontrol"):
        assert any(f"process {name} was killed by signal 9" in t for t in logbook), logbook
    assert any("slowcontrol restarted: rejoined run 1 as incarnation 1" in t for t in logbook)
    assert any("readout-crv ended its part of run 1 and came back" in t for t in logbook)
    alarms = sql(data_dir, "SELECT name, cleared_utc FROM alarms WHERE name LIKE 'supervisor:%'")
    assert sorted(name for name, _ in alarms) == [
        "supervisor:restart:monitor",
        "supervisor:restart:readout-crv",
        "supervisor:restart:slowcontrol",
        "supervisor:restart:web",
    ]
    assert all(cleared is not None for _, cleared in alarms)


def test_a_crash_loop_stops_the_system_cleanly_with_a_critical_alarm(data_dir):
    """A readout killed again as soon as it is back: at supervision.crash_loop_restarts deaths
    the system stops, run 1 ended and linked to its raw file, a critical alarm raised, no
    process left."""
    config = Config()
    config.supervision.crash_loop_restarts = 3
    config.supervision.restart_backoff_s = 0.2
    system = up(data_dir, config)
    try:
        running(data_dir, system)
        for restarts in (1, 2):
            service(system, "readout", "acv").kill()
            wait_for(
                lambda restarts=restarts: (
                    status(data_dir).get("supervision", {}).get("readout-acv", {}).get("restarts")
                    == restarts
                    and "readout-acv" in status(data_dir).get("processes", [])
                ),
                30,
                f"restart {restarts} of readout-acv",
                system,
            )
        children = psutil.Process(system.pid).children(recursive=True)
        service(system, "readout", "acv").kill()
        code = system.wait(60)
    finally:
        if system.poll() is None:
            system.kill()
    err = (data_dir / "up.err").read_text()
    assert code == 1 and "3 deaths within 300 s: a crash loop" in err, err
    assert psutil.wait_procs(children, timeout=10)[1] == []
    run = sql(data_dir, "SELECT state, raw_file FROM runs WHERE number = 1")
    assert run[0][0] == "ended" and Path(run[0][1]).exists()
    assert RawReader(run[0][1]).damage is None
    alarms = sql(data_dir, "SELECT severity, cleared_utc FROM alarms WHERE name LIKE '%crash_loop'")
    assert alarms == [("critical", None)]


def test_the_death_of_nudaq_up_takes_its_processes_and_the_next_start_recovers_the_run(
    data_dir, tmp_path
):
    """One system per data directory: a second nudaq up is refused at once, naming the pid.
    kill -9 of nudaq up: every process it started stops (ending run 1 itself, which run
    control can no longer mark); the next nudaq up recovers run 1 from its raw file (state
    recovered, raw file closed and linked, SQL equal to a replay of it) and takes run 2."""
    system = up(data_dir)
    try:
        running(data_dir, system)
        t0 = time.monotonic()
        second = nudaq("up", "--sim", "--data-dir", str(data_dir), timeout=30)
        refused_s = time.monotonic() - t0
        children = psutil.Process(system.pid).children(recursive=True)
    finally:
        system.kill()
        system.wait()
    assert second.returncode == 2 and f"in use by nudaq up (pid {system.pid})" in second.stderr
    assert refused_s < 10  # at once, not after a start-up timeout
    assert psutil.wait_procs(children, timeout=Config().builder.drain_timeout_s + 10)[1] == []
    assert sql(data_dir, "SELECT state FROM runs WHERE number = 1") == [("running",)]

    again = nudaq(
        "up",
        "--sim",
        "--duration",
        "10",
        "--speed",
        str(SPEED),
        "--json",
        "--data-dir",
        str(data_dir),
        timeout=120,
    )
    assert again.returncode == 0, again.stderr
    assert "run 1 was left open by a crash: recovered" in again.stderr
    assert json.loads(again.stdout)["run"] == 2
    ((state, raw_file),) = sql(data_dir, "SELECT state, raw_file FROM runs WHERE number = 1")
    assert state == "recovered" and RawReader(raw_file).damage is None
    logbook = [t for (t,) in sql(data_dir, "SELECT text FROM logbook WHERE run_number = 1")]
    assert any("run 1 recovered after a crash" in t for t in logbook), logbook
    live = of_run(stored(data_dir / "nudaq.sqlite"), 1)
    assert live["exposures"] and live == replayed(data_dir, 1, tmp_path)
