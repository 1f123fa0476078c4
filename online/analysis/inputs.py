"""The analysis inputs of a set of runs, read from SQL.

Turns the per-run spectra, exposures and configuration snapshots into the two
``online.analysis.SpectrumInput`` (reactor ON and OFF) that ``analyse`` takes:
candidate spectra summed by the database (``daq.store.spectra``), exposure = mass x covered
time per run (``detector.mass_kg``; covered = elapsed minus dead and blind time,
daq.build.coverage), random triggers injected = rate x covered time per run
(``frontends.hpge.rt_rate_hz``), and the ON thermal power as the exposure-weighted mean of
the recorded reactor intervals. A handful of aggregate queries, whatever the number of runs.
"""

from __future__ import annotations

import json
import logging
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from daq.core.config import Config, parse_config
from daq.core.errors import AnalysisError, ConfigError
from daq.store.models import Exposure, ReactorInterval, Run
from daq.store.runs import QUALITY_SELECTIONS, by_quality
from daq.store.spectra import load_spectrum, select_runs
from online.analysis.onoff import AnalysisResult, SpectrumInput, analyse

log = logging.getLogger(__name__)

NS_PER_DAY = 86400e9


@dataclass(frozen=True)
class AnalysisInputs:
    """ON and OFF inputs of ``analyse`` plus the settings the runs were taken with."""

    on: SpectrumInput
    off: SpectrumInput
    runs: list[int]
    distance_m: float
    resolution_keV: tuple[float, float]
    window_keV: tuple[float, float]


def _configs(runs: Sequence[Run]) -> dict[int, Config]:
    """Parsed configuration snapshot of each run (parsed once per distinct snapshot)."""
    parsed: dict[str, Config] = {}
    out = {}
    for run in runs:
        if run.config_sha256 not in parsed:
            try:
                parsed[run.config_sha256] = parse_config(
                    json.loads(run.config_json), f"run {run.number} configuration"
                )
            except (ValueError, ConfigError) as err:
                raise AnalysisError(f"run {run.number}: unreadable configuration: {err}") from None
        out[run.id] = parsed[run.config_sha256]
    return out


def _one(values: dict[int, object], what: str) -> object:
    """The single value that every run shares; AnalysisError naming the runs otherwise."""
    distinct = defaultdict(list)
    for number, value in values.items():
        distinct[value].append(number)
    if len(distinct) > 1:
        described = "; ".join(f"{v} in runs {n}" for v, n in distinct.items())
        raise AnalysisError(f"the selected runs differ in {what}: {described}")
    return next(iter(distinct))


def _on_power_MW(session: Session, runs: Sequence[Run], on_elapsed: dict[int, int], tag: str):
    """Exposure-weighted mean thermal power (MW) of the reactor-ON time of the runs.

    Within a run each ON interval weighs its duration; the still-open interval weighs the
    ON time not covered by closed ones.
    """
    rows = session.execute(
        select(
            ReactorInterval.run_id,
            ReactorInterval.start_ns,
            ReactorInterval.end_ns,
            ReactorInterval.power_MW,
        ).where(
            ReactorInterval.run_id.in_([r.id for r in runs]),
            ReactorInterval.tag == tag,
            ReactorInterval.reactor == "on",
        )
    ).all()
    intervals = defaultdict(list)
    for run_id, start, end, power in rows:
        intervals[run_id].append((start, end, power))
    total_weight = total = 0.0
    for run in runs:
        elapsed = on_elapsed.get(run.id, 0)
        if elapsed <= 0:
            continue
        if not intervals[run.id]:
            raise AnalysisError(f"run {run.number}: reactor-ON exposure but no recorded power")
        closed = sum(end - start for start, end, _ in intervals[run.id] if end is not None)
        weights = [
            (end - start) if end is not None else max(elapsed - closed, 0)
            for start, end, _ in intervals[run.id]
        ]
        powers = [p for _, _, p in intervals[run.id]]
        if sum(weights) <= 0:
            weights = [1.0] * len(powers)
        mean = sum(w * p for w, p in zip(weights, powers, strict=True)) / sum(weights)
        total += elapsed * mean
        total_weight += elapsed
    return total / total_weight if total_weight else 0.0


