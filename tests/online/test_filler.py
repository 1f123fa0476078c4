"""The spectrum filler on SQLite and PostgreSQL: sums, tags, intervals, atomic commits."""

from __future__ import annotations

import threading
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import event, select

from daq.build.increments import (
    REACTOR_STATES,
    BuildUpdate,
    ExposureDelta,
    ReactorChange,
    StreamDelta,
)
from daq.core.config import Config
from daq.core.errors import RunControlError
from daq.core.records import CATEGORY_NAMES, Category
from daq.formats.rawfile import RawFileInfo
from daq.store.filler import SpectrumFiller
from daq.store.models import Exposure, RawFile, ReactorInterval, Run, SpectrumBin, StreamStat
from daq.store.runs import create_run
from daq.store.session import session_scope

N_BINS = 300
CATEGORIES = [CATEGORY_NAMES[c] for c in Category]


def random_update(rng: np.random.Generator, n_bins: int = N_BINS, density=0.05) -> BuildUpdate:
    update = BuildUpdate.empty(n_bins)
    mask = rng.random(update.hist.shape) < density
    update.hist[mask] = rng.integers(1, 1000, mask.sum())
    for state in REACTOR_STATES:
        values = {f.name: int(rng.integers(0, 10**6)) for f in fields(ExposureDelta)}
        values["elapsed_ns"] = int(rng.integers(10**9, 10**10))
        values["dead_span_ns"] = int(rng.integers(10**8, 10**9))
        update.exposure[state] = ExposureDelta(**values)
    for stream in ("hpge", "acv", "crv"):
        values = {f.name: int(rng.integers(0, 10**5)) for f in fields(StreamDelta)}
        update.streams[stream] = StreamDelta(**values)
    return update


def stored(engine, run_number: int, tag: str, n_bins: int = N_BINS):
    """What the database holds for a run and tag: histogram, exposures, stream stats."""
    with session_scope(engine, readonly=True) as session:
        run_id = session.scalar(select(Run.id).where(Run.number == run_number))
        hist = np.zeros((len(REACTOR_STATES), len(Category), n_bins), np.int64)
        for b in session.scalars(
            select(SpectrumBin).where(SpectrumBin.run_id == run_id, SpectrumBin.tag == tag)
        ):
            assert b.counts != 0, "only nonzero bins are stored"
            hist[REACTOR_STATES.index(b.reactor), CATEGORIES.index(b.category), b.bin] = b.counts
        exposures = {
            e.reactor: ExposureDelta(**{f.name: getattr(e, f.name) for f in fields(ExposureDelta)})
            for e in session.scalars(
                select(Exposure).where(Exposure.run_id == run_id, Exposure.tag == tag)
            )
        }
        live = {
            e.reactor: e.live_ns
            for e in session.scalars(
                select(Exposure).where(Exposure.run_id == run_id, Exposure.tag == tag)
            )
        }
        streams = {
            s.stream: StreamDelta(**{f.name: getattr(s, f.name) for f in fields(StreamDelta)})
            for s in session.scalars(
                select(StreamStat).where(StreamStat.run_id == run_id, StreamStat.tag == tag)
            )
        }
    return hist, exposures, live, streams


def expected_sums(updates: list[BuildUpdate]):
    hist = sum(u.hist for u in updates)
    exposures = {
        s: ExposureDelta(
            **{
                f.name: sum(getattr(u.exposure[s], f.name) for u in updates)
                for f in fields(ExposureDelta)
            }
        )
        for s in REACTOR_STATES
    }
    streams = {
        name: StreamDelta(
            **{
                f.name: sum(getattr(u.streams[name], f.name) for u in updates)
                for f in fields(StreamDelta)
            }
        )
        for name in updates[0].streams
    }
    return hist, exposures, streams


@pytest.fixture
def engine(db_engine):
    with session_scope(db_engine) as session:
        for number in (1, 2):
            create_run(session, number, Config())
    return db_engine


def test_increments_add_up(engine):
    rng = np.random.default_rng(1)
    updates = [random_update(rng) for _ in range(7)]
    filler = SpectrumFiller(engine, 1, "", N_BINS)
    assert filler.commit() is False, "nothing to commit"
    for i, update in enumerate(updates):
        filler.add(update)
        if i % 3 != 1:  # several updates per commit, and single ones
            assert filler.commit() is True
    filler.commit()
    hist, exposures, live, streams = stored(engine, 1, "")
    want_hist, want_exposures, want_streams = expected_sums(updates)
    np.testing.assert_array_equal(hist, want_hist)
    assert exposures == want_exposures
    # live time is the covered time times the live fraction of the run's totals, not a sum
    assert live == {
        s: (e.elapsed_ns - e.uncovered_ns) * (e.dead_span_ns - e.dead_ns) // e.dead_span_ns
        + ((e.elapsed_ns - e.uncovered_ns) * (e.dead_span_ns - e.dead_ns) % e.dead_span_ns > 0)
        for s, e in want_exposures.items()
    }
    assert streams == want_streams
    assert stored(engine, 2, "")[0].sum() == 0, "another run is untouched"


def test_tags_never_touch_each_other(engine):
    rng = np.random.default_rng(2)
    live = [random_update(rng) for _ in range(3)]
    replay = [random_update(rng) for _ in range(4)]
    live_filler = SpectrumFiller(engine, 1, "", N_BINS)
    for update in live:
        live_filler.add(update)
    live_filler.commit()
    before = stored(engine, 1, "")
    replay_filler = SpectrumFiller(engine, 1, "replay-a", N_BINS)
    for update in replay:
        replay_filler.add(update)
        replay_filler.commit()
    replay_filler.close_run([RawFileInfo(Path("/r/run1.pulses.arrow"), "ab" * 32, 10)])
    after = stored(engine, 1, "")
    np.testing.assert_array_equal(after[0], before[0])
    assert after[1:] == before[1:]
    np.testing.assert_array_equal(stored(engine, 1, "replay-a")[0], expected_sums(replay)[0])
    with session_scope(engine, readonly=True) as session:
        run = session.scalar(select(Run).where(Run.number == 1))
        assert run.raw_file is None and run.stopped_utc is None, "a replay leaves the run alone"


