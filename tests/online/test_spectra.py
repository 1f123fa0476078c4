"""Queries over runs: run specs, selection, summed spectra and exposure, run summary."""

from __future__ import annotations

from dataclasses import fields

import numpy as np
import pytest
from sqlalchemy import text

from daq.build.increments import (
    REACTOR_STATES,
    BuildUpdate,
    ExposureDelta,
    ReactorChange,
    StreamDelta,
)
from daq.core.config import Config
from daq.core.errors import AnalysisError
from daq.core.records import CATEGORY_NAMES, Category
from daq.store.filler import SpectrumFiller
from daq.store.runs import create_run, set_quality
from daq.store.session import session_scope
from daq.store.spectra import load_exposure, load_spectrum, parse_run_spec, select_runs

CONFIG = Config(spectrum={"bin_width_keV": 0.5, "max_keV": 200.0})
N_BINS = CONFIG.spectrum.n_bins


@pytest.mark.parametrize(
    ("spec", "ranges"),
    [("12", [(12, 12)]), ("3-7,9", [(3, 7), (9, 9)]), (" 4 - 4 , 1", [(4, 4), (1, 1)])],
)
def test_parse_run_spec(spec, ranges):
    assert parse_run_spec(spec) == ranges


@pytest.mark.parametrize("spec", ["", "a", "3-", "-3", "1,,2", "7-3", "1;2", "2.5"])
def test_bad_run_spec_is_named(spec):
    with pytest.raises(AnalysisError, match="bad run spec") as err:
        parse_run_spec(spec)
    assert repr(spec) in str(err.value)


def fill_runs(engine, seed=1):
    """Runs 1-5 and 9 with random spectra and exposure; returns {run: BuildUpdate}."""
    rng = np.random.default_rng(seed)
    truth = {}
    with session_scope(engine) as session:
        for number in (1, 2, 3, 4, 5, 9):
            create_run(session, number, CONFIG)
        for number in (2, 4, 9):
            set_quality(session, number, "good", "checked")
    for number in (1, 2, 3, 4, 5, 9):
        update = BuildUpdate.empty(N_BINS)
        update.hist[:] = rng.poisson(0.7, update.hist.shape)
        for state in REACTOR_STATES:
            values = {f.name: int(rng.integers(0, 10**6)) for f in fields(ExposureDelta)}
            values["elapsed_ns"] = int(rng.integers(10**11, 10**12))
            update.exposure[state] = ExposureDelta(**values)
        update.streams = {
            s: StreamDelta(*(int(x) for x in rng.integers(0, 1000, 6))) for s in ("hpge", "crv")
        }
        update.reactor_changes = [ReactorChange(0, True, 2900.0), ReactorChange(10**10, False, 0)]
        filler = SpectrumFiller(engine, number, "", N_BINS)
        filler.add(update)
        filler.commit()
        truth[number] = update
    return truth


def test_select_runs(db_engine):
    fill_runs(db_engine)
    with session_scope(db_engine, readonly=True) as session:
        assert [r.number for r in select_runs(session)] == [1, 2, 3, 4, 5, 9]
        assert [r.number for r in select_runs(session, "2-4,9")] == [2, 3, 4, 9]
        assert [r.number for r in select_runs(session, "1-9", good_only=True)] == [2, 4, 9]
        assert [r.number for r in select_runs(session, "4-100")] == [4, 5, 9]
        assert select_runs(session, tag="replay") == []
        with pytest.raises(AnalysisError, match="run 7 is not in the database"):
            select_runs(session, "1,7")
        with pytest.raises(AnalysisError, match="no run 6-8"):
            select_runs(session, "6-8")
        with pytest.raises(AnalysisError, match="bad run spec"):
            select_runs(session, "x")
    filler = SpectrumFiller(db_engine, 3, "replay", N_BINS)
    update = BuildUpdate.empty(N_BINS)
    update.exposure["on"].elapsed_ns = 5
    filler.add(update)
    filler.commit()
    with session_scope(db_engine, readonly=True) as session:
        assert [r.number for r in select_runs(session, tag="replay")] == [3]


