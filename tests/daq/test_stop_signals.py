"""Stopping the children is not cut short by a second Ctrl-C (or SIGTERM)."""

from __future__ import annotations

import os
import signal
import textwrap

from daq.control.supervisor import Supervisor

SLOW_TO_STOP = textwrap.dedent(
    """
    import signal, sys, time
    from pathlib import Path

    out = Path(sys.argv[1])

    def on_term(signum, frame):
        (out / "stopping").touch()
        time.sleep(0.5)  # ending its run
        sys.exit(0)

    signal.signal(signal.SIGTERM, on_term)
    (out / "ready").touch()
    while True:
        time.sleep(0.05)
    """
)


def test_signals_are_ignored_while_the_children_stop_and_restored_after(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    (tmp_path / "slow_to_stop.py").write_text(SLOW_TO_STOP)
    sup = Supervisor(tmp_path)
    sup.spawn("child", "slow_to_stop", str(tmp_path))
    while not (tmp_path / "ready").exists():
        sup.check()
    seen: list[int] = []

    def record(signum, frame) -> None:
        seen.append(signum)

    previous = {sig: signal.signal(sig, record) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        original_stop = Supervisor._stop

        def stop_and_interrupt(children, deadline):
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C again while the child stops
            os.kill(os.getpid(), signal.SIGTERM)
            return original_stop(children, deadline)

        monkeypatch.setattr(Supervisor, "_stop", staticmethod(stop_and_interrupt))
        codes = sup.stop_all(timeout_s=10)
        assert codes == {"child": 0} and (tmp_path / "stopping").exists()
        assert seen == []
        assert signal.getsignal(signal.SIGINT) is record
        assert signal.getsignal(signal.SIGTERM) is record
        os.kill(os.getpid(), signal.SIGINT)
        assert seen == [signal.SIGINT]
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