def test_reactor_intervals_split_at_changes(engine):
    filler = SpectrumFiller(engine, 1, "", N_BINS)
    first = BuildUpdate.empty(N_BINS)
    first.reactor_changes = [ReactorChange(0, True, 2900.0)]
    filler.add(first)
    filler.commit()
    later = BuildUpdate.empty(N_BINS)
    later.reactor_changes = [ReactorChange(8 * 10**9, True, 2850.0)]
    filler.add(later)
    trip = BuildUpdate.empty(N_BINS)
    trip.reactor_changes = [ReactorChange(5 * 10**9, False, 3.0)]
    filler.add(trip)
    filler.commit()

    def intervals():
        with session_scope(engine, readonly=True) as session:
            rows = session.scalars(select(ReactorInterval).order_by(ReactorInterval.start_ns))
            return [(i.reactor, i.start_ns, i.end_ns, i.power_MW) for i in rows]

    assert intervals() == [
        ("on", 0, 5 * 10**9, 2900.0),
        ("off", 5 * 10**9, 8 * 10**9, 3.0),
        ("on", 8 * 10**9, None, 2850.0),
    ]
    filler.close_run([], end_ns=11 * 10**9)
    assert intervals()[-1] == ("on", 8 * 10**9, 11 * 10**9, 2850.0)


def test_failed_commit_leaves_nothing_and_retries(engine):
    rng = np.random.default_rng(3)
    update = random_update(rng)
    update.reactor_changes = [ReactorChange(0, False, 0.0)]
    filler = SpectrumFiller(engine, 1, "", N_BINS)
    filler.add(update)

    def fail_on_stream_stats(conn, cursor, statement, *args):
        if "stream_stats" in statement:
            raise RuntimeError("disk pulled out")

    event.listen(engine, "before_cursor_execute", fail_on_stream_stats)
    try:
        with pytest.raises(RuntimeError, match="disk pulled out"):
            filler.commit()
    finally:
        event.remove(engine, "before_cursor_execute", fail_on_stream_stats)
    hist, exposures, _, streams = stored(engine, 1, "")
    assert hist.sum() == 0 and exposures == {} and streams == {}, "the bins written first are gone"
    assert filler.commit() is True, "the increments are still pending"
    hist, exposures, _, streams = stored(engine, 1, "")
    want = expected_sums([update])
    np.testing.assert_array_equal(hist, want[0])
    assert (exposures, streams) == want[1:]


def test_close_run_records_raw_files(engine, tmp_path):
    filler = SpectrumFiller(engine, 2, "", N_BINS)
    filler.add(random_update(np.random.default_rng(4)))
    pulses = RawFileInfo(tmp_path / "run000002.pulses.arrow", "a" * 64, 123456)
    events = RawFileInfo(tmp_path / "run000002.events.arrow", "b" * 64, 789)
    filler.close_run([pulses, events])
    with session_scope(engine, readonly=True) as session:
        run = session.scalar(select(Run).where(Run.number == 2))
        assert (run.raw_file, run.raw_sha256, run.raw_bytes) == (str(pulses.path), "a" * 64, 123456)
        assert run.stopped_utc is not None
        files = {f.kind: (f.path, f.sha256, f.bytes) for f in session.scalars(select(RawFile))}
    assert files == {
        "pulses": (str(pulses.path), "a" * 64, 123456),
        "events": (str(events.path), "b" * 64, 789),
    }
    assert stored(engine, 2, "")[0].sum() > 0, "close_run commits what was pending"


def test_unknown_run_and_wrong_shape(engine):
    filler = SpectrumFiller(engine, 99, "", N_BINS)
    filler.add(random_update(np.random.default_rng(5)))
    with pytest.raises(RunControlError, match="run 99 is not in the database"):
        filler.commit()
    with pytest.raises(ValueError, match="shape"):
        filler.add(BuildUpdate.empty(N_BINS + 1))


def test_concurrent_fillers_add_up(engine):
    rng = np.random.default_rng(6)
    batches = [[random_update(rng) for _ in range(5)] for _ in range(3)]

    def fill(updates):
        filler = SpectrumFiller(engine, 1, "", N_BINS)
        for update in updates:
            filler.add(update)
            filler.commit()

    threads = [threading.Thread(target=fill, args=(b,)) for b in batches]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    hist, exposures, _, streams = stored(engine, 1, "")
    want = expected_sums([u for b in batches for u in b])
    np.testing.assert_array_equal(hist, want[0])
    assert (exposures, streams) == want[1:]


def test_commits_of_full_spectra_add_up(engine):
    """Tens of thousands of bins per commit, inserted, then added to: many statements of
    several rows and a shorter last one."""
    n_bins = 5003
    filler = SpectrumFiller(engine, 1, "", n_bins)
    rng = np.random.default_rng(8)
    total = np.zeros((2, len(Category), n_bins), dtype=np.int64)
    for _ in range(3):
        update = BuildUpdate.empty(n_bins)
        update.hist[:, :5] = rng.integers(1, 1000, (2, 5, n_bins))
        total += update.hist
        filler.add(update)
        filler.commit()
    np.testing.assert_array_equal(stored(engine, 1, "", n_bins)[0], total)
