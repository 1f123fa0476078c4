"""The supervisor stops the processes that talk to the (simulated) hardware before it."""

from __future__ import annotations

import textwrap

from daq.control.supervisor import Supervisor

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
