"""A run rebuilt from its raw pulses file: the state a restarted builder resumes from, and the
close of a run a crash left open.

The raw pulses file is the truth: SQL can always be rebuilt from it. A builder that died left
its files where its last flush ended (perhaps in a torn message) and SQL where its last commit
ended, not necessarily at the same point. ``rebuild`` feeds every intact batch of the pulses
file, in recorded order, through a new EventBuilder (the same code as live and replay),
writes the events file anew from what it builds, cuts the pulses file after its last intact
message and keeps it open for appending (daq.formats.rawfile.RawWriter), and replaces the
run's results in SQL (tag "") with what the raw file gives, in one transaction: afterwards
SQL equals a replay of the raw file so far. What was cut is recorded as raw-file damage.

A restarted builder then goes on with the returned builder, filler and writer
(daq.processes.builder); ``recover_run`` instead closes the run: what is left is built as at
any end of run, the files get their end marker, SQL is committed and linked to them, and the
run's state becomes ``recovered``.

Order with queued writes (daq.store.durable): the replacement must come after every increment
of the run that a builder queued before it died, or those would count twice. A restarted
builder queues the replacement on its own writer, which stores its predecessor's journal
first. ``recover_run`` first stores what a builder left journaled, and refuses (the run stays
open, to be recovered later) while the database cannot take it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sqlalchemy import Engine

from daq.build.eventbuilder import EventBuilder
from daq.core.config import Config, Database
from daq.core.errors import RunControlError
from daq.core.records import RUN_STREAMS, Stream
from daq.formats.rawfile import PULSES, RawDamage, RawReader, RawWriter, raw_path
from daq.store.durable import DurableWriter
from daq.store.filler import SPECTRUM, SpectrumFiller, apply_increment
from daq.store.runs import add_logbook, add_raw_damage, end_run
from daq.store.session import session_scope

log = logging.getLogger(__name__)

BURST_PULSES = 1 << 20
"""Pulses fed before the event builder advances (bounds what it holds at once)."""
LIVE_BUILDER = "builder"
"""The live builder's process name, which names its queued writes and their journal."""


@dataclass
class Rebuilt:
    """A run's state rebuilt from its raw pulses file."""

    builder: EventBuilder
    filler: SpectrumFiller
    writer: RawWriter
    damage: RawDamage | None
    batches: int = 0
    last_watermark_ns: int | None = None
    """The latest watermark recorded: the DAQ clock was past it when the run stopped."""
    incarnations: dict[int, int] = field(default_factory=dict)
    """The newest incarnation recorded per stream (run control announced it)."""


def run_prefix(data_dir: Path, run: int) -> Path:
    """Where the raw files of a live run are: ``<data dir>/raw/runNNNNNN``."""
    return Path(data_dir) / "raw" / f"run{run:06d}"


def rebuild(
    config: Config,
    engine: Engine,
    run: int,
    prefix: Path,
    streams: tuple[Stream, ...] = RUN_STREAMS,
    reactor_on: bool | None = None,
    fsync_interval_s: float | None = None,
    writes: DurableWriter | None = None,
) -> Rebuilt:
    """Rebuild run ``run`` from the pulses file under ``prefix`` (see the module doc); a run
    without a pulses file starts from nothing. ``writes``: the builder's queued writes, which
    the replacement of the run's SQL joins (else it is written at once)."""
    builder = EventBuilder(config, run, streams, reactor_on)
    filler = SpectrumFiller(engine, run, "", builder.n_bins, writes)
    path = raw_path(prefix, PULSES)
    events: list[np.ndarray] = []
    done = Rebuilt(builder, filler, None, None)  # the writer comes once the file is read
    continue_at = None
    if path.exists():
        reader = RawReader(path)
        pulses = 0
        for batch in reader.iter_batches():
            builder.add(batch)
            done.batches += 1
            done.last_watermark_ns = max(
                done.last_watermark_ns or batch.watermark_ns, batch.watermark_ns
            )
            if batch.incarnation:
                done.incarnations[batch.stream] = max(
                    batch.incarnation, done.incarnations.get(batch.stream, 0)
                )
            pulses += len(batch.pulses)
            if pulses >= BURST_PULSES:
                events.append(_advance(builder, filler))
                pulses = 0
        done.damage, continue_at = reader.damage, reader.intact_end
        reader.close()
    events.append(_advance(builder, filler))
    done.writer = RawWriter(
        prefix, run, config.snapshot(), fsync_interval_s, continue_at=continue_at
    )
    for chunk in events:
        done.writer.write_events(chunk)
    done.writer.flush()
    filler.replace()
    if done.damage is not None:
        with session_scope(engine) as session:
            add_raw_damage(session, done.damage, run)
    log.info("run %d rebuilt from %s: %d batches, damage: %s", run, path, done.batches, done.damage)
    return done


def store_builder_journal(engine: Engine, data_dir: Path, settings: Database) -> None:
    """Store what a builder that died left journaled (before its run is rebuilt, see the
    module doc); RunControlError if the database does not take it within
    ``database.busy_timeout_s``."""
    writes = DurableWriter(engine, data_dir, LIVE_BUILDER, {SPECTRUM: apply_increment}, settings)
    try:
        if not (writes.wait(settings.busy_timeout_s) and writes.caught_up):
            raise RunControlError(
                "the database did not take what the builder left journaled: the run is"
                " recovered when it does"
            )
    finally:
        writes.close()


def _advance(builder: EventBuilder, filler: SpectrumFiller) -> np.ndarray:
    update = builder.advance()
    filler.add(update)
    return update.events


def recover_run(config: Config, engine: Engine, data_dir: Path, run: int) -> dict:
    """Close a run a crash left open: rebuilt from its raw file, finished, its files closed
    and linked, its state ``recovered``, with a logbook entry; what was done, for the
    shifter."""
    store_builder_journal(engine, data_dir, config.database)
    prefix = run_prefix(data_dir, run)
    path = raw_path(prefix, PULSES)
    if path.exists():
        config = RawReader(path).config  # the configuration the run was taken with
    rebuilt = rebuild(config, engine, run, prefix)
    update = rebuilt.builder.finish()
    rebuilt.filler.add(update)
    rebuilt.writer.write_events(update.events)
    raw_files = rebuilt.writer.close()
    rebuilt.filler.close_run(raw_files, end_ns=rebuilt.builder.exposure_end_ns)
    summary = rebuilt.builder.summary
    report = {
        "run": run,
        "raw_file": str(path),
        "batches": rebuilt.batches,
        "events": summary["events"],
        "damage": str(rebuilt.damage) if rebuilt.damage else None,
    }
    with session_scope(engine) as session:
        end_run(session, run, state="recovered")
        add_logbook(
            session,
            "run control",
            f"run {run} recovered after a crash: closed from its raw file ({rebuilt.batches}"
            f" batches; {report['damage'] or 'no damage'})",
            run_number=run,
            automatic=True,
        )
    return report