@pytest.mark.parametrize("reactor", [None, "on", "off"])
def test_load_spectrum_and_exposure(db_engine, reactor):
    truth = fill_runs(db_engine)
    states = [0, 1] if reactor is None else [REACTOR_STATES.index(reactor)]
    chosen = [2, 3, 9]
    with session_scope(db_engine, readonly=True) as session:
        runs = select_runs(session, "2-3,9")
        for category in Category:
            spectrum = load_spectrum(session, runs, reactor, CATEGORY_NAMES[category])
            want = sum(truth[n].hist[states, category].sum(axis=0) for n in chosen)
            np.testing.assert_array_equal(spectrum.counts, want)
            assert spectrum.counts.dtype == np.int64
        assert spectrum.runs == chosen
        np.testing.assert_allclose(spectrum.bin_edges_keV, np.arange(N_BINS + 1) * 0.5)
        exposure = load_exposure(session, [2, 3, 9], reactor)
        for f in fields(ExposureDelta):
            assert getattr(exposure, f.name) == sum(
                getattr(truth[n].exposure[REACTOR_STATES[s]], f.name)
                for n in chosen
                for s in states
            )
        assert spectrum.live_ns == exposure.live_ns
        empty = load_spectrum(session, runs, reactor, "all", tag="other")
        assert empty.counts.sum() == 0 and empty.live_ns == 0


def test_spectrum_errors(db_engine):
    fill_runs(db_engine)
    with session_scope(db_engine) as session:
        create_run(session, 20, Config(spectrum={"bin_width_keV": 1.0, "max_keV": 200.0}))
    with session_scope(db_engine, readonly=True) as session:
        with pytest.raises(AnalysisError, match="different spectrum binnings"):
            load_spectrum(session, select_runs(session, "9-20"), None, "all")
        with pytest.raises(AnalysisError, match="unknown category 'gamma'"):
            load_spectrum(session, [1], None, "gamma")
        with pytest.raises(AnalysisError, match="unknown reactor state 'half'"):
            load_spectrum(session, [1], "half", "all")
        with pytest.raises(AnalysisError, match=r"not in the database: \[77\]"):
            load_exposure(session, [1, 77], None)
        with pytest.raises(AnalysisError, match="no runs selected"):
            load_spectrum(session, [], None, "all")


def test_a_year_of_runs_sums_exactly(db_engine):
    """400 runs x 5000 bins, every bin filled, summed over all runs and over the OFF runs.

    On PostgreSQL a quarter of that (filling 2 M rows alone would take 10 s or more). How
    fast: the analysis of 250 runs in ``nudaq bench``.
    """
    n_runs = 400 if db_engine.dialect.name == "sqlite" else 100
    n_bins = Config().spectrum.n_bins
    with session_scope(db_engine) as session:
        for number in range(1, n_runs + 1):
            create_run(session, number, Config())
        session.execute(
            text(
                "WITH RECURSIVE bins(b) AS (SELECT 0 UNION ALL SELECT b + 1 FROM bins"
                " WHERE b < :last)"
                " INSERT INTO spectrum_bins (run_id, tag, reactor, category, bin, counts)"
                " SELECT runs.id, '', CASE WHEN runs.number % 4 = 0 THEN 'off' ELSE 'on' END,"
                " 'candidate', bins.b, 1 + (runs.number * 7 + bins.b) % 11"
                " FROM runs CROSS JOIN bins"  # run-major order: appends to the primary key
            ),
            {"last": n_bins - 1},
        )
    if db_engine.dialect.name == "postgresql":
        with db_engine.begin() as conn:
            conn.execute(text("ANALYZE spectrum_bins"))
    numbers = np.arange(1, n_runs + 1)[:, None]
    per_run = 1 + (numbers * 7 + np.arange(n_bins)) % 11
    off = (numbers % 4 == 0)[:, 0]
    for reactor, want in [("off", per_run[off].sum(0)), (None, per_run.sum(0))]:
        with session_scope(db_engine, readonly=True) as session:
            spectrum = load_spectrum(session, select_runs(session), reactor, "candidate")
        np.testing.assert_array_equal(spectrum.counts, want)
