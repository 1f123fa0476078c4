"""Database plumbing: migrations match the models, parallel upgrades, run bookkeeping."""

from __future__ import annotations

import subprocess
import sys

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, select, text

import daq
from daq.core.config import Config
from daq.core.errors import RunControlError
from daq.formats.rawfile import DamagedRegion, RawDamage
from daq.store.models import Base, LogbookEntry, RawFileDamage, Run
from daq.store.runs import (
    add_logbook,
    add_raw_damage,
    create_run,
    end_run,
    next_run_number,
    set_quality,
)
from daq.store.session import make_engine, session_scope, upgrade_database


def test_migrations_match_the_models(db_engine):
    with db_engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0003"
    assert set(inspect(db_engine).get_table_names()) == {*Base.metadata.tables, "alembic_version"}


def test_sqlite_engine_settings(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'deep' / 'dir' / 'x.sqlite'}")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30_000
    engine.dispose()


def test_parallel_upgrades_are_safe(db_url):
    code = (
        "import sys; from daq.store.session import upgrade_database; upgrade_database(sys.argv[1])"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code, db_url]) for _ in range(4)]
    assert [p.wait(timeout=60) for p in procs] == [0] * 4
    upgrade_database(db_url)
    engine = make_engine(db_url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM alembic_version")).scalar() == 1
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    engine.dispose()


def test_run_bookkeeping(db_engine):
    config = Config()
    with session_scope(db_engine) as session:
        assert next_run_number(session) == 1
        run = create_run(session, 1, config, comment="first light", simulated=True)
        assert next_run_number(session) == 2
        with pytest.raises(RunControlError, match="run 1 already exists"):
            create_run(session, 1, config)
    assert run.config_json == config.snapshot()
    assert run.config_sha256 == config.digest() and len(run.config_sha256) == 64
    assert run.nudaq_version == daq.__version__
    assert run.state == "running" and run.started_utc is not None and run.stopped_utc is None
    with session_scope(db_engine) as session:
        end_run(session, 1, state="error", error="builder died")
        set_quality(session, 1, "bad", "builder died")
        add_logbook(session, "shifter", "LN2 refilled", run_number=1)
        add_logbook(session, "run control", "run 1 failed", run_number=1, automatic=True)
        for bad in (lambda: end_run(session, 9), lambda: set_quality(session, 9, "good", "")):
            with pytest.raises(RunControlError, match="run 9 is not in the database"):
                bad()
        with pytest.raises(RunControlError, match="unknown quality"):
            set_quality(session, 1, "great", "")
    with session_scope(db_engine, readonly=True) as session:
        stored = session.scalar(select(Run).where(Run.number == 1))
        assert (stored.state, stored.error, stored.quality) == ("error", "builder died", "bad")
        assert stored.stopped_utc is not None
        entries = session.scalars(select(LogbookEntry).order_by(LogbookEntry.id)).all()
        assert [(e.author, e.automatic, e.run_number) for e in entries] == [
            ("shifter", False, 1),
            ("run control", True, 1),
        ]


def test_failed_scope_rolls_back(db_engine):
    with pytest.raises(RuntimeError), session_scope(db_engine) as session:
        create_run(session, 5, Config())
        raise RuntimeError("crash before commit")
    with session_scope(db_engine, readonly=True) as session:
        assert next_run_number(session) == 1


def test_raw_damage_is_stored(db_engine, tmp_path):
    damage = RawDamage(
        tmp_path / "run000003.pulses.arrow",
        batches_read=40,
        regions=[DamagedRegion(1234, 567, 10**9, 2 * 10**9, "fails its checksum")],
    )
    with session_scope(db_engine) as session:
        add_raw_damage(session, damage, run_number=3)
    with session_scope(db_engine, readonly=True) as session:
        row = session.scalar(select(RawFileDamage))
    assert (row.run_number, row.offset, row.bytes_skipped, row.batches_read) == (3, 1234, 567, 40)
    assert (row.last_good_ns, row.resumed_ns) == (10**9, 2 * 10**9)
    assert row.path.endswith("run000003.pulses.arrow")
    # The same file read again (another replay tag) adds only what is new.
    damage.regions.append(DamagedRegion(9000, 100, 3 * 10**9, 4 * 10**9, "truncated"))
    for number in (3, None):
        with session_scope(db_engine) as session:
            add_raw_damage(session, damage, run_number=number)
    with session_scope(db_engine, readonly=True) as session:
        rows = session.scalars(select(RawFileDamage).order_by(RawFileDamage.id)).all()
        seen = [(r.run_number, r.offset) for r in rows]
    assert seen == [(3, 1234), (3, 9000), (None, 1234), (None, 9000)]