def state_inputs(session: Session, runs: Sequence[Run], tag: str = "") -> dict[str, SpectrumInput]:
    """The ``SpectrumInput`` of each reactor state ("on", "off") that has exposure in ``runs``."""
    if not runs:
        raise AnalysisError("no runs selected")
    configs = _configs(runs)
    elapsed = defaultdict(dict)
    rt = defaultdict(lambda: np.zeros(4, np.int64))
    for run_id, reactor, ns, *counts in session.execute(
        select(
            Exposure.run_id,
            Exposure.reactor,
            Exposure.elapsed_ns - Exposure.uncovered_ns,
            Exposure.rt_events,
            Exposure.rt_ac,
            Exposure.rt_crv,
            Exposure.rt_any,
        ).where(Exposure.run_id.in_([r.id for r in runs]), Exposure.tag == tag)
    ):
        elapsed[reactor][run_id] = int(ns)
        rt[reactor] += np.asarray(counts, np.int64)
    inputs = {}
    for state in ("on", "off"):
        per_run = elapsed.get(state, {})
        if not any(v > 0 for v in per_run.values()):
            continue
        spectrum = load_spectrum(session, runs, state, "candidate", tag)
        inputs[state] = SpectrumInput(
            bin_edges_keV=spectrum.bin_edges_keV,
            counts=spectrum.counts,
            exposure_kg_day=sum(
                configs[i].detector.mass_kg * ns / NS_PER_DAY for i, ns in per_run.items()
            ),
            rt_expected=sum(
                configs[i].frontends.hpge.rt_rate_hz * ns / 1e9 for i, ns in per_run.items()
            ),
            rt_events=int(rt[state][0]),
            rt_ac=int(rt[state][1]),
            rt_crv=int(rt[state][2]),
            rt_any=int(rt[state][3]),
            power_MW=_on_power_MW(session, runs, per_run, tag) if state == "on" else 0.0,
        )
    return inputs


def load_analysis_inputs(session: Session, runs: Sequence[Run], tag: str = "") -> AnalysisInputs:
    """ON/OFF candidate spectra, exposures and RT counts of ``runs`` (AnalysisError if the
    runs cannot be combined or a reactor state has no data)."""
    inputs = state_inputs(session, runs, tag)
    numbers = sorted(r.number for r in runs)
    for state in ("on", "off"):
        if state not in inputs:
            raise AnalysisError(f"no reactor {state.upper()} data in runs {numbers}")
    configs = _configs(runs)
    by_number = {r.number: configs[r.id] for r in runs}
    distance = _one({n: c.sim.distance_m for n, c in by_number.items()}, "core distance (m)")
    resolution = _one(
        {n: (c.sim.resolution_a_keV, c.sim.resolution_b_keV) for n, c in by_number.items()},
        "energy resolution (a, b)",
    )
    window = _one({n: tuple(c.analysis.window_keV) for n, c in by_number.items()}, "window")
    return AnalysisInputs(inputs["on"], inputs["off"], numbers, distance, resolution, window)


def analyse_runs(
    session: Session,
    spec: str | None = None,
    quality: str = "good",
    window_keV: tuple[float, float] | None = None,
    tag: str = "",
) -> tuple[AnalysisInputs, AnalysisResult]:
    """The analysis of the runs selected by ``spec`` ("3-7,9"; None = all) whose quality
    ``quality`` admits (daq.store.runs.QUALITY_SELECTIONS: by default runs marked good); the
    window defaults to the runs' configuration."""
    selected = select_runs(session, spec, tag=tag)
    runs = by_quality(selected, quality)
    if not runs:
        marks = Counter(r.quality for r in selected)
        seen = ", ".join(f"{n} {q}" for q, n in sorted(marks.items())) or "none"
        wanted = " or ".join(QUALITY_SELECTIONS[quality])
        raise AnalysisError(
            f"no runs to analyse: none of the selected runs is {wanted} (runs by quality: "
            f"{seen}); mark runs good, or choose another run quality"
        )
    inputs = load_analysis_inputs(session, runs, tag)
    result = analyse(
        inputs.on,
        inputs.off,
        window_keV or inputs.window_keV,
        inputs.distance_m,
        inputs.resolution_keV,
    )
    return inputs, result
