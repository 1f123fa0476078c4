"""Run control's SQL through a database outage: a stop completes and is stored later; a start
is refused in one line and leaves run control idle."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from sqlalchemy import select

from daq.control.runcontrol import RunControl
from daq.control.runstate import RunState
from daq.core.config import Config
from daq.core.errors import RunControlError
from daq.store.models import LogbookEntry, Run
from daq.store.session import make_engine, upgrade_database
from tests.daq.test_durable import locked

pytestmark = pytest.mark.faults


@pytest.fixture
def run_control():
    """Run control with no processes on an SQLite database; its data directory is short
    (ipc paths). The busy timeout is short, so a lock held for a second is an outage."""
    data_dir = Path(tempfile.mkdtemp(prefix="nqr", dir="/tmp"))
    (data_dir / "sockets").mkdir()
    db = data_dir / "nudaq.sqlite"
    engine = make_engine(f"sqlite:///{db}")
    upgrade_database(engine)
    config = Config()
    config.database.busy_timeout_s = 0.2
    config.database.retry_interval_s = 0.05
    rc = RunControl(config, data_dir, engine)
    rc.participants = ()
    yield rc, db, engine
    rc.close()
    engine.dispose()
    shutil.rmtree(data_dir, ignore_errors=True)


def runs(engine) -> list[tuple[int, str]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(select(Run.number, Run.state)).all()]


def logbook(engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.scalars(select(LogbookEntry.text).order_by(LogbookEntry.id)))


def test_a_stop_during_an_outage_completes_and_is_stored_when_it_is_back(run_control):
    rc, db, engine = run_control
    assert rc.start_run() == 1
    with locked(db):
        rc.stop_run()
        assert rc.machine.state is RunState.IDLE
        assert not rc.writes.wait(1.0), "stored while the lock was held"
        with pytest.raises(RunControlError) as refused:
            rc.start_run()
        assert rc.machine.state is RunState.IDLE and rc.machine.run == 1
        line = str(refused.value)
        assert "\n" not in line and line.startswith("cannot start a run: the database is")
        assert "1 queued" in line
    assert rc.writes.wait(10)
    assert runs(engine) == [(1, "ended")]
    assert logbook(engine) == ["run 1 started.", "run 1 stopped"]
    assert rc.start_run() == 2


def test_a_start_when_the_database_went_away_unnoticed_is_refused(run_control):
    """Nothing was written since the database went away: the start finds out itself."""
    rc, db, engine = run_control
    with locked(db):
        assert rc.writes.caught_up
        with pytest.raises(RunControlError, match="database is unavailable .database is locked"):
            rc.start_run()
        assert rc.machine.state is RunState.IDLE and rc.machine.run is None
    assert runs(engine) == []
    assert rc.start_run() == 1
