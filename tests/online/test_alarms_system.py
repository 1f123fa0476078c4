"""The alarms of a real system (nudaq up --sim): a dead AC veto, notified by webhook."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from sqlalchemy import select

from daq.core.config import Config
from daq.store.models import Alarm, LogbookEntry, Run
from daq.store.session import make_engine, session_scope
from tests.processes import start_up

pytestmark = [pytest.mark.slow, pytest.mark.faults]

RUN_S = 10.0
"""Simulated (= wall) seconds of the run."""


@pytest.fixture
def short_dir():
    """A short data directory (ipc socket paths must stay under ~100 characters)."""
    path = Path(tempfile.mkdtemp(prefix="nqa", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_a_dead_ac_veto_is_a_critical_alarm_from_the_start_of_the_run(short_dir, webhook_server):
    """The simulated NaI/CsI crystals give no singles (only the few Compton coincidences):
    against alarms.expected_hz.acv = 1000 Hz the monitor raises rate_low:acv, critical, in
    the run's first seconds (no reference period to wait for) and POSTs it to the webhook
    once; the CRV at its expected 300 Hz stays quiet, and the cold start raises no run
    control alarm. The run ends normally, with nothing lost."""
    config = Config()
    config.sim.acv_singles_hz = 0.0
    config.alarms.expected_hz.acv = 1000.0
    config.alarms.expected_hz.crv = 300.0
    config.alarms.webhook.url = webhook_server.url
    config.alarms.notify_retry_s = 0.2
    path = short_dir / "alarms.json"
    path.write_text(config.snapshot())
    up = start_up(short_dir, "--config", str(path), "--duration", str(RUN_S), "--json")
    try:
        out, err = up.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        up.kill()
        out, err = up.communicate()
        raise AssertionError(f"nudaq up did not end: {err[-2000:]}") from None
    assert up.returncode == 0, err[-2000:]
    summary = json.loads(out)
    assert summary["pulses"]["acv"] < summary["pulses"]["crv"] / 100  # detector truth: dead
    assert sum(summary["lost"].values()) == 0
    engine = make_engine(f"sqlite:///{short_dir / 'nudaq.sqlite'}")
    try:
        with session_scope(engine, readonly=True) as session:
            alarms = session.scalars(select(Alarm)).all()
            texts = session.scalars(select(LogbookEntry.text).where(LogbookEntry.automatic)).all()
            run = session.scalars(select(Run)).one()
    finally:
        engine.dispose()
    assert run.state == "ended"
    assert [(a.name, a.severity) for a in alarms] == [("rate_low:acv", "critical")]
    (acv,) = alarms
    assert "1000 Hz -10% (configured" in acv.message
    assert sum(t.startswith("alarm raised: acv low: ") for t in texts) == 1
    (notice,) = webhook_server.bodies()
    assert notice["name"] == "rate_low:acv" and notice["severity"] == "critical"
    assert notice["run"] == run.number
    started = run.started_utc.replace(tzinfo=None)
    assert 0 <= (acv.raised_utc.replace(tzinfo=None) - started).total_seconds() < RUN_S
