"""The supervisor: restarts with backoff, crash loops, children that die with it, and the
processes that talk to the (simulated) hardware stopped before it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import psutil
import pytest

from daq.control.supervisor import CrashLoop, Supervisor
from daq.core.config import Supervision

PROCESS = textwrap.dedent(
    """
    import signal, sys, time
    from pathlib import Path

    role, out = sys.argv[1], Path(sys.argv[2])

    def on_term(signum, frame):
        if role == "client":
            time.sleep(0.5)  # a readout finishing its last read
            (out / "client-exited").touch()
        else:
            (out / "device-saw").write_text(str((out / "client-exited").exists()))
        sys.exit(0)

    signal.signal(signal.SIGTERM, signal.SIG_IGN if role == "stubborn" else on_term)
    (out / f"{role}-ready").touch()
    while True:
        time.sleep(0.05)
    """
)


def start(sup: Supervisor, tmp_path, roles: dict[str, bool]) -> None:
    """Spawn a fake process per role (stop_last as given) and wait until each is ready."""
    (tmp_path / "fake_process.py").write_text(PROCESS)
    for role, stop_last in roles.items():
        sup.spawn(role, "fake_process", role, str(tmp_path), stop_last=stop_last)
    while not all((tmp_path / f"{role}-ready").exists() for role in roles):
        sup.check()


def test_stop_last_children_are_stopped_after_the_others_exited(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    sup = Supervisor(tmp_path)
    try:
        start(sup, tmp_path, {"device": True, "client": False})
    finally:
        codes = sup.stop_all(timeout_s=10)
    assert codes == {"device": 0, "client": 0}
    assert (tmp_path / "device-saw").read_text() == "True"


def test_a_child_that_ignores_sigterm_is_killed(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    sup = Supervisor(tmp_path)
    try:
        start(sup, tmp_path, {"stubborn": False})
    finally:
        codes = sup.stop_all(timeout_s=1)
    assert codes == {"stubborn": -9}


CRASHER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path

    out = Path(sys.argv[1])
    starts = out / "starts"
    starts.write_text(starts.read_text() + "x" if starts.exists() else "x")
    time.sleep(float(sys.argv[2]))
    sys.exit(int(sys.argv[3]))
    """
)


def crashing(tmp_path, monkeypatch, policy: Supervision, life_s: float, code: int = 1):
    """A supervisor with one child that lives life_s and exits with ``code``; its events."""
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    (tmp_path / "crasher.py").write_text(CRASHER)
    sup = Supervisor(tmp_path, policy)
    events: list[tuple[str, str, float, bool]] = []
    sup.on_event = lambda e: events.append((e.kind, e.detail, time.monotonic(), e.clean))
    sup.spawn("crasher", "crasher", str(tmp_path), str(life_s), str(code))
    return sup, events


def test_a_dying_child_is_restarted_with_a_doubling_backoff(tmp_path, monkeypatch):
    policy = Supervision(restart_backoff_s=0.2, max_backoff_s=0.4, crash_loop_restarts=10)
    sup, events = crashing(tmp_path, monkeypatch, policy, life_s=0.0)
    try:
        deadline = time.monotonic() + 20
        starts = tmp_path / "starts"
        while sum(kind == "restarted" for kind, *_ in events) < 3 or (
            not starts.exists() or len(starts.read_text()) < 4
        ):
            sup.check()
            assert time.monotonic() < deadline, events
            time.sleep(0.01)
    finally:
        sup.stop_all(timeout_s=5)
    died = [t for kind, _, t, _ in events if kind == "died"]
    restarted = [t for kind, _, t, _ in events if kind == "restarted"]
    waits = [r - d for d, r in zip(died, restarted, strict=False)]
    for wait, backoff in zip(waits, [0.2, 0.4, 0.4], strict=False):  # doubled, then capped
        assert backoff <= wait < backoff + 1.0, waits
    assert events[0][1] == "exited with code 1" and not events[0][3]
    assert sup.status()["crasher"]["restarts"] >= 3
    assert len((tmp_path / "starts").read_text()) == 1 + sup.status()["crasher"]["restarts"]


def test_a_crash_loop_raises_and_the_child_is_given_up(tmp_path, monkeypatch):
    policy = Supervision(restart_backoff_s=0.05, crash_loop_restarts=3, crash_loop_window_s=60)
    sup, events = crashing(tmp_path, monkeypatch, policy, life_s=0.0, code=0)
    try:
        with pytest.raises(
            CrashLoop, match=r"crasher .* exited with code 0, 3 deaths within 60 s: a crash loop"
        ):
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                sup.check()
                time.sleep(0.01)
        sup.check()  # given up: no second report, no restart
    finally:
        sup.stop_all(timeout_s=5)
    assert [kind for kind, *_ in events] == ["died", "restarted", "died", "restarted", "died"]
    assert events[0][3]  # exit 0: a clean exit
    assert not sup.status()["crasher"]["running"]
    assert (tmp_path / "starts").read_text() == "xxx"


def test_children_die_with_their_supervisor(tmp_path):
    """PR_SET_PDEATHSIG: a supervisor killed with SIGKILL takes its children with it."""
    (tmp_path / "crasher.py").write_text(CRASHER)
    script = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from daq.control.supervisor import Supervisor
        sup = Supervisor(Path({str(tmp_path)!r}))
        child = sup.spawn("crasher", "crasher", {str(tmp_path)!r}, "600", "0")
        print(child.pid, flush=True)
        time.sleep(600)
        """
    )
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}:{os.getcwd()}"}
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, env=env)
    child = psutil.Process(int(parent.stdout.readline()))
    parent.kill()
    parent.wait()
    assert psutil.wait_procs([child], timeout=10)[1] == []
