"""A run a crash left open, recovered from its raw file (daq.store.rebuild.recover_run): its
torn pulses file closed, its SQL replaced by what the file gives, linked, marked recovered."""

from __future__ import annotations

import hashlib

from sqlalchemy import func, select

from daq.build.eventbuilder import EventBuilder
from daq.build.increments import BuildUpdate
from daq.core.config import Config
from daq.formats.rawfile import PULSES, RawReader, raw_path
from daq.store.filler import SpectrumFiller
from daq.store.models import Exposure, LogbookEntry, RawFileDamage, Run, SpectrumBin
from daq.store.rebuild import recover_run, run_prefix
from daq.store.runs import create_run
from daq.store.session import session_scope
from hardware_sim.bench.synthetic import write_synthetic_run

RUN = 1


def test_a_torn_run_is_recovered_and_its_sql_replaced(db_engine, tmp_path):
    config = Config()
    prefix = run_prefix(tmp_path, RUN)
    prefix.parent.mkdir(parents=True)
    write_synthetic_run(prefix, RUN, duration_s=20.0, config=config)
    pulses = raw_path(prefix, PULSES)
    data = pulses.read_bytes()
    cut = int(len(data) * 0.7)
    pulses.write_bytes(data[:cut])  # the builder died mid-write
    with session_scope(db_engine) as session:
        create_run(session, RUN, config)
    stale = SpectrumFiller(db_engine, RUN, "", config.spectrum.n_bins)
    update = BuildUpdate.empty(config.spectrum.n_bins)
    update.hist[0, 0, 7] = 1234  # what SQL held from before the crash, not in the file
    stale.add(update)
    stale.commit()

    reference = EventBuilder(config, RUN)
    torn = RawReader(pulses)
    for batch in torn.iter_batches():
        reference.add(batch)
    torn_bytes = cut - torn.intact_end
    torn.close()
    reference.advance()
    reference.finish()
    expected = reference.summary

    report = recover_run(config, db_engine, tmp_path, RUN)

    assert RawReader(pulses).damage is None  # closed, the torn message cut
    assert torn_bytes > 0 and f"{torn_bytes} bytes skipped" in report["damage"]
    with session_scope(db_engine, readonly=True) as session:
        run = session.scalar(select(Run).where(Run.number == RUN))
        events = session.scalar(select(func.sum(Exposure.events_all)))
        elapsed = session.scalar(select(func.sum(Exposure.elapsed_ns)))
        counts = session.scalar(select(func.sum(SpectrumBin.counts)))
        damage = session.scalars(select(RawFileDamage.path)).all()
        logbook = session.scalars(select(LogbookEntry.text)).all()
    assert run.state == "recovered"
    assert run.raw_file == str(pulses)
    assert run.raw_sha256 == hashlib.sha256(pulses.read_bytes()).hexdigest()
    assert events == expected["events"]["all"]
    assert elapsed == sum(expected["elapsed_ns"].values())
    assert counts == sum(expected["events"].values())  # every category's events, nothing stale
    assert damage == [str(pulses)]
    assert any(f"run {RUN} recovered after a crash" in text for text in logbook)
