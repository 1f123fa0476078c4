"""Queries over runs: which runs, and their summed spectra and exposure.

ON and OFF spectra are not stored as such: they are sums over the selected runs of the
per-run, per-reactor-state spectra, done by the database (one aggregate query), so a
year of runs answers in a fraction of a second. Binning comes from each run's
configuration snapshot; runs with different binnings cannot be summed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np
from pydantic import ValidationError
from sqlalchemy import BigInteger, cast, func, or_, select
from sqlalchemy.orm import Session

from daq.build.increments import REACTOR_STATES, ExposureDelta
from daq.core.config import Spectrum
from daq.core.errors import AnalysisError
from daq.core.records import CATEGORY_NAMES
from daq.store.models import Exposure, Run, SpectrumBin

_RANGE = re.compile(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?")


def parse_run_spec(spec: str) -> list[tuple[int, int]]:
    """Inclusive run-number ranges of a spec such as "12" or "3-7,9"."""
    ranges = []
    for part in spec.split(","):
        match = _RANGE.fullmatch(part)
        if match is None:
            raise AnalysisError(f"bad run spec {spec!r}: {part.strip()!r} is not N or N-M")
        low = int(match[1])
        high = int(match[2] or low)
        if high < low:
            raise AnalysisError(f"bad run spec {spec!r}: range {part.strip()!r} runs backwards")
        ranges.append((low, high))
    return ranges


def select_runs(
    session: Session, spec: str | None = None, good_only: bool = False, tag: str = ""
) -> list[Run]:
    """Runs by number (all when ``spec`` is None), optionally only good ones.

    A run number named alone must exist, and a range must hold at least one run. With a
    ``tag`` other than "", only runs that were processed under that tag are kept.
    """
    query = select(Run).order_by(Run.number)
    ranges = parse_run_spec(spec) if spec is not None else []
    if ranges:
        query = query.where(or_(*(Run.number.between(low, high) for low, high in ranges)))
    runs = list(session.scalars(query))
    numbers = np.array([r.number for r in runs])
    for low, high in ranges:
        if not ((numbers >= low) & (numbers <= high)).any():
            what = f"run {low} is" if low == high else f"no run {low}-{high} is"
            raise AnalysisError(f"{what} not in the database")
    if good_only:
        runs = [r for r in runs if r.quality == "good"]
    if tag:
        tagged = set(session.scalars(select(Exposure.run_id).where(Exposure.tag == tag)))
        runs = [r for r in runs if r.id in tagged]
    return runs


@dataclass
class SpectrumSet:
    """Counts per energy bin summed over runs, with the live time they were taken in."""

    bin_edges_keV: np.ndarray
    counts: np.ndarray
    live_ns: int
    runs: list[int]


def _runs(session: Session, runs: Sequence[Run | int]) -> list[Run]:
    """Run rows for Run objects or run numbers (AnalysisError if none or unknown)."""
    if not runs:
        raise AnalysisError("no runs selected")
    numbers = [r if isinstance(r, int) else r.number for r in runs]
    found = {r.number: r for r in session.scalars(select(Run).where(Run.number.in_(numbers)))}
    missing = sorted(set(numbers) - set(found))
    if missing:
        raise AnalysisError(f"runs not in the database: {missing}")
    return [found[n] for n in sorted(found)]


def _states(reactor: str | None) -> tuple[str, ...]:
    if reactor is None:
        return REACTOR_STATES
    if reactor not in REACTOR_STATES:
        raise AnalysisError(f"unknown reactor state {reactor!r}; known: {REACTOR_STATES}")
    return (reactor,)


def bin_edges(runs: Sequence[Run]) -> np.ndarray:
    """Energy bin edges (keV) shared by the runs' configuration snapshots."""
    binnings: dict[tuple[float, float], list[int]] = {}
    for run in runs:
        try:
            spectrum = Spectrum.model_validate(json.loads(run.config_json).get("spectrum", {}))
        except (ValueError, ValidationError) as err:
            raise AnalysisError(
                f"run {run.number}: unreadable configuration snapshot: {err}"
            ) from None
        binnings.setdefault((spectrum.bin_width_keV, spectrum.max_keV), []).append(run.number)
    if len(binnings) > 1:
        described = "; ".join(
            f"runs {numbers}: {width:g} keV bins up to {top:g} keV"
            for (width, top), numbers in binnings.items()
        )
        raise AnalysisError(f"the selected runs have different spectrum binnings: {described}")
    (width, top), _ = binnings.popitem()
    return np.arange(Spectrum(bin_width_keV=width, max_keV=top).n_bins + 1) * width


def load_spectrum(
    session: Session,
    runs: Sequence[Run | int],
    reactor: str | None,
    category: str,
    tag: str = "",
) -> SpectrumSet:
    """Sum of one category's spectra over runs, in one reactor state (None: both)."""
    rows = _runs(session, runs)
    if category not in CATEGORY_NAMES.values():
        raise AnalysisError(
            f"unknown category {category!r}; known: {', '.join(CATEGORY_NAMES.values())}"
        )
    edges = bin_edges(rows)
    counts = np.zeros(len(edges) - 1, np.int64)
    sums = session.execute(
        select(SpectrumBin.bin, cast(func.sum(SpectrumBin.counts), BigInteger))
        .where(
            SpectrumBin.run_id.in_([r.id for r in rows]),
            SpectrumBin.tag == tag,
            SpectrumBin.reactor.in_(_states(reactor)),
            SpectrumBin.category == category,
        )
        .group_by(SpectrumBin.bin)
    ).all()
    if sums:
        index, values = np.array(sums, dtype=np.int64).T
        if index.min() < 0 or index.max() >= len(counts):
            raise AnalysisError(
                f"runs {[r.number for r in rows]}: stored bins reach {index.max()},"
                f" beyond the {len(counts)} bins of their configuration"
            )
        counts[index] = values
    live_ns = load_exposure(session, rows, reactor, tag).live_ns
    return SpectrumSet(edges, counts, live_ns, [r.number for r in rows])


def load_exposure(
    session: Session, runs: Sequence[Run | int], reactor: str | None, tag: str = ""
) -> ExposureDelta:
    """Exposure and random-trigger counts summed over runs, in one reactor state (None: both)."""
    rows = _runs(session, runs)
    names = [f.name for f in fields(ExposureDelta)]
    sums = session.execute(
        select(
            *(cast(func.coalesce(func.sum(Exposure.__table__.c[n]), 0), BigInteger) for n in names)
        ).where(
            Exposure.run_id.in_([r.id for r in rows]),
            Exposure.tag == tag,
            Exposure.reactor.in_(_states(reactor)),
        )
    ).one()
    return ExposureDelta(**{n: int(v) for n, v in zip(names, sums, strict=True)})
